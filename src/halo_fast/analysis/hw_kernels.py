"""numba kernels of Halo Weave's own rules (``hw_rules``), one rule each, output buffers passed in.

Each takes Halo Weave's aggregated matrix ``data`` (float32 ``[T, C]``, reduced with
``mean_js`` or ``mean_f32``) and ``ctx`` (int64 ``[T]``), plus the per-step numbers its
rule compares against (``row_threshold``, ``row_mean``), computed before the call
where numpy itself must compute them for the numbers to be numpy's. Scores are
indexed by position; a position a rule never scores is left as the caller set it
(NaN). The arithmetic is Halo Weave's, operation by operation: JavaScript doubles and
``| 0`` for the front end; for the offline strategies numpy's float32 where its code
computes in float32, and its integer widths. A NaN in the data is a number like any
other here (it compares false), as it is in Halo Weave's code.

Every loop is bounded by each array it indexes. Each kernel has a plain-Python twin
in ``tests/hw_reference.py``, a line-by-line reading of Halo Weave's code, which
``tests/test_hw_rules.py`` compares it with.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..kernels.jit import kernel

#: Distance modes of cumulative_strategy.py, and its decay modes.
DISTANCE_MODES = {"none": 0, "threshold": 1, "linear": 2, "logarithmic": 3, "square_root": 4}
DECAY_MODES = {"none": 0, "additive": 1, "exponential": 2}
#: The three numeric types a cumulative score can hold under numpy's promotion (NEP 50):
#: a Python float (weak: an operation with a float32 is done in float32), a float32 and a float64.
PY, F32, F64 = 0, 1, 2


@kernel(inline="always")
def _cols(ctx_t, n_cols):
    return min(max(ctx_t, 0), n_cols)


@kernel(inline="always")
def js_int32(x):
    """JavaScript's ``x | 0`` (ToInt32): truncate, wrap modulo 2**32 into the signed range; NaN and
    infinities give 0."""
    if not math.isfinite(x):
        return 0.0
    m = np.fmod(np.trunc(x), 4294967296.0)
    if m < 0.0:
        m += 4294967296.0
    if m >= 2147483648.0:
        m -= 4294967296.0
    return m


@kernel(inline="always")
def x86_int(x, lo, hi):
    """numpy's float-to-integer cast on x86 (``astype``): truncation; NaN, infinities and values out of
    ``[lo, hi]`` give ``lo`` (the "integer indefinite" value the cvtt instructions return)."""
    if not (x == x) or x < lo or x >= hi + 1.0:
        return lo
    return np.trunc(x)


@kernel(inline="always")
def _brighten(score, a, th, cap):
    """One step of ``updateBrightness`` for one position: ``att / threshold | 0`` gained when strictly
    above the threshold (then capped), 1 lost when not."""
    if a > th:
        score += js_int32(a / th)
        if score > cap:
            score = cap
    else:
        score -= 1.0
    return score


@kernel()
def frontend_step(row, ctx, first, cap, score):
    """``updateBrightness`` for one step (``row``: its aggregated attention): the eviction replay's
    running brightness, the same arithmetic as :func:`frontend_thresholds` and
    :func:`frontend_scores` step by step."""
    th = _threshold(row, ctx)
    if not (th > 0.0 and math.isfinite(th)):
        return
    for i in range(max(first, 0), _cols(ctx, min(row.shape[0], score.shape[0]))):
        score[i] = _brighten(score[i], np.float64(row[i]), th, cap)


@kernel(inline="always")
def _threshold(row, ctx):
    """The front end's ``(1 - sink) / (totalLen - 1)`` for one step's row: ``sink`` the row's largest
    value (from 0, ``>``: NaN never wins), ``totalLen - 1`` the step's context length (the new token
    is counted, the divisor is the context without it)."""
    sink = 0.0
    for i in range(_cols(ctx, row.shape[0])):
        a = np.float64(row[i])
        if a > sink:
            sink = a
    return (1.0 - sink) / np.float64(ctx)


@kernel()
def frontend_thresholds(data, ctx, out):
    """Per step the front end's threshold (:func:`_threshold`)."""
    n_steps = min(data.shape[0], ctx.shape[0], out.shape[0])
    for t in range(n_steps):
        out[t] = _threshold(data[t], ctx[t])


