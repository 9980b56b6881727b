"""numba kernels of the eviction replay (``analysis.evict``): one generation step at a time.

Every policy instance ``j`` (a policy at one budget) keeps, per cache it owns, a byte mask of
the cached positions (``incache[j, r, pos]``) and their number (``count[j, r]``). A head-level instance owns one cache per row (layer x head),
a layer-level one per layer (kept at the layer's first row), a global one a single
cache (at row 0): ``leader[j, r]`` is the row whose cache row ``r`` reads.

What an instance evicts is the cached, unprotected position of lowest score, the
earlier position first on equal scores (a NaN score counts as +inf: never evicted
before a number). Protected positions (sinks, new, recent) are the ends of the context, so
the evictable ones are one range of positions, scanned in order. Scores come from ``kind``: the position itself (``SCORE_POSITION``:
oldest first), a row of ``scores`` (``SCORE_ARRAY``: the random policy's is a hash of
(seed, row, position), :func:`random_scores`) or the persistence count of ``bits`` (``SCORE_BITS``).
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

SCORE_POSITION, SCORE_ARRAY, SCORE_BITS, ORACLE_STEP, EXTERNAL = 0, 2, 3, 4, 5
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


@kernel(parallel=True)
def random_scores(seed, row_ids, out):
    """``out[r, i]``: :func:`unit_hash` of (seed, capture row ``row_ids[r]``, position i)."""
    for r in prange(min(row_ids.shape[0], out.shape[0])):
        for i in range(out.shape[1]):
            out[r, i] = unit_hash(seed, row_ids[r], i)


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
            for i in range(n):
                out[r, i] = np.nan
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
def _score(kind, scores_row, bits_row, mask, pos):
    if kind == SCORE_POSITION:
        s = np.float64(pos)
    elif kind == SCORE_BITS:
        s = np.float64(popcount(bits_row[pos] & mask))
    else:
        s = scores_row[pos]
    return np.inf if s != s else s


@kernel(inline="always")
def evictable(ctx, ctx_prev, sinks, recent, protect_new):
    """The positions ``[lo, hi)`` a policy may evict at this step: not a sink (below ``sinks``), not
    new (from ``ctx_prev``, for a causal policy), not one of the ``recent`` last of the context."""
    hi = ctx
    if protect_new:
        hi = min(hi, ctx_prev)
    if recent > 0:
        hi = min(hi, ctx - recent)
    return max(sinks, 0), max(hi, 0)


@kernel(parallel=True, nrt=True)  # per-step scratch arrays and a sort
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
    leader,
    scores,
    bits,
    count,
    incache,
):
    """One step's admissions and evictions for every instance with a cache: positions
    ``ctx_prev..ctx-1`` enter (``initial``, the first scored step: the whole context ``0..ctx-1``),
    then the lowest scored evictable ones leave until at most ``budget[j, r]`` remain. A cache is
    its mask ``incache[j, r]`` and its size ``count[j, r]``: the scans run over contiguous
    positions, the earliest of equal scores found first."""
    n_inst = min(kind.shape[0], count.shape[0], incache.shape[0], leader.shape[0], budget.shape[0])
    n_rows = min(count.shape[1], incache.shape[1], leader.shape[1], budget.shape[1])
    n_pos = min(incache.shape[2], scores.shape[2], bits.shape[1])
    ctx = min(ctx, n_pos)
    ctx_prev = min(max(ctx_prev, 0), ctx)
    for rr in prange(n_rows):
        r = np.int64(rr)  # a signed row index: mixed with the int64 shapes it must not become a float
        for j in range(n_inst):
            if leader[j, r] != r or kind[j] == ORACLE_STEP or kind[j] == EXTERNAL:
                continue
            s_idx = min(max(score_of[j], 0), scores.shape[0] - 1)
            scores_row = scores[s_idx, min(r, scores.shape[1] - 1)]
            bits_row = bits[min(r, bits.shape[0] - 1)]
            cached = incache[j, r]
            first = 0 if initial else ctx_prev
            for p in range(first, ctx):
                cached[p] = 1
            c = ctx if initial else count[j, r] + ctx - ctx_prev
            lo, hi = evictable(ctx, ctx_prev, sinks[j], recent[j], protect_new[j] != 0)
            excess = c - budget[j, r]
            if excess > SCAN_LIMIT:  # sort the candidates once
                cand = np.empty(max(hi - lo, 0), dtype=np.int64)
                m = 0
                for p in range(lo, hi):
                    if cached[p]:
                        cand[m] = p
                        m += 1
                values = np.empty(m)
                for q in range(m):
                    values[q] = _score(kind[j], scores_row, bits_row, hist_mask[j], cand[q])
                order = np.argsort(values, kind="mergesort")  # stable: ties in position order
                gone = min(excess, m)
                for q in range(gone):
                    cached[cand[order[q]]] = 0
                c -= gone
            else:
                for _ in range(max(excess, 0)):
                    best_p = -1
                    best_s = np.inf
                    for p in range(lo, hi):
                        s = _score(kind[j], scores_row, bits_row, hist_mask[j], p)
                        s = s if cached[p] else np.inf  # a select: whether p is cached is a coin toss
                        if s < best_s:
                            best_s, best_p = s, p
                    if best_p < 0:  # only positions scored +inf (or NaN) are left: the earliest
                        for p in range(lo, hi):
                            if cached[p]:
                                best_p = p
                                break
                    if best_p < 0:
                        break
                    cached[best_p] = 0
                    c -= 1
            count[j, r] = c


@kernel(parallel=True)
def kept_mass(
    probs, totals, ctx, kind, budget, leader, count, incache, top, n_top, oracle_order, scratch, mass, recall
):
    """Per instance and row, this step's ``mass`` (attention on cached positions over the row's total;
    exactly 1 when the whole context is cached) and ``recall`` (share of the row's top positions
    cached). ``ORACLE_STEP`` instances (``oracle_order``: them, largest budget first) take each row's
    own top-``budget`` mass, and the recall that gives, selected in the row's copy in ``scratch[r, 0]``
    (``scratch[r, 1]``: the selection's spare row)."""
    n_inst = min(kind.shape[0], mass.shape[0], recall.shape[0], leader.shape[0], budget.shape[0], count.shape[0])
    n_rows = min(probs.shape[0], totals.shape[0], mass.shape[1], recall.shape[1], top.shape[0], n_top.shape[0])
    n = min(ctx, probs.shape[1], incache.shape[2])
    has_oracle = oracle_order.shape[0] > 0
    for rr in prange(n_rows):
        r = np.int64(rr)
        total = totals[r]
        nt = min(n_top[r], top.shape[1])
        for j in range(n_inst):
            if kind[j] == ORACLE_STEP:
                continue
            g = min(max(leader[j, r], 0), count.shape[1] - 1)
            cached = incache[j, g]
            if not total > 0.0:
                mass[j, r] = np.nan
            elif count[j, g] >= n:
                mass[j, r] = 1.0
            else:
                mass[j, r] = _masked_sum(probs[r], cached, n) / total
            hits = 0
            for q in range(nt):
                hits += cached[top[r, q]]
            recall[j, r] = hits / nt if nt > 0 else np.nan
        if not has_oracle:
            continue
        row = scratch[min(r, scratch.shape[0] - 1), 0]
        spare = scratch[min(r, scratch.shape[0] - 1), 1]
        m = min(n, row.shape[0])
        for i in range(m):
            row[i] = probs[r, i]
        top_end = m  # row[m - b:m] holds the b largest once selected; budgets are taken largest first
        for q in range(oracle_order.shape[0]):
            j = oracle_order[q]
            if j < 0 or j >= n_inst:
                continue
            b = min(max(budget[j, r], 0), m)
            if not total > 0.0:
                mass[j, r] = np.nan
            elif b >= n:
                mass[j, r] = 1.0
            else:
                _select_largest(row, spare, m - min(top_end, m), m, b)
                top_end = b
                s = 0.0
                for i in range(m - b, m):
                    s += row[i]
                mass[j, r] = s / total
            recall[j, r] = min(b, nt) / nt if nt > 0 else np.nan


@kernel(inline="always")
def _masked_sum(values, mask, n):
    """``sum(values[:n] * mask[:n])`` in four interleaved partial sums (one chain of dependent adds
    would wait on each add's latency), combined ``(s0 + s1) + (s2 + s3)``."""
    n = min(n, values.shape[0], mask.shape[0])
    s0 = s1 = s2 = s3 = 0.0
    p = 0
    while p + 4 <= n:
        s0 += values[p] * mask[p]
        s1 += values[p + 1] * mask[p + 1]
        s2 += values[p + 2] * mask[p + 2]
        s3 += values[p + 3] * mask[p + 3]
        p += 4
    for q in range(p, n):
        s0 += values[q] * mask[q]
    return (s0 + s1) + (s2 + s3)


@kernel(inline="always")
def _select_largest(x, y, lo, hi, k):
    """Rearrange ``x[lo:hi]`` so that its ``k`` largest values are ``x[hi - k:hi]`` (in no order), ``y``
    a scratch row as long: quickselect whose partitions are branch-free (a comparison of attention
    values is a coin toss for the branch predictor) -- the values below the pivot to the front, then,
    when the k-th largest is not among them, those equal to it (ties end the search)."""
    target = hi - k
    while hi - lo > 1 and lo <= target < hi:
        a, b, c = x[lo], x[(lo + hi) // 2], x[hi - 1]
        pivot = max(min(a, b), min(max(a, b), c))  # the median of three: a value of the range
        lt = _split(x, y, lo, hi, pivot, False)
        if target < lt:
            hi = lt
            continue
        le = _split(x, y, lt, hi, pivot, True)
        if target < le or le == lo:  # found; or a NaN pivot, which nothing equals: stop rather than loop
            return
        lo = le


@kernel(inline="always")
def _split(x, y, lo, hi, pivot, or_equal):
    """``x[lo:hi]`` reordered: the values below ``pivot`` (or equal to it) first, then the others; returns
    where the first part ends. Each value is written to both ends of ``y`` and the end it belongs to
    advances (no branch), then ``y`` is copied back."""
    front = lo
    back = hi - 1
    for i in range(lo, hi):
        v = x[i]
        y[front] = v
        y[back] = v
        move = (v < pivot) | (or_equal & (v == pivot))
        front += np.int64(move)
        back -= np.int64(1 - move)
    for i in range(lo, hi):
        x[i] = y[i]
    return front


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
    centred on each (zero padding counted, as ``avg_pool1d`` does), for positions below ``n`` (those
    the window saw); the positions from ``n`` on, not scored until the next re-selection, get +inf
    (kept until then). Then ``acc`` is cleared for the next window."""
    n_rows = min(acc.shape[0], out.shape[0])
    n = min(n, acc.shape[1], out.shape[1])
    half = kernel_size // 2
    for r in prange(n_rows):
        for i in range(n):
            s = 0.0
            for q in range(max(i - half, 0), min(i + half + 1, n)):
                s += acc[r, q]
            out[r, i] = s / kernel_size
        for i in range(n, out.shape[1]):
            out[r, i] = np.inf
        for i in range(acc.shape[1]):
            acc[r, i] = 0.0
