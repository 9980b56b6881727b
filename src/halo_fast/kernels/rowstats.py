"""Per-row statistics of one token's attention, for data-quality checks.

A token's values are rows of ``ctx`` numbers, one per (layer, head). For each
row: the float64 sum of its finite values, its NaN and infinity counts, and
whether it is constant (all values equal, not zero) or all zero.
"""

from __future__ import annotations

import numpy as np

from .jit import kernel


@kernel()
def row_stats(values, n_rows, ctx, sums, nans, infs, constant, zero):
    """Fill the per-row outputs (each of length >= n_rows) from values[n_rows * ctx].

    Rows beyond an output's length or beyond values are left out (never indexed).
    """
    n_rows = min(n_rows, sums.shape[0], nans.shape[0], infs.shape[0], constant.shape[0], zero.shape[0])
    if ctx > 0:
        n_rows = min(n_rows, values.shape[0] // ctx)
    for r in range(n_rows):
        total = 0.0
        n_nan = 0
        n_inf = 0
        first = np.nan
        same = True
        all_zero = True
        base = r * ctx
        for c in range(ctx):
            x = values[base + c]
            if x != x:
                n_nan += 1
                continue
            if x == np.inf or x == -np.inf:
                n_inf += 1
                continue
            total += x
            if first != first:
                first = x
            elif x != first:
                same = False
            if x != 0:
                all_zero = False
        sums[r] = total
        nans[r] = n_nan
        infs[r] = n_inf
        constant[r] = same and not all_zero and ctx > 1 and n_nan == 0 and n_inf == 0
        zero[r] = all_zero and ctx > 0 and n_nan == 0 and n_inf == 0