@kernel(parallel=True)
def frontend_scores(data, ctx, row_threshold, first, start, cap, traj, out_final, out_peak):
    """``updateBrightness`` for positions ``first..N-1`` (``first``: the system prompt's length).

    Every position starts at ``start`` (a token enters at 10000, before it is ever in a context).
    A step whose threshold is not a positive finite number is skipped; otherwise every position in
    its context gains ``att / threshold | 0`` when strictly above it, then is capped at ``cap``, and
    loses 1 when not. ``traj``: ``[T, N]`` score after each step of positions in its context, or [0, 0].
    """
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0], row_threshold.shape[0])
    n_pos = min(out_final.shape[0], out_peak.shape[0])
    keep_traj = traj.shape[0] == n_steps and traj.shape[1] == n_pos and n_steps > 0
    for i in prange(max(first, 0), n_pos):
        score = start
        peak = start
        for t in range(n_steps):
            if i < _cols(ctx[t], n_cols):
                th = row_threshold[t]
                if th > 0.0 and math.isfinite(th):
                    score = _brighten(score, np.float64(data[t, i]), th, cap)
                    if score > peak:
                        peak = score
                if keep_traj:
                    traj[t, i] = score
        out_final[i] = score
        out_peak[i] = peak


@kernel(parallel=True)
def mean_votes(data, ctx, row_mean, known, min_distance, symmetric, start, traj, out_final, out_peak):
    """voting_strategy.py (``symmetric`` False) and symmetric_voting_strategy.py (True) for positions
    ``0..known-1``, compared with the step's float32 mean ``row_mean[t]``.

    voting: +1 when strictly above the mean, counted only when ``ctx - i >= min_distance``; a position
    with no vote stays NaN (Halo Weave's output omits it). symmetric: from ``start``, +1 above, -1 not.
    """
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0], row_mean.shape[0])
    n_pos = min(out_final.shape[0], out_peak.shape[0], max(known, 0))
    keep_traj = traj.shape[0] == n_steps and traj.shape[1] == out_final.shape[0] and n_steps > 0
    for i in prange(n_pos):
        score = start if symmetric else np.nan
        peak = score
        for t in range(n_steps):
            c = _cols(ctx[t], n_cols)
            if i < c:
                above = data[t, i] > row_mean[t]
                if symmetric:
                    score += 1.0 if above else -1.0
                elif above and ctx[t] - i >= min_distance:
                    score = 1.0 if score != score else score + 1.0
                if score == score and (peak != peak or score > peak):
                    peak = score
                if keep_traj:
                    traj[t, i] = score
        out_final[i] = score
        out_peak[i] = peak


@kernel(parallel=True)
def mean_magnitude(data, ctx, row_mean, known, start, traj, out_final, out_peak, status):
    """magnitude_voting_strategy.py (v1) for positions ``0..known-1``: from ``start``, ``int(a / mean)``
    (a float32 quotient, truncated) when strictly above the step's float32 mean, else -1.

    ``status[i]`` is set to the first step whose quotient is not finite (Python's ``int`` raises
    there: Halo Weave's run stops), else left as the caller set it (-1).
    """
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0], row_mean.shape[0])
    n_pos = min(out_final.shape[0], out_peak.shape[0], status.shape[0], max(known, 0))
    keep_traj = traj.shape[0] == n_steps and traj.shape[1] == out_final.shape[0] and n_steps > 0
    for i in prange(n_pos):
        score = start
        peak = start
        for t in range(n_steps):
            if i < _cols(ctx[t], n_cols):
                a = data[t, i]
                m = row_mean[t]
                if a > m:
                    q = np.float64(np.float32(np.float64(a) / np.float64(m)))
                    if not math.isfinite(q):
                        if status[i] < 0:
                            status[i] = t
                    else:
                        score += np.trunc(q)
                else:
                    score -= 1.0
                if score > peak:
                    peak = score
                if keep_traj:
                    traj[t, i] = score
        out_final[i] = score
        out_peak[i] = peak


@kernel()
def bos_thresholds(data, ctx, known, out):
    """v2 / v3's per-step ``(1.0 - a[0]) / len(a[1:N])`` in float32 (``N = known``); NaN when that length is 0
    (the step changes nothing) or the context is empty."""
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0], out.shape[0])
    for t in range(n_steps):
        c = _cols(ctx[t], n_cols)
        n = min(c, known) - 1
        if c == 0 or n <= 0:
            out[t] = np.nan
        else:
            rest = np.float32(1.0 - np.float64(data[t, 0]))
            out[t] = np.float32(np.float64(rest) / np.float64(np.float32(n)))


