"""The eviction replay's semantics in plain Python and numpy: a set of cached positions per cache,
scores recomputed from the steps seen so far, evictions by ``sorted`` -- no kernels, no shared state
between budgets. ``tests/test_evict.py`` compares ``halo_fast.analysis.evict`` with it step by step.

``tensors``: the replayed steps' float32 ``[L, H, ctx]`` attention, in order (the first observed
only); ``layers`` / ``heads``: the replayed rows; ``n_layers``: the capture's layer count (pyramidkv's
per-layer budgets). Returns ``{(policy, budget): (mass, recall)}``, float64 ``[steps - 1, rows]``.
"""

from __future__ import annotations

import math

import numpy as np

from hw_reference import frontend, prune_to_fit

MASK64 = (1 << 64) - 1


def splitmix_unit(seed: int, row: int, pos: int) -> float:
    z = (seed + row * 0xBF58476D1CE4E5B9 + pos * 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    return (z >> 11) / 2.0**53


def probabilities(tensor, rows, softmax: bool) -> list[list[float]]:
    flat = np.asarray(tensor, dtype=np.float32).reshape(-1, tensor.shape[-1])
    out = []
    for r in rows:
        x = [float(v) for v in flat[r]]
        if softmax:
            top = max(x)
            e = [math.exp(v - top) for v in x]
            s = 0.0
            for v in e:
                s += v
            x = [v / s for v in e]
        out.append(x)
    return out


def top_k(p: list[float], k: int) -> list[int]:
    """The k most attended positions, the later on equal values, NaN never."""
    ranked = sorted((i for i in range(len(p)) if p[i] == p[i]), key=lambda i: (p[i], i))
    return ranked[-k:] if k else []


def snap_window(b: int) -> int:
    return max(1, min(32, b // 4))


def pyramid(b: int, n_layers: int, layer: int) -> int:
    """A straight line from window + high (layer 0) to window + low (the last layer), mean b."""
    w = snap_window(b)
    if n_layers < 2:
        return b
    usable = max(b - w, 0)
    low = usable // 20
    high = 2 * usable - low
    at = high + (low - high) * (layer / (n_layers - 1))
    return max(int(np.round(w + at)), 1)


def pooled(acc: list[float], n: int) -> list[float]:
    out = []
    for i in range(n):
        s = 0.0
        for q in range(max(i - 2, 0), min(i + 3, n)):
            s += acc[q]
        out.append(s / 5)
    return out


def replay(
    tensors,
    policies,
    budgets,
    layers,
    heads,
    n_layers,
    *,
    kind="probabilities",
    top=8,
    seed=0,
    n_system=0,
    sentences=None,
    current_turn=None,
    js_rows=None,
):
    """``sentences``: with hw_frontend by sentence, ``[(turn, sentence, role, [positions])]`` in
    getSentences order over every position; ``js_rows``: the steps' ``mean_js`` aggregates (hw_frontend)."""
    n_heads = tensors[0].shape[1]
    rows = [layer * n_heads + head for layer in layers for head in heads]
    probs = [probabilities(t, rows, kind == "logits") for t in tensors]
    ctx = [t.shape[2] for t in tensors]
    return {(p, b): _one(p, b, probs, ctx, rows, layers, heads, n_layers, top, seed, n_system, sentences,
                         current_turn, js_rows) for p in policies for b in budgets}  # fmt: skip


def _one(policy, b, probs, ctx, rows, layers, heads, n_layers, top, seed, n_system, sentences, current, js_rows):
    R, T = len(rows), len(probs)
    Hs = len(heads)
    mass = np.full((T - 1, R), np.nan)
    recall = np.full((T - 1, R), np.nan)
    if policy == "oracle_step":
        for t in range(1, T):
            for r in range(R):
                p = probs[t][r]
                total = sum(p)
                keep = sorted(p)[-b:] if b < len(p) else p
                mass[t - 1, r] = (
                    np.nan if not total > 0 else (1.0 if b >= len(p) else sum(sorted(keep, reverse=True)) / total)
                )
                nt = len(top_k(p, top))
                recall[t - 1, r] = min(b, nt) / nt if nt else np.nan
        return mass, recall
    level = {"streaming": "global", "tova": "layer", "hw_frontend": "global"}.get(policy, "head")
    owner = [0 if level == "global" else (r // Hs) * Hs if level == "layer" else r for r in range(R)]
    caches: dict[int, set] = {}
    for t in range(1, T):
        seen = probs[:t]  # the observed steps: everything a causal decision may use
        for g in sorted(set(owner)):
            budget = b
            if policy == "pyramidkv" and ctx[t] > b:  # nothing evicted while the context fits b
                budget = pyramid(b, n_layers, layers[g // Hs])
            new = set(range(ctx[t - 1], ctx[t])) if t > 1 else set(range(ctx[0], ctx[1]))
            cached = set(range(ctx[1])) if t == 1 else caches[g] | new
            if policy == "hw_frontend" and sentences is not None:
                caches[g] = _sentences(cached, budget, t, js_rows, n_system, sentences, current, ctx)
                continue
            if policy == "hw_frontend":
                score, protect = hw_token_policy(js_rows, t, n_system, ctx)
            else:
                score, protect = _policy(policy, b, g, seen, ctx, t, rows, seed, Hs, probs)
            may_go = [p for p in sorted(cached) if not protect(p, new)]
            may_go.sort(key=lambda p: (score(p), p))
            excess = len(cached) - budget
            caches[g] = cached - set(may_go[: max(excess, 0)])
        for r in range(R):
            c = caches[owner[r]]
            p = probs[t][r]
            total = sum(p)
            if not total > 0:
                mass[t - 1, r] = np.nan
            elif len(c) >= ctx[t]:
                mass[t - 1, r] = 1.0
            else:
                mass[t - 1, r] = sum(p[i] for i in sorted(c)) / total
            best = top_k(p, top)
            recall[t - 1, r] = sum(i in c for i in best) / len(best) if best else np.nan
    return mass, recall


def _policy(policy, b, g, seen, ctx, t, rows, seed, Hs, probs):
    """(score(position), protected(position, new)) of a causal policy at step t for the cache of row g."""
    last, now = ctx[t - 1], ctx[t]  # the context the policy has seen; the one it keeps positions of

    def nan_last(f):
        return lambda p: math.inf if f(p) != f(p) else f(p)

    def new_only(p, new):
        return p in new

    if policy == "streaming":  # up to 4 sinks, and always room for the newest position
        sinks = min(4, b - 1)
        recent = b - sinks
        return (lambda p: float(p)), (lambda p, new: p < sinks or p in new or p >= now - recent)
    if policy == "h2o":
        acc = [_sequential([s[g][i] for s in seen if i < len(s[g])]) for i in range(ctx[t])]
        recent = b // 2
        return nan_last(lambda p: acc[p]), (lambda p, new: p in new or (recent > 0 and p >= now - recent))
    if policy == "tova":
        row = seen[-1]
        mean = [_sequential([row[g + h][i] for h in range(Hs)]) / Hs for i in range(last)] + [0.0] * (ctx[t] - last)
        return nan_last(lambda p: mean[p]), new_only
    if policy in ("snapkv", "pyramidkv"):
        w = snap_window(b)
        k = t  # decisions so far are 1..t; the scores were re-selected at the last k' = 1 + w m <= t
        k_sel = 1 + w * ((k - 1) // w)
        window = seen[max(k_sel - w, 0) : k_sel]
        n = ctx[k_sel - 1]
        acc = [_sequential([s[g][i] for s in window if i < len(s[g])]) for i in range(n)]
        score = pooled(acc, n) + [math.inf] * (ctx[t] - n)  # not seen by the window: kept until scored
        return nan_last(lambda p: score[p]), (lambda p, new: p in new or p >= now - w)
    if policy == "scissorhands":
        history = seen[-32:]
        counts = [sum(1 for s in history if i < len(s[g]) and s[g][i] > 1.0 / len(s[g])) for i in range(ctx[t])]
        recent = max(1, b // 8)
        return (lambda p: float(counts[p])), (lambda p, new: p in new or p >= now - recent)
    if policy == "random":
        return (lambda p: splitmix_unit(seed, rows[g], p)), new_only
    if policy == "oracle_future":
        # the sum over every step, less each observed one: the order the replay computes it in
        future = []
        for i in range(ctx[t]):
            x = _sequential([s[g][i] for s in probs if i < len(s[g])])
            for s in seen:
                if i < len(s[g]):
                    x -= s[g][i]
            future.append(x)
        return nan_last(lambda p: future[p]), (lambda p, new: False)
    raise AssertionError(policy)


def _sequential(values) -> float:
    s = 0.0
    for v in values:
        s += v
    return s


def brightness(js_rows, t, n_system, n):
    """Every position's brightness after the observed steps ``0..t-1`` (10000 where never updated)."""
    seen = frontend([r for r in js_rows[:t]], n_system, n) if t else {}
    return [seen.get(p, 10000.0) if p >= n_system else math.nan for p in range(n)]


def hw_token_policy(js_rows, t, n_system, ctx):
    bright = brightness(js_rows, t, n_system, ctx[t])
    return (lambda p: bright[p]), (lambda p, new: p < n_system or p in new)


def _sentences(cached, budget, t, js_rows, n_system, sentences, current, ctx):
    """pruneToFit(budget) at step t over the live sentences, peaks from the brightness so far."""
    if len(cached) <= budget:
        return cached
    bright = brightness(js_rows, t, n_system, ctx[t])
    live = []
    for turn, sentence, role, positions in sentences:
        here = [p for p in positions if p < ctx[t] and p in cached and p >= n_system]
        if here:
            peak = max(bright[p] for p in here)
            live.append({"turn_id": turn, "sentence_id": sentence, "role": role, "peak": peak, "positions": here})
    by_key = {(s["turn_id"], s["sentence_id"]): s for s in live}
    kept = set(cached)
    done = [0]

    def fits(out):
        for turn, sentence in out[done[0] :]:
            kept.difference_update(by_key[(turn, sentence)]["positions"])
        done[0] = len(out)
        return len(kept) <= budget

    prune_to_fit(live, current, fits)
    return kept
