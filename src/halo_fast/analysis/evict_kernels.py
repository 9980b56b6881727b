"""numba kernels of the eviction replay (``analysis.evict``): one generation step at a time.

Every policy instance ``j`` (a policy at one budget) keeps, per cache it owns, a list of
cached positions (``cache[j, r, :count[j, r]]``, unordered) and a byte mask
(``incache[j, r, pos]``). A head-level instance owns one cache per row (layer x head),
a layer-level one per layer (kept at the layer's first row), a global one a single
cache (at row 0): ``leader[j, r]`` is the row whose cache row ``r`` reads.

What an instance evicts is the cached, unprotected position of lowest score, the
earlier position first on equal scores (a NaN score counts as +inf: never evicted
before a number). Scores come from ``kind``: the position itself (``SCORE_POSITION``:
oldest first), a hash of (seed, row, position) in [0, 1) (``SCORE_RANDOM``), a row of
``scores`` (``SCORE_ARRAY``) or the persistence count of ``bits`` (``SCORE_BITS``).
``ORACLE_STEP`` instances keep no cache: their mass is each step's own top-B; ``EXTERNAL``
ones have their cache written by the caller (whole sentences, decided in Python).

Every loop is bounded by the arrays it indexes. ``tests/evict_reference.py`` holds the
plain numpy twin of the whole replay that ``tests/test_evict.py`` compares these with.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..kernels.jit import kernel

SCORE_POSITION, SCORE_RANDOM, SCORE_ARRAY, SCORE_BITS, ORACLE_STEP, EXTERNAL = 0, 1, 2, 3, 4, 5
#: Evictions in one step beyond which the candidates are sorted once instead of scanned per eviction.
SCAN_LIMIT = 8

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_ROW = np.uint64(0xBF58476D1CE4E5B9)
_MIX_POS = np.uint64(0x94D049BB133111EB)


@kernel(inline="always")
def unit_hash(seed, row, pos):
    """splitmix64 of (seed, row, position), as a float64 in [0, 1): the random policy's score."""
    z = np.uint64(seed) + np.uint64(row) * _MIX_ROW + np.uint64(pos) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX_ROW
    z = (z ^ (z >> np.uint64(27))) * _MIX_POS
    z = z ^ (z >> np.uint64(31))
    return np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@kernel(inline="always")
def popcount(x):
    x = np.uint64(x)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@kernel(parallel=True)
def prepare_rows(values, rows, ctx, softmax, out, totals):
    """``out[r, :ctx]``: row ``rows[r]`` of one token's flat values (float32 ``[rows * ctx]``) in float64,
    softmaxed when asked (``exp(x - max) / sum``); ``totals[r]``: the row's sum. A row beyond the
    values gets NaN."""
    n_rows = min(rows.shape[0], out.shape[0], totals.shape[0])
    n = min(ctx, out.shape[1])
    for r in prange(n_rows):
        base = rows[r] * ctx
        if base < 0 or base + n > values.shape[0]:
            totals[r] = np.nan
            continue
        if softmax:
            top = -np.inf
            for i in range(n):
                v = np.float64(values[base + i])
                if v > top or v != v:
                    top = v
            s = 0.0
            for i in range(n):
                e = math.exp(np.float64(values[base + i]) - top)
                out[r, i] = e
                s += e
            t = 0.0
            for i in range(n):
                out[r, i] = out[r, i] / s
                t += out[r, i]
            totals[r] = t
        else:
            s = 0.0
            for i in range(n):
                out[r, i] = np.float64(values[base + i])
                s += out[r, i]
            totals[r] = s


@kernel(parallel=True)
def top_positions(probs, ctx, top, n_top):
    """Each row's ``top.shape[1]`` most attended positions (on equal values the later one; NaN never),
    in no particular order; ``n_top[r]``: how many it has (fewer when the context is shorter)."""
    n_rows = min(probs.shape[0], top.shape[0], n_top.shape[0])
    k = top.shape[1]
    n = min(ctx, probs.shape[1])
    for r in prange(n_rows):
        m = 0
        low = 0  # the kept position of lowest value, the earliest on equal values (once k are kept)
        for i in range(n):
            v = probs[r, i]
            if v != v:
                continue
            if m < k:
                top[r, m] = i
                m += 1
            elif v >= probs[r, top[r, low]]:
                top[r, low] = i
            else:
                continue
            if m == k:
                low = 0
                for q in range(1, k):
                    a, b = probs[r, top[r, q]], probs[r, top[r, low]]
                    if a < b or (a == b and top[r, q] < top[r, low]):
                        low = q
        n_top[r] = m


@kernel(inline="always")
def _protected(pos, ctx, ctx_prev, sinks, recent, protect_new):
    """Never evicted at this step: a sink, a new position (for a causal policy), one of the ``recent``
    last positions of the context (the new ones among them)."""
    if pos < sinks:
        return True
    if pos >= ctx_prev and protect_new:
        return True
    return recent > 0 and pos >= ctx - recent