@kernel(parallel=True)
def bos_magnitude(data, ctx, row_threshold, known, start, int32, traj, out_final, out_peak):
    """magnitude_voting_strategy_v2.py (``int32`` False: int64 scores) and _v3.py (True: int32 scores,
    wrapping as numpy's in-place add does) for positions ``1..known-1``: from ``start``, the float32
    quotient ``a / threshold`` cast as numpy casts it when strictly above the threshold, else -1."""
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0], row_threshold.shape[0])
    n_pos = min(out_final.shape[0], out_peak.shape[0], max(known, 0))
    keep_traj = traj.shape[0] == n_steps and traj.shape[1] == out_final.shape[0] and n_steps > 0
    lo = -(2.0**31) if int32 else -(2.0**63)  # the integer range of each width
    hi = 2.0**31 - 1.0 if int32 else 2.0**63 - 1.0
    for i in prange(1, n_pos):
        score = np.int64(start)
        peak = score
        for t in range(n_steps):
            th = row_threshold[t]
            if i < min(_cols(ctx[t], n_cols), known) and th == th:
                a = data[t, i]
                if a > np.float32(th):
                    q = np.float64(np.float32(np.float64(a) / th))
                    step = np.int64(x86_int(q, lo, hi))
                else:
                    step = np.int64(-1)
                score += step  # int64 arithmetic wraps
                if int32:
                    score = np.int64(np.int32(score))
                if score > peak:
                    peak = score
                if keep_traj:
                    traj[t, i] = score
        out_final[i] = score
        out_peak[i] = peak


@kernel(inline="always")
def _promote(a, at, b, bt, subtract):
    """``a + b`` (or ``a - b``) under numpy 2's promotion: float64 when either is a float64, float32
    (each operand first made a float32) when either is a float32, else a Python float's double."""
    if at == F64 or bt == F64 or (at == PY and bt == PY):
        r = a - b if subtract else a + b
        return r, (F64 if (at == F64 or bt == F64) else PY)
    x = np.float64(np.float32(a))
    y = np.float64(np.float32(b))
    return np.float64(np.float32(x - y if subtract else x + y)), F32


@kernel(parallel=True)
def cumulative(
    data, ctx, weight, known, distance_mode, min_distance, decay_mode, decay_rate, traj, out_final, out_peak
):
    """cumulative_strategy.py for positions ``0..known-1``: from 0.0 each step
    ``score = score + weighted(a, d) - decay(score)`` with ``d = ctx - i``, no clamp.

    ``weight[d]`` is the distance multiplier as numpy computes it (filled by the caller). The type
    each value has in Halo Weave's code is followed: a float32 attention times a Python float is a
    float32; times numpy's float64 log or sqrt, a float64; a score once float64 stays float64.
    """
    n_cols = data.shape[1]
    n_steps = min(data.shape[0], ctx.shape[0])
    n_pos = min(out_final.shape[0], out_peak.shape[0], max(known, 0))
    keep_traj = traj.shape[0] == n_steps and traj.shape[1] == out_final.shape[0] and n_steps > 0
    for i in prange(n_pos):
        score = 0.0
        kind = PY
        peak = np.nan
        for t in range(n_steps):
            if i < _cols(ctx[t], n_cols):
                a = np.float64(data[t, i])
                d = ctx[t] - i
                if distance_mode == 0:
                    w, wt = a, F32
                elif d < min_distance:
                    w, wt = 0.0, PY
                elif distance_mode == 1:
                    w, wt = a, F32
                elif d < 0 or d >= weight.shape[0]:
                    w, wt = np.nan, F64
                elif distance_mode == 2:
                    w, wt = np.float64(np.float32(a * np.float64(np.float32(weight[d])))), F32
                else:
                    w, wt = a * weight[d], F64
                if decay_mode == 0:
                    decay, dt = 0.0, PY
                elif decay_mode == 1:
                    decay, dt = decay_rate, PY
                elif kind == F32:
                    decay, dt = np.float64(np.float32(score * np.float64(np.float32(decay_rate)))), F32
                else:
                    decay, dt = score * decay_rate, kind
                score, kind = _promote(score, kind, w, wt, False)
                score, kind = _promote(score, kind, decay, dt, True)
                if peak != peak or score > peak:
                    peak = score
                if keep_traj:
                    traj[t, i] = score
        if peak == peak:
            out_final[i] = score
            out_peak[i] = peak
