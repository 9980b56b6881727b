"""Fused parse-and-reduce of attention arrays: the full tensor is never built.

A token's data array is row-major ``[layers, heads, ctx]``; row ``r = l * heads + h``.
``row_group[r]`` names the output row a kept (layer, head) row folds into (0 for
mean over both, ``h`` over layers, ``l`` over heads) or -1 for a row not selected,
whose numbers are stepped over without being parsed. Sums accumulate in float64
in per-thread scratch rows allocated once by the caller; max and min follow
numpy (NaN propagates).

Two means reproduce Halo Weave's own aggregation bit for bit, for its rules
(``analysis.hw_rules``): both add the rows one after the other in float32, as
its code does; ``mean_f32`` then divides in float32 (numpy's
``np.mean(tensor, axis=(0, 1))`` on a float32 tensor, the offline strategies) and
``mean_js`` multiplies by the double ``1 / rows`` and rounds to float32 (the front
end's ``_aggregateAttention``, a Float32Array). The float32 sums are kept exactly
in the float64 scratch: a sum of two float32 values rounded once to float32 is
float32 addition. (One case where numpy's order differs: a one-position context, where
numpy sees one contiguous run of ``layers * heads`` values and sums it pairwise;
``mean_f32`` keeps the row order there too. Halo Weave's rules compare such a step's
single value with itself, so only ``hw_cumulative`` with ``distance_mode`` none or
``min_distance`` <= 1 could see the difference, in the last bit.)

Every loop is bounded by the arrays it indexes: rows, groups and columns beyond
an array's extent are never touched (reduce_array and reduce_arrays report such
calls as ARRAY_OUT_OF_BOUNDS), whatever the arguments.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .arrays import (
    ARRAY_BAD_NUMBER,
    ARRAY_BAD_SEPARATOR,
    ARRAY_OK,
    ARRAY_OUT_OF_BOUNDS,
    ARRAY_TOO_FEW,
    ARRAY_TOO_MANY,
    ARRAY_TRAILING_COMMA,
    ARRAY_TRUNCATED,
)
from .floats import HARD, OK, TRUNCATED, byte_view, parse_number
from .jit import kernel
from .search import skip_to_stop

OP_SUM, OP_MEAN, OP_MAX, OP_MIN, OP_NANMEAN, OP_MEAN_F32, OP_MEAN_JS = 0, 1, 2, 3, 4, 5, 6
OPS = {
    "sum": OP_SUM,
    "mean": OP_MEAN,
    "max": OP_MAX,
    "min": OP_MIN,
    "nanmean": OP_NANMEAN,
    "mean_f32": OP_MEAN_F32,
    "mean_js": OP_MEAN_JS,
}

# Status codes are shared with kernels.arrays (and its MESSAGES), plus one:
ARRAY_HAS_HARD = 7  # a number the fast parser declines: the caller decodes this token in full


@kernel(inline="always")
def _fold(a, x, op, first):
    """The accumulator a after folding in x (scalars only: an inlined call taking the
    scratch arrays cost a reference-count pair per value, a third of the parse time)."""
    if op <= OP_MEAN:  # sum and mean, the common case: one test
        return a + x
    if op == OP_MAX:
        return x if first or not (a >= x or a != a) else a
    if op == OP_MIN:
        return x if first or not (a <= x or a != a) else a
    if op == OP_NANMEAN and x != x:
        return a
    if op >= OP_MEAN_F32:  # from +0.0, as numpy's float add.reduce and a zeroed Float32Array do
        return np.float64(np.float32(a + np.float64(np.float32(x))))
    return a + x


@kernel()
def start_groups(acc, counts, n_groups, ctx):
    """Zero acc[:n_groups, :ctx] and counts[:n_groups, :ctx] (clipped to both)."""
    n_groups = min(n_groups, acc.shape[0], counts.shape[0])
    ctx = min(ctx, acc.shape[1], counts.shape[1])
    for g in range(n_groups):
        for c in range(ctx):
            acc[g, c] = 0.0
            counts[g, c] = 0


@kernel()
def finish_groups(acc, counts, n_groups, ctx, op, group_size, out):
    """Write the reduced rows of one token into out[g, :ctx] (float32), g < n_groups (all clipped to the arrays)."""
    n_groups = min(n_groups, acc.shape[0], counts.shape[0], group_size.shape[0], out.shape[0])
    ctx = min(ctx, acc.shape[1], counts.shape[1], out.shape[1])
    for g in range(n_groups):
        for c in range(ctx):
            a = acc[g, c]
            if op == OP_MEAN or op == OP_MEAN_F32:
                a = a / group_size[g]
            elif op == OP_MEAN_JS:
                a = a * (1.0 / group_size[g])
            elif op == OP_NANMEAN:
                a = a / counts[g, c] if counts[g, c] > 0 else np.nan
            out[g, c] = np.float32(a)


@kernel()
def _fold_row(values, sums, counts, n_cols, op, first):
    """Fold the float32 row values[:n_cols] into sums (and counts, for nanmean); first: the group's first row.

    Called once a row, so not inlined into the parse loop (whose registers it would crowd).
    """
    n_cols = min(n_cols, values.shape[0], sums.shape[0], counts.shape[0])
    for c in range(n_cols):
        x = np.float64(values[c])
        sums[c] = _fold(sums[c], x, op, first)
        if op == OP_NANMEAN and x == x:
            counts[c] += 1


@kernel()
def reduce_array(buf, start, end, n_rows, ctx, row_group, first_row, op, acc, counts, values):
    """Parse (or step over) the n_rows * ctx values of one array, folding kept rows into acc.

    A kept row's numbers are parsed into ``values`` (float32 scratch, at least ctx long) and
    folded when the row is complete: the parse loop then only stores each value, and the fold
    is a short loop of its own (about a tenth fewer instructions a number than folding each value
    as it is parsed, bench/RESULTS.md).

    The numbers of rows left out are stepped over, not parsed: anything up to the next separator
    or whitespace counts as one, except a ']' (ARRAY_BAD_NUMBER), so that a span reduced without
    error never holds one before ``end``.

    Returns (code, byte position, values seen). ARRAY_OUT_OF_BOUNDS, before reading
    anything, unless 0 <= start, end < len(buf), n_rows <= len(row_group) and ctx fits
    acc, counts and values; and when a kept row's group has no slot in first_row, acc or counts.
    """
    if start < 0 or end >= buf.shape[0] or n_rows > row_group.shape[0]:
        return ARRAY_OUT_OF_BOUNDS, start, 0
    if ctx > acc.shape[1] or ctx > counts.shape[1] or ctx > values.shape[0]:
        return ARRAY_OUT_OF_BOUNDS, start, 0
    n_groups = min(first_row.shape[0], acc.shape[0], counts.shape[0])
    count = n_rows * ctx
    data = byte_view(buf)  # every read below is bounded by end < len(buf)
    p = start + 1
    while p < end and (data[p] == 32 or data[p] == 10 or data[p] == 13 or data[p] == 9):
        p += 1
    if p == end:
        return (ARRAY_OK if count == 0 else ARRAY_TOO_FEW), p, 0
    n = 0
    r = 0
    c = 0
    g = row_group[0] if n_rows > 0 else -1
    if g >= n_groups:
        return ARRAY_OUT_OF_BOUNDS, p, 0
    while True:
        if n >= count:
            return ARRAY_TOO_MANY, p, n
        if g >= 0:
            value, after, status = parse_number(data, p, end)
            if status != OK:
                if status == HARD:
                    return ARRAY_HAS_HARD, p, n
                if status == TRUNCATED:
                    return ARRAY_TRUNCATED, after, n
                return ARRAY_BAD_NUMBER, after, n
            values[c] = value
        else:  # a row left out: its number is stepped over, not parsed, but never past a ']'
            after = skip_to_stop(data, p, end)
            if after < end and data[after] == 93:  # so that a span reduced without error holds no ']'
                return ARRAY_BAD_NUMBER, after, n
            if after == p:
                return ARRAY_BAD_NUMBER, p, n
        n += 1
        c += 1
        if c == ctx:
            if g >= 0:
                _fold_row(values, acc[g], counts[g], ctx, op, first_row[g] == r)
            c = 0
            r += 1
            if r < n_rows:
                g = row_group[r]
                if g >= n_groups:  # once per row, not per value
                    return ARRAY_OUT_OF_BOUNDS, p, n
        p = after
        while p < end and (data[p] == 32 or data[p] == 10 or data[p] == 13 or data[p] == 9):
            p += 1
        if p == end:
            break
        if data[p] != 44:
            return ARRAY_BAD_SEPARATOR, p, n
        p += 1
        while p < end and (data[p] == 32 or data[p] == 10 or data[p] == 13 or data[p] == 9):
            p += 1
        if p == end:
            return ARRAY_TRAILING_COMMA, p, n
    if n != count:
        return ARRAY_TOO_FEW, end, n
    return ARRAY_OK, end, n


@kernel(parallel=True)
def reduce_arrays(
    buf,
    starts,
    ends,
    ctxs,
    out_rows,
    order,
    n_rows,
    row_group,
    first_row,
    group_size,
    op,
    acc,
    counts,
    values,
    out,
    status,
):
    """reduce_array over tokens ``order[k]`` in parallel into out[out_rows[i], :, :ctx].

    acc, counts and values are per-thread scratch (their first axis: numba's thread id).

    An ``i`` outside any per-token array (starts, ends, ctxs, out_rows, status) is
    skipped; a token whose output row or thread's scratch row does not exist gets
    ARRAY_OUT_OF_BOUNDS.
    """
    n_groups = group_size.shape[0]
    n_tokens = min(starts.shape[0], ends.shape[0], ctxs.shape[0], out_rows.shape[0])
    n_tokens = min(n_tokens, status.shape[0]) if status.shape[1] >= 3 else 0
    n_scratch = min(acc.shape[0], counts.shape[0], values.shape[0])
    for k in prange(order.shape[0]):
        i = order[k]
        if i >= 0 and i < n_tokens:
            thread = numba.get_thread_id()
            row = out_rows[i]
            if thread >= n_scratch or row < 0 or row >= out.shape[0]:
                status[i, 0] = ARRAY_OUT_OF_BOUNDS
                status[i, 1] = starts[i]
                status[i, 2] = 0
            else:
                ctx = ctxs[i]
                start_groups(acc[thread], counts[thread], n_groups, ctx)
                code, position, seen = reduce_array(
                    buf,
                    starts[i],
                    ends[i],
                    n_rows,
                    ctx,
                    row_group,
                    first_row,
                    op,
                    acc[thread],
                    counts[thread],
                    values[thread],
                )
                status[i, 0] = code
                status[i, 1] = position
                status[i, 2] = seen
                if code == ARRAY_OK:
                    finish_groups(acc[thread], counts[thread], n_groups, ctx, op, group_size, out[row])


@kernel()
def reduce_decoded(values, n_rows, ctx, row_group, first_row, group_size, op, acc, counts, out):
    """The same fold over an already decoded token (values: float32[n_rows * ctx]).

    Clipped to the arrays: rows beyond row_group or values, groups beyond group_size,
    first_row, acc or counts, and columns beyond acc or counts are left out.
    """
    n_groups = min(group_size.shape[0], first_row.shape[0], acc.shape[0], counts.shape[0])
    start_groups(acc, counts, n_groups, ctx)
    n_rows = min(n_rows, row_group.shape[0])
    if ctx > 0:
        n_rows = min(n_rows, values.shape[0] // ctx)
    n_cols = min(ctx, acc.shape[1], counts.shape[1])
    for r in range(n_rows):
        g = row_group[r]
        if g < 0 or g >= n_groups:
            continue
        _fold_row(values[r * ctx : r * ctx + n_cols], acc[g], counts[g], n_cols, op, r == first_row[g])
    finish_groups(acc, counts, n_groups, ctx, op, group_size, out)