@kernel(inline="always")
def _score(kind, scores_row, bits_row, mask, seed, row_id, pos):
    if kind == SCORE_POSITION:
        s = np.float64(pos)
    elif kind == SCORE_RANDOM:
        s = unit_hash(seed, row_id, pos)
    elif kind == SCORE_BITS:
        s = np.float64(popcount(bits_row[pos] & mask))
    else:
        s = scores_row[pos]
    return np.inf if s != s else s


@kernel(parallel=True)
def evict_step(
    ctx,
    ctx_prev,
    initial,
    kind,
    score_of,
    budget,
    sinks,
    recent,
    protect_new,
    hist_mask,
    seed,
    row_ids,
    leader,
    scores,
    bits,
    cache,
    count,
    incache,
    overflow,
):
    """One step's admissions and evictions for every instance with a cache: positions
    ``ctx_prev..ctx-1`` enter, then the lowest scored unprotected ones leave until at most
    ``budget[j, r]`` remain. ``initial``: the first scored step, whose cache starts as the
    whole context ``0..ctx-1``. ``overflow[0]`` is set when a cache had no room for a position
    (the caller sized ``cache`` too small: its numbers would be wrong)."""
    n_inst = min(kind.shape[0], cache.shape[0], count.shape[0], incache.shape[0], leader.shape[0])
    n_rows = min(cache.shape[1], count.shape[1], incache.shape[1], leader.shape[1], row_ids.shape[0])
    cap = cache.shape[2]
    n_pos = min(incache.shape[2], scores.shape[2], bits.shape[1])
    ctx = min(ctx, n_pos)
    for rr in prange(n_rows):
        r = np.int64(rr)  # a signed row index: mixed with the int64 shapes it must not become a float
        for j in range(n_inst):
            if leader[j, r] != r or kind[j] == ORACLE_STEP or kind[j] == EXTERNAL:
                continue
            s_idx = min(max(score_of[j], 0), scores.shape[0] - 1)
            scores_row = scores[s_idx, min(r, scores.shape[1] - 1)]
            bits_row = bits[min(r, bits.shape[0] - 1)]
            b = budget[j, r]
            new = protect_new[j] != 0
            if initial:
                n_cand = ctx
            else:
                c = count[j, r]
                for p in range(max(ctx_prev, 0), ctx):
                    if c < cap:
                        cache[j, r, c] = p
                        incache[j, r, p] = 1
                        c += 1
                    else:
                        overflow[0] = 1
                count[j, r] = c
                n_cand = c
            excess = n_cand - b
            if excess <= 0 and initial:
                for p in range(min(ctx, cap)):
                    cache[j, r, p] = p
                    incache[j, r, p] = 1
                count[j, r] = min(ctx, cap)
                if ctx > cap:
                    overflow[0] = 1
            if excess <= 0:
                continue
            if initial or excess > SCAN_LIMIT:
                cand = np.empty(n_cand, dtype=np.int64)
                if initial:
                    for p in range(n_cand):
                        cand[p] = p
                else:
                    cand[:] = np.sort(cache[j, r, :n_cand])
                m = 0
                for q in range(n_cand):
                    p = cand[q]
                    if not _protected(p, ctx, ctx_prev, sinks[j], recent[j], new):
                        cand[m] = p
                        m += 1
                values = np.empty(m)
                for q in range(m):
                    values[q] = _score(kind[j], scores_row, bits_row, hist_mask[j], seed[j], row_ids[r], cand[q])
                order = np.argsort(values, kind="mergesort")
                if initial:
                    for p in range(ctx):
                        incache[j, r, p] = 1
                for q in range(min(excess, m)):
                    incache[j, r, cand[order[q]]] = 0
                c = 0
                if initial:
                    for p in range(ctx):
                        if incache[j, r, p]:
                            if c < cap:
                                cache[j, r, c] = p
                                c += 1
                            else:
                                overflow[0] = 1
                else:
                    for k in range(n_cand):
                        p = cache[j, r, k]
                        if incache[j, r, p]:
                            cache[j, r, c] = p
                            c += 1
                count[j, r] = c
                continue
            c = count[j, r]
            for _ in range(excess):
                best_k = -1
                best_s = 0.0
                best_p = 0
                for k in range(c):
                    p = cache[j, r, k]
                    if _protected(p, ctx, ctx_prev, sinks[j], recent[j], new):
                        continue
                    s = _score(kind[j], scores_row, bits_row, hist_mask[j], seed[j], row_ids[r], p)
                    if best_k < 0 or s < best_s or (s == best_s and p < best_p):
                        best_k, best_s, best_p = k, s, p
                if best_k < 0:
                    break
                incache[j, r, best_p] = 0
                cache[j, r, best_k] = cache[j, r, c - 1]
                c -= 1
            count[j, r] = c


