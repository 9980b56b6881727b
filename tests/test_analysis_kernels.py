"""Each analysis kernel against a plain numpy/Python twin: hypothesis inputs and hand-picked hard cases.

The twins below share no code with halo_fast.analysis.kernels.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halo_fast.analysis import kernels as K

RTOL, ATOL = 1e-9, 1e-12  # float64 accumulations of float32 inputs, same order in both


# --------------------------------------------------------------------------- inputs


@st.composite
def matrices(draw, max_steps=6, max_cols=9, negative=False):
    """(data float32 [T, C] with NaN beyond each ctx and some NaN inside, ctx int64 [T])."""
    t = draw(st.integers(0, max_steps))
    c = draw(st.integers(0, max_cols))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ctx = rng.integers(0, c + 2, size=t).astype(np.int64)  # may exceed C: the kernels must clip
    low = -3.0 if negative else 0.0
    data = rng.uniform(low, 1.0, size=(t, c)).astype(np.float32)
    if draw(st.booleans()):
        data[rng.random((t, c)) < 0.1] = np.nan
    for i in range(t):
        data[i, min(ctx[i], c) :] = np.nan
    return data, ctx


def hard_cases():
    yield np.zeros((0, 0), np.float32), np.zeros(0, np.int64)  # empty
    yield np.zeros((0, 5), np.float32), np.zeros(0, np.int64)  # no steps
    yield np.array([[0.5, 0.25, 0.25]], np.float32), np.array([3])  # single step
    yield np.array([[0.5, np.nan, np.nan], [0.2, 0.3, 0.5]], np.float32), np.array([1, 3])  # NaN beyond context
    yield np.full((3, 4), np.nan, np.float32), np.array([0, 0, 0])  # all beyond context
    yield np.array([[0.9, 0.1], [0.8, 0.2]], np.float32), np.array([5, -1])  # bad context lengths


def close(a, b, msg=""):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=msg)


def valid(ctx_t, n_cols):
    return min(max(int(ctx_t), 0), n_cols)


# --------------------------------------------------------------------------- twins


def ref_segment_stats(data, ctx, labels, n_seg):
    t_, c_ = data.shape
    s_sum, s_max, s_cnt = np.zeros((t_, n_seg)), np.full((t_, n_seg), np.nan), np.zeros((t_, n_seg), np.int64)
    for t in range(t_):
        for c in range(min(valid(ctx[t], c_), len(labels))):
            s, x = labels[c], float(data[t, c])
            if 0 <= s < n_seg and not math.isnan(x):
                s_sum[t, s] += x
                s_max[t, s] = x if math.isnan(s_max[t, s]) else max(s_max[t, s], x)
                s_cnt[t, s] += 1
    return s_sum, s_max, s_cnt


def ref_fit(x, y, log_mode):
    slopes, inters, r2s, ns = [], [], [], []
    for j in range(y.shape[1]):
        xs, ys, ws = [], [], []
        for t in range(len(x)):
            v = y[t, j]
            if not (np.isfinite(v) and np.isfinite(x[t])) or (log_mode and v <= 0):
                continue
            xs.append(x[t])
            ys.append(np.log(v) if log_mode else v)
            ws.append(v if log_mode else 1.0)
        xs, ys, ws = map(np.array, (xs, ys, ws))
        ns.append(len(xs))
        if len(xs) < 2 or np.ptp(xs) == 0:
            slopes.append(np.nan), inters.append(np.nan), r2s.append(np.nan)
            continue
        sw = np.sqrt(ws)
        a = np.stack([xs * sw, sw], axis=1)
        (slope, inter), *_ = np.linalg.lstsq(a, ys * sw, rcond=None)
        mean = np.sum(ws * ys) / np.sum(ws)
        ss_tot = np.sum(ws * (ys - mean) ** 2)
        ss_res = np.sum(ws * (ys - slope * xs - inter) ** 2)
        slopes.append(slope), inters.append(inter)
        r2s.append(1.0 if ss_tot <= 0 else min(1.0, max(0.0, 1 - ss_res / ss_tot)))
    return np.array(slopes), np.array(inters), np.array(r2s), np.array(ns)


def ref_distance(data, ctx, top):
    s, n = np.zeros(top + 1), np.zeros(top + 1, np.int64)
    for t in range(data.shape[0]):
        for c in range(valid(ctx[t], data.shape[1])):
            d = ctx[t] - c
            if 1 <= d <= top and not np.isnan(data[t, c]):
                s[d] += data[t, c]
                n[d] += 1
    return s, n


def ref_shares(data, ctx, n_prompt, window):
    out = []
    for t in range(data.shape[0]):
        stop = valid(ctx[t], data.shape[1])
        row = data[t, :stop].astype(np.float64)
        ok = ~np.isnan(row)
        idx = np.arange(stop)
        out.append((row[ok].sum(), row[ok & (idx >= stop - window)].sum(), row[ok & (idx < n_prompt)].sum()))
    return np.array(out).reshape(-1, 3)


def ref_row_summary(data, ctx):
    rows = []
    for t in range(data.shape[0]):
        stop = valid(ctx[t], data.shape[1])
        row = data[t, :stop].astype(np.float64)
        good = row[~np.isnan(row)]
        rows.append(
            (
                good.min() if len(good) else np.nan,
                good.max() if len(good) else np.nan,
                good.sum(),
                len(good),
                int(np.isnan(row).sum()),
                int((~np.isnan(data[t, stop:])).sum()),
            )
        )
    return rows


def ref_magnitude(data, ctx, start, cap, exclude_bos, n_pos):
    t_, c_ = data.shape
    traj = np.full((t_, n_pos), np.nan)
    final, peak = np.full(n_pos, np.nan), np.full(n_pos, np.nan)
    for i in range(n_pos):
        if exclude_bos and i == 0:
            continue
        score = None
        for t in range(t_):
            n = int(ctx[t])
            if i < min(n, c_):
                if score is None:
                    score = min(start, cap)
                bos = float(data[t, 0])
                th = (1 - bos) / (n - 1) if n > 1 else np.nan
                a = float(data[t, i])
                if not np.isnan(a) and np.isfinite(th) and th > 0:
                    score = min(score + int(a / th), cap) if a > th else score - 1
                peak[i] = score if np.isnan(peak[i]) else max(peak[i], score)
            traj[t, i] = np.nan if score is None else score
        final[i] = np.nan if score is None else score
    return final, peak, traj


def ref_votes(data, ctx, min_distance, n_pos):
    t_, c_ = data.shape
    traj = np.full((t_, n_pos), np.nan)
    for t in range(t_):
        stop = valid(ctx[t], c_)
        row = data[t, :stop].astype(np.float64)
        good = row[~np.isnan(row)]
        mean = good.mean() if len(good) else np.nan
        prev = traj[t - 1] if t else np.full(n_pos, np.nan)
        for i in range(n_pos):
            if i < min(ctx[t], c_):
                s = 0.0 if np.isnan(prev[i]) else prev[i]
                a = data[t, i]
                if not np.isnan(a) and ctx[t] - i >= min_distance and a > mean:
                    s += 1
                traj[t, i] = s
            else:
                traj[t, i] = prev[i]
    final = traj[-1] if t_ else np.full(n_pos, np.nan)
    return final, traj


def ref_weight(d, mode, m, scale):
    if mode == "none" or d <= m or scale <= 0:
        return 1.0
    x = (d - m) / scale
    return 1 + x if mode == "linear" else 1 + math.log1p(x)


def ref_cumulative(data, ctx, decay, boost, mode, m, scale, floor, n_pos):
    t_, c_ = data.shape
    traj = np.full((t_, n_pos), np.nan)
    final, peak = np.full(n_pos, np.nan), np.full(n_pos, np.nan)
    for i in range(n_pos):
        score = np.nan
        for t in range(t_):
            if i < min(ctx[t], c_):
                score = 0.0 if np.isnan(score) else score
                a = float(data[t, i])
                if not np.isnan(a):
                    score += boost * ref_weight(int(ctx[t]) - i, mode, m, scale) * a
                score -= decay
                if floor:
                    score = max(score, 0.0)
                peak[i] = score if np.isnan(peak[i]) else max(peak[i], score)
            traj[t, i] = score
        final[i] = score
    return final, peak, traj


def ref_mass(data, ctx, kept):
    out = np.full((kept.shape[0], data.shape[0]), np.nan)
    for k in range(kept.shape[0]):
        for t in range(data.shape[0]):
            stop = min(valid(ctx[t], data.shape[1]), kept.shape[1])
            row = data[t, :stop].astype(np.float64)
            ok = ~np.isnan(row)
            total = row[ok].sum()
            if total != 0:
                out[k, t] = row[ok & kept[k, :stop]].sum() / total
    return out


# --------------------------------------------------------------------------- checks


def check_segments(data, ctx, seed=0):
    n_seg = 3
    labels = np.random.default_rng(seed).integers(-1, n_seg + 1, size=data.shape[1]).astype(np.int64)
    s, m, n = np.empty((len(ctx), n_seg)), np.empty((len(ctx), n_seg)), np.empty((len(ctx), n_seg), np.int64)
    K.segment_stats(data, ctx, labels, s, m, n)
    rs, rm, rn = ref_segment_stats(data, ctx, labels, n_seg)
    close(s, rs, "sum"), close(m, rm, "max"), np.testing.assert_array_equal(n, rn)


def check_fit(data, ctx):
    x = np.arange(data.shape[0], dtype=np.float64) * 1.5
    y = data.astype(np.float64)
    for log_mode in (True, False):
        n = y.shape[1]
        out = np.empty(n), np.empty(n), np.empty(n), np.empty(n, np.int64)
        K.fit_trend(x, y, log_mode, *out)
        ref = ref_fit(x, y, log_mode)
        for got, want, name in zip(out, ref, ("slope", "intercept", "r2", "n")):
            np.testing.assert_allclose(
                got, want, rtol=1e-7, atol=1e-9, equal_nan=True, err_msg=f"{name} log={log_mode}"
            )


def check_rows(data, ctx):
    top = data.shape[1] + 1
    s, n = np.zeros(top + 1), np.zeros(top + 1, np.int64)
    K.distance_profile(data, ctx, s, n)
    rs, rn = ref_distance(data, ctx, top)
    close(s, rs), np.testing.assert_array_equal(n, rn)
    t = len(ctx)
    got = np.empty(t), np.empty(t), np.empty(t)
    K.step_shares(data, ctx, 3, 2, *got)
    close(np.stack(got, axis=1).reshape(-1, 3), ref_shares(data, ctx, 3, 2))
    out = [np.empty(t), np.empty(t), np.empty(t)] + [np.empty(t, np.int64) for _ in range(3)]
    K.row_summary(data, ctx, *out)
    want = ref_row_summary(data, ctx)
    for k in range(6):
        close(out[k], np.array([w[k] for w in want], dtype=np.float64).reshape(-1), f"row_summary field {k}")


def check_scores(data, ctx):
    from halo_fast.analysis.scoring import magnitude_thresholds, row_means

    t, n_pos = data.shape[0], data.shape[1]
    for start, cap, bos in ((10000.0, 10000.0, True), (255.0, 10000.0, False), (3.0, 4.0, True)):
        final, peak, traj = np.empty(n_pos), np.empty(n_pos), np.full((t, n_pos), -7.0)
        K.magnitude_scores(data, ctx, magnitude_thresholds(data, ctx), start, cap, bos, traj, final, peak)
        rf, rp, rt = ref_magnitude(data, ctx, start, cap, bos, n_pos)
        close(final, rf, "magnitude final"), close(peak, rp, "magnitude peak")
        if t:
            close(traj, rt, "magnitude trajectory")
        K.magnitude_scores(data, ctx, magnitude_thresholds(data, ctx), start, cap, bos, np.empty((0, 0)), final, peak)
        close(final, rf, "magnitude final without trajectory")
    for m in (0, 1, 2):
        final, peak, traj = np.empty(n_pos), np.empty(n_pos), np.full((t, n_pos), -7.0)
        K.rolling_votes(data, ctx, row_means(data, ctx), m, traj, final, peak)
        rf, rt = ref_votes(data, ctx, m, n_pos)
        close(final, rf, "votes"), close(peak, rf, "votes peak")
        if t:
            close(traj, rt, "votes trajectory")
    for mode in ("none", "linear", "logarithmic"):
        for floor in (True, False):
            final, peak, traj = np.empty(n_pos), np.empty(n_pos), np.full((t, n_pos), -7.0)
            K.cumulative_scores(data, ctx, 0.05, 2.0, K.DISTANCE_MODES[mode], 1.0, 2.0, floor, traj, final, peak)
            rf, rp, rt = ref_cumulative(data, ctx, 0.05, 2.0, mode, 1.0, 2.0, floor, n_pos)
            close(final, rf, f"cumulative {mode}"), close(peak, rp, f"cumulative peak {mode}")
            if t:
                close(traj, rt, f"cumulative trajectory {mode}")
    grid = [(0.0, 1.0, "none", 20.0, 10.0), (0.05, 2.0, "linear", 1.0, 2.0), (0.2, 0.5, "logarithmic", 0.0, 1.0)]
    gf, gp = np.empty((len(grid), n_pos)), np.empty((len(grid), n_pos))
    K.sweep_cumulative(
        data,
        ctx,
        np.array([g[0] for g in grid]),
        np.array([g[1] for g in grid]),
        np.array([K.DISTANCE_MODES[g[2]] for g in grid], np.int64),
        np.array([g[3] for g in grid]),
        np.array([g[4] for g in grid]),
        True,
        gf,
        gp,
    )
    for k, g in enumerate(grid):
        rf, rp, _ = ref_cumulative(data, ctx, g[0], g[1], g[2], g[3], g[4], True, n_pos)
        close(gf[k], rf, f"sweep point {k}"), close(gp[k], rp, f"sweep peak {k}")
    kept = np.random.default_rng(1).random((3, max(n_pos - 1, 0))) < 0.5
    out = np.empty((3, t))
    K.mass_retained(data, ctx, kept, out)
    close(out, ref_mass(data, ctx, kept), "mass retained")


CHECKS = [check_segments, check_fit, check_rows, check_scores]


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
@settings(max_examples=40)
@given(matrices())
def test_kernel_matches_twin_on_random_inputs(check, case):
    check(*case)


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
@settings(max_examples=15)
@given(matrices(negative=True))
def test_kernel_matches_twin_with_negative_values(check, case):
    check(*case)


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", list(range(6)))
def test_kernel_matches_twin_on_hard_cases(check, case):
    data, ctx = list(hard_cases())[case]
    check(data, np.asarray(ctx, dtype=np.int64))


def test_magnitude_gain_is_integer_part_and_capped():
    data = np.array([[0.5, 0.3, 0.15, 0.05]], np.float32)  # threshold (1 - 0.5) / 3 = 1/6
    final, peak = np.empty(4), np.empty(4)
    K.magnitude_scores(data, np.array([4]), np.array([0.5 / 3]), 100.0, 10000.0, True, np.empty((0, 0)), final, peak)
    assert np.isnan(final[0])  # BOS excluded
    assert final[1:].tolist() == [101.0, 99.0, 99.0]  # int(0.3*6)=1 ; 0.15 < 1/6 ; 0.05 < 1/6
    K.magnitude_scores(data, np.array([4]), np.array([0.5 / 3]), 10000.0, 10000.0, True, np.empty((0, 0)), final, peak)
    assert final[1] == 10000.0  # capped


def test_exponential_fit_is_exact_on_a_pure_exponential():
    x = np.arange(50, dtype=np.float64)
    y = (0.2 * np.exp(-0.03 * x))[:, None]
    out = np.empty(1), np.empty(1), np.empty(1), np.empty(1, np.int64)
    K.fit_trend(x, y, True, *out)
    assert abs(-out[0][0] - 0.03) < 1e-12 and abs(math.exp(out[1][0]) - 0.2) < 1e-12 and out[2][0] == 1.0
