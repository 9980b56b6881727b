"""numba kernels of the analyses, one job each, output buffers passed in.

Every kernel takes the reduced matrix ``data`` (float32 ``[T, C]``, NaN beyond each
step's context) and ``ctx`` (int64 ``[T]``, the context length of each step; columns
at or past ``ctx[t]`` are never read).  A NaN inside the context is treated as
missing (skipped), never as a number.  Each kernel has a plain numpy twin in
``tests/test_analysis_kernels.py``; the tests compare both on random and hand-picked
inputs (empty, one step, NaN beyond context).

Every loop is bounded by each array it indexes: steps by ``data``, ``ctx`` and the
per-step inputs and outputs, positions and segments by every output, so mismatched
lengths make a kernel do less, never read or write outside an array.

Distance modes of the cumulative score (see ``distance_weight``): 0 none, 1 linear,
2 logarithmic.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..kernels.jit import kernel

DISTANCE_MODES = {"none": 0, "linear": 1, "logarithmic": 2}


@kernel()
def _valid_columns(ctx_t, n_cols):
    return min(max(ctx_t, 0), n_cols)


@kernel(parallel=True)
def segment_stats(data, ctx, labels, out_sum, out_max, out_count):
    """Per step and segment: float64 sum, max and count of the finite values of columns with ``labels[c] = s``.

    ``labels`` is int64 ``[P]`` (``-1``: no segment); outputs are ``[T, S]``. A segment with
    no valid value at a step gets sum 0, max NaN, count 0.
    """
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0], out_sum.shape[0], out_max.shape[0], out_count.shape[0])
    n_seg = min(out_sum.shape[1], out_max.shape[1], out_count.shape[1])
    n_lab = min(labels.shape[0], n_cols)
    for t in prange(n_steps):
        for s in range(n_seg):
            out_sum[t, s] = 0.0
            out_max[t, s] = np.nan
            out_count[t, s] = 0
        stop = min(_valid_columns(ctx[t], n_cols), n_lab)
        for c in range(stop):
            s = labels[c]
            if s < 0 or s >= n_seg:
                continue
            x = np.float64(data[t, c])
            if x != x:
                continue
            out_sum[t, s] += x
            if out_count[t, s] == 0 or x > out_max[t, s]:
                out_max[t, s] = x
            out_count[t, s] += 1


@kernel(parallel=True)
def fit_trend(x, y, log_mode, out_slope, out_intercept, out_r2, out_n):
    """Least-squares line through each column of ``y`` (float64 ``[T, N]``) against ``x`` (float64 ``[T]``).

    ``log_mode``: fit ``ln y`` with weights ``y`` (the weighted log-linear fit of an
    exponential ``a*exp(slope*x)``; points with ``y <= 0`` are skipped); otherwise fit
    ``y`` itself, unweighted.  Non-finite points are skipped.  ``out_r2`` is the weighted
    coefficient of determination in the fitted space.  Columns with fewer than two
    distinct ``x`` get NaN slope, intercept and r2; ``out_n`` counts the points used.
    """
    n_steps = min(x.shape[0], y.shape[0])
    n_series = min(y.shape[1], out_slope.shape[0], out_intercept.shape[0], out_r2.shape[0], out_n.shape[0])
    for j in prange(n_series):
        sw = 0.0
        sx = 0.0
        sy = 0.0
        n = 0
        for t in range(n_steps):
            v = y[t, j]
            if not math.isfinite(v) or not math.isfinite(x[t]):
                continue
            if log_mode:
                if v <= 0.0:
                    continue
                w = v
                v = math.log(v)
            else:
                w = 1.0
            sw += w
            sx += w * x[t]
            sy += w * v
            n += 1
        out_n[j] = n
        out_slope[j] = np.nan
        out_intercept[j] = np.nan
        out_r2[j] = np.nan
        if n < 2 or sw <= 0.0:
            continue
        mx = sx / sw
        my = sy / sw
        sxx = 0.0
        sxy = 0.0
        syy = 0.0
        for t in range(n_steps):
            v = y[t, j]
            if not math.isfinite(v) or not math.isfinite(x[t]):
                continue
            if log_mode:
                if v <= 0.0:
                    continue
                w = v
                v = math.log(v)
            else:
                w = 1.0
            dx = x[t] - mx
            dy = v - my
            sxx += w * dx * dx
            sxy += w * dx * dy
            syy += w * dy * dy
        if sxx <= 0.0:
            continue
        slope = sxy / sxx
        out_slope[j] = slope
        out_intercept[j] = my - slope * mx
        out_r2[j] = 1.0 if syy <= 0.0 else min(1.0, max(0.0, sxy * sxy / (sxx * syy)))


@kernel()
def distance_profile(data, ctx, out_sum, out_count):
    """Accumulate attention by distance from the head: column ``c`` of step ``t`` is distance ``ctx[t] - c``.

    ``out_sum`` (float64) / ``out_count`` (int64) have length ``D + 1``; index ``d`` is
    distance ``d`` (index 0 unused); distances beyond ``D`` are ignored. Accumulates (the
    caller zeroes).
    """
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0])
    top = min(out_sum.shape[0], out_count.shape[0]) - 1
    for t in range(n_steps):
        stop = _valid_columns(ctx[t], n_cols)
        for c in range(stop):
            d = ctx[t] - c
            if d < 1 or d > top:
                continue
            x = np.float64(data[t, c])
            if x != x:
                continue
            out_sum[d] += x
            out_count[d] += 1


@kernel(parallel=True)
def step_shares(data, ctx, n_prompt, window, out_total, out_local, out_prompt):
    """Per step: float64 sum of finite values over the context, over its last ``window`` columns, and over
    the prompt columns ``[0, n_prompt)``."""
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0], out_total.shape[0], out_local.shape[0], out_prompt.shape[0])
    for t in prange(n_steps):
        stop = _valid_columns(ctx[t], n_cols)
        lo = max(stop - window, 0)
        total = 0.0
        local = 0.0
        prompt = 0.0
        for c in range(stop):
            x = np.float64(data[t, c])
            if x != x:
                continue
            total += x
            if c >= lo:
                local += x
            if c < n_prompt:
                prompt += x
        out_total[t] = total
        out_local[t] = local
        out_prompt[t] = prompt


@kernel(parallel=True)
def row_summary(data, ctx, out_min, out_max, out_sum, out_valid, out_nan_inside, out_nan_beyond):
    """Per step: min, max, float64 sum and count of the non-NaN values inside the context, NaN count inside
    it, and count of columns beyond it that are *not* NaN (should be 0). min/max are NaN for an empty row."""
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0], out_min.shape[0], out_max.shape[0], out_sum.shape[0])
    n_steps = min(n_steps, out_valid.shape[0], out_nan_inside.shape[0], out_nan_beyond.shape[0])
    for t in prange(n_steps):
        stop = _valid_columns(ctx[t], n_cols)
        lo = np.inf
        hi = -np.inf
        total = 0.0
        valid = 0
        nans = 0
        for c in range(stop):
            x = np.float64(data[t, c])
            if x != x:
                nans += 1
                continue
            total += x
            valid += 1
            if x < lo:
                lo = x
            if x > hi:
                hi = x
        beyond = 0
        for c in range(stop, n_cols):
            if data[t, c] == data[t, c]:
                beyond += 1
        out_min[t] = lo if valid else np.nan
        out_max[t] = hi if valid else np.nan
        out_sum[t] = total
        out_valid[t] = valid
        out_nan_inside[t] = nans
        out_nan_beyond[t] = beyond


# --------------------------------------------------------------------------- Halo Weave scoring rules


@kernel(parallel=True)
def magnitude_scores(data, ctx, threshold, start, cap, exclude_bos, traj, out_final, out_peak):
    """Magnitude voting for positions ``0..N-1`` (``N = len(out_final)``).

    A position's score starts at ``start`` the first step it is in the context; then at
    each step with a finite value ``a`` and a positive finite ``threshold[t]``: ``a > threshold``
    adds ``int(a / threshold)``, otherwise subtracts 1; the score never exceeds ``cap``
    (no lower bound).  Positions never in the context stay NaN.  ``exclude_bos``: position
    0 is never scored (NaN).  ``traj`` is ``[T, N]`` (score after each step, NaN before the
    position appears) or ``[0, 0]`` to skip the trajectory.
    """
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0], threshold.shape[0])
    n_pos = min(out_final.shape[0], out_peak.shape[0])
    keep_traj = traj.shape[0] == n_steps and traj.shape[1] == n_pos and n_steps > 0
    for i in prange(n_pos):
        score = np.nan
        peak = np.nan
        if not (exclude_bos and i == 0):
            for t in range(n_steps):
                if i < min(ctx[t], n_cols):
                    if score != score:
                        score = start
                        if score > cap:
                            score = cap
                    a = np.float64(data[t, i])
                    th = threshold[t]
                    if a == a and th > 0.0 and math.isfinite(th):
                        if a > th:
                            q = a / th
                            score = cap if q >= cap else min(score + math.floor(q), cap)
                        else:
                            score -= 1.0
                    if peak != peak or score > peak:
                        peak = score
                if keep_traj:
                    traj[t, i] = score
        elif keep_traj:
            for t in range(n_steps):
                traj[t, i] = np.nan
        out_final[i] = score
        out_peak[i] = peak


@kernel(parallel=True)
def rolling_votes(data, ctx, row_mean, min_distance, traj, out_final, out_peak):
    """Rolling-mean voting: at each step, +1 for each position whose finite value is above ``row_mean[t]`` and
    that is at least ``min_distance`` behind the head (``ctx[t] - i >= min_distance``).

    Scores start at 0 when the position enters the context (NaN before). ``traj`` as in
    :func:`magnitude_scores`. ``out_peak`` equals ``out_final`` (votes never decrease) and is
    filled for a uniform interface.
    """
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0], row_mean.shape[0])
    n_pos = min(out_final.shape[0], out_peak.shape[0])
    keep_traj = traj.shape[0] == n_steps and traj.shape[1] == n_pos and n_steps > 0
    for i in prange(n_pos):
        score = np.nan
        for t in range(n_steps):
            stop = min(ctx[t], n_cols)
            if i < stop:
                if score != score:
                    score = 0.0
                a = np.float64(data[t, i])
                m = row_mean[t]
                if a == a and m == m and ctx[t] - i >= min_distance and a > m:
                    score += 1.0
            if keep_traj:
                traj[t, i] = score
        out_final[i] = score
        out_peak[i] = score


@kernel()
def distance_weight(d, mode, min_distance, scale):
    """Weight of a token ``d`` positions behind the head: 1 within ``min_distance``; beyond, with
    ``x = (d - min_distance) / scale``: none 1, linear ``1 + x``, logarithmic ``1 + ln(1 + x)``."""
    if mode == 0 or d <= min_distance or scale <= 0.0:
        return 1.0
    x = (d - min_distance) / scale
    if mode == 1:
        return 1.0 + x
    return 1.0 + math.log1p(x)


@kernel()
def cumulative_one(data, ctx, i, decay_rate, boost, mode, min_distance, scale, floor, traj, col):
    """Cumulative score of position ``i``; returns (final, peak). Writes ``traj[:, col]`` when ``col >= 0``
    (and traj has that column and a row for every step). A negative ``i`` is in no context: (NaN, NaN)."""
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0]) if i >= 0 else 0
    write = col >= 0 and col < traj.shape[1] and traj.shape[0] >= n_steps
    score = np.nan
    peak = np.nan
    for t in range(n_steps):
        if i < min(ctx[t], n_cols):
            if score != score:
                score = 0.0
            a = np.float64(data[t, i])
            if a == a:
                score += boost * distance_weight(ctx[t] - i, mode, min_distance, scale) * a
            score -= decay_rate
            if floor and score < 0.0:
                score = 0.0
            if peak != peak or score > peak:
                peak = score
        if write:
            traj[t, col] = score
    return score, peak


@kernel(parallel=True)
def cumulative_scores(data, ctx, decay_rate, boost, mode, min_distance, scale, floor, traj, out_final, out_peak):
    """Cumulative score per position: from 0 when it enters the context, each step
    ``score += boost * w(distance) * a - decay_rate`` (``a`` skipped when NaN), clamped at 0 when ``floor``.

    ``w`` is :func:`distance_weight` with the distance ``ctx[t] - i``. ``traj`` as in :func:`magnitude_scores`.
    """
    n_steps = min(data.shape[0], ctx.shape[0])
    n_pos = min(out_final.shape[0], out_peak.shape[0])
    keep_traj = traj.shape[0] == n_steps and traj.shape[1] == n_pos and n_steps > 0
    for i in prange(n_pos):
        pos = np.int64(i)
        col = np.int64(-1)
        if keep_traj:
            col = pos
        final, peak = cumulative_one(data, ctx, pos, decay_rate, boost, mode, min_distance, scale, floor, traj, col)
        out_final[i] = final
        out_peak[i] = peak


@kernel(parallel=True, nrt=True)  # a per-thread scratch array
def sweep_cumulative(data, ctx, decay_rates, boosts, modes, min_distances, scales, floor, out_final, out_peak):
    """The cumulative score of positions ``0..N-1`` for every grid point ``g`` (outputs ``[G, N]``), in parallel
    across grid points."""
    n_grid = min(decay_rates.shape[0], boosts.shape[0], modes.shape[0], min_distances.shape[0], scales.shape[0])
    n_grid = min(n_grid, out_final.shape[0], out_peak.shape[0])
    n_pos = min(out_final.shape[1], out_peak.shape[1])
    dummy = np.empty((0, 0))
    for g in prange(n_grid):
        for i in range(n_pos):
            final, peak = cumulative_one(
                data,
                ctx,
                np.int64(i),
                decay_rates[g],
                boosts[g],
                modes[g],
                min_distances[g],
                scales[g],
                floor,
                dummy,
                np.int64(-1),
            )
            out_final[g, i] = final
            out_peak[g, i] = peak


@kernel(parallel=True)
def mass_retained(data, ctx, kept, out):
    """Per kept-set ``k`` (``kept`` bool ``[K, P]``) and step: the share of the step's finite attention on
    columns ``[0, P)`` that falls on kept columns (``out`` float64 ``[K, T]``; NaN when that attention is 0)."""
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0], out.shape[1])
    n_sets = min(kept.shape[0], out.shape[0])
    n_prompt = kept.shape[1]
    for k in prange(n_sets):
        for t in range(n_steps):
            stop = min(_valid_columns(ctx[t], n_cols), n_prompt)
            total = 0.0
            held = 0.0
            for c in range(stop):
                x = np.float64(data[t, c])
                if x != x:
                    continue
                total += x
                if kept[k, c]:
                    held += x
            out[k, t] = held / total if total != 0.0 else np.nan


@kernel()
def edit_distance(a, b, row):
    """Levenshtein distance between the int64 sequences ``a`` and ``b`` (insert, delete, substitute:
    1 each); ``row`` is int64 scratch of at least ``len(b) + 1`` (a shorter one gives -1)."""
    n, m = a.shape[0], b.shape[0]
    if row.shape[0] < m + 1:
        return -1
    for j in range(m + 1):
        row[j] = j
    for i in range(1, n + 1):
        diagonal = row[0]
        row[0] = i
        for j in range(1, m + 1):
            above = row[j]
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(min(row[j] + 1, row[j - 1] + 1), diagonal + cost)
            diagonal = above
    return row[m]