@kernel(parallel=True)
def kept_mass(probs, totals, ctx, kind, budget, leader, cache, count, incache, top, n_top, mass, recall):
    """Per instance and row, this step's ``mass`` (attention on cached positions over the row's total;
    exactly 1 when the whole context is cached) and ``recall`` (share of the row's top positions
    cached). ``ORACLE_STEP`` instances take each row's own top-``budget`` mass (summed from the
    largest down), and the recall that gives."""
    n_inst = min(kind.shape[0], mass.shape[0], recall.shape[0], leader.shape[0], budget.shape[0])
    n_rows = min(probs.shape[0], totals.shape[0], mass.shape[1], recall.shape[1], top.shape[0], n_top.shape[0])
    n = min(ctx, probs.shape[1], incache.shape[2])
    has_oracle = False
    for j in range(n_inst):
        has_oracle = has_oracle or kind[j] == ORACLE_STEP
    for r in prange(n_rows):
        total = totals[r]
        nt = min(n_top[r], top.shape[1])
        for j in range(n_inst):
            if kind[j] == ORACLE_STEP:
                continue
            g = min(max(leader[j, r], 0), count.shape[1] - 1)
            c = min(count[j, g], cache.shape[2])
            if not total > 0.0:
                mass[j, r] = np.nan
            elif c >= n:
                mass[j, r] = 1.0
            else:
                s = 0.0
                for k in range(c):
                    p = cache[j, g, k]
                    if 0 <= p < n:
                        s += probs[r, p]
                mass[j, r] = s / total
            hits = 0
            for q in range(nt):
                hits += incache[j, g, top[r, q]]
            recall[j, r] = hits / nt if nt > 0 else np.nan
        if not has_oracle:
            continue
        ranked = np.sort(probs[r, :n])  # ascending: a top-b sum is the sum of the last b
        for j in range(n_inst):
            if kind[j] != ORACLE_STEP:
                continue
            b = min(max(budget[j, r], 0), n)
            if not total > 0.0:
                mass[j, r] = np.nan
            elif b >= n:
                mass[j, r] = 1.0
            else:
                s = 0.0
                for q in range(n - 1, n - 1 - b, -1):
                    s += ranked[q]
                mass[j, r] = s / total
            recall[j, r] = min(b, nt) / nt if nt > 0 else np.nan


@kernel(parallel=True)
def accumulate(probs, ctx, out, sign):
    """``out[r, i] += sign * probs[r, i]`` over the step's context (H2O's sums, SnapKV's window, the
    future still to come)."""
    n_rows = min(probs.shape[0], out.shape[0])
    n = min(ctx, probs.shape[1], out.shape[1])
    for r in prange(n_rows):
        if sign > 0:
            for i in range(n):
                out[r, i] += probs[r, i]
        else:
            for i in range(n):
                out[r, i] -= probs[r, i]


@kernel(parallel=True)
def persist(probs, ctx, bits):
    """Scissorhands' history: shift in one bit per position, set when its attention exceeds 1/ctx."""
    n_rows = min(probs.shape[0], bits.shape[0])
    n = min(ctx, probs.shape[1], bits.shape[1])
    threshold = 1.0 / ctx if ctx > 0 else np.inf
    for r in prange(n_rows):
        for i in range(n):
            bits[r, i] = (bits[r, i] << np.uint64(1)) | np.uint64(1 if probs[r, i] > threshold else 0)


@kernel(parallel=True)
def layer_means(probs, ctx, first_rows, n_heads, out):
    """TOVA's score: per layer the mean over its ``n_heads`` rows (from ``first_rows[l]``), summed in
    row order, kept at the layer's first row."""
    n = min(ctx, probs.shape[1], out.shape[1])
    for layer in prange(first_rows.shape[0]):
        r0 = first_rows[layer]
        if r0 < 0 or r0 + n_heads > probs.shape[0] or r0 >= out.shape[0]:
            continue
        for i in range(n):
            s = 0.0
            for h in range(n_heads):
                s += probs[r0 + h, i]
            out[r0, i] = s / n_heads


@kernel(parallel=True)
def pool_window(acc, n, kernel_size, out):
    """SnapKV's score: ``acc`` (a window's summed attention) averaged over ``kernel_size`` positions
    centred on each (zero padding counted, as ``avg_pool1d`` does), for positions below ``n``; then
    ``acc`` is cleared for the next window."""
    n_rows = min(acc.shape[0], out.shape[0])
    n = min(n, acc.shape[1], out.shape[1])
    half = kernel_size // 2
    for r in prange(n_rows):
        for i in range(n):
            s = 0.0
            for q in range(max(i - half, 0), min(i + half + 1, n)):
                s += acc[r, q]
            out[r, i] = s / kernel_size
        for i in range(acc.shape[1]):
            acc[r, i] = 0.0
