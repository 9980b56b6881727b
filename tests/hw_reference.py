"""Plain-Python references of Halo Weave's rules, read line by line from its code
(RecursiveRabbit/halo_weave 49e142cce18f6456bc21b1288a32fa88374c02bc): loops over Python
numbers and numpy scalars, the types its code computes with, so numpy's own promotion
decides every rounding. ``rows`` is the list of each step's aggregated row (float32 arrays,
one per step with attention, of the step's context length)."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def js_int32(x: float) -> int:
    """JavaScript's ``x | 0``."""
    if not math.isfinite(x):
        return 0
    n = int(x) % 2**32  # int() truncates toward zero
    return n - 2**32 if n >= 2**31 else n


def frontend(rows, n_system: int, n_total: int) -> dict:
    """conversation.js updateBrightness: {position: brightness} for positions n_system..n_total-1."""
    brightness = {p: 10000 for p in range(n_system, n_total)}
    for row in rows:
        sink = 0.0
        for v in row:
            if float(v) > sink:
                sink = float(v)
        threshold = (1.0 - sink) / len(row)  # totalLen - 1: the context, the new token not counted
        if threshold <= 0 or not math.isfinite(threshold):
            continue
        for i in range(n_system, len(row)):
            att = float(row[i])
            if att > threshold:
                brightness[i] += js_int32(att / threshold)
                if brightness[i] > 10000:
                    brightness[i] = 10000
            else:
                brightness[i] -= 1
    return brightness


def voting(rows, n_known: int, min_distance: int = 50) -> dict:
    votes = defaultdict(int)
    for row in rows:
        local_mean = np.mean(row)
        current_position = len(row)
        for pos_idx, attn_value in enumerate(row):
            if pos_idx < n_known:
                if (current_position - pos_idx) < min_distance:
                    continue
                if attn_value > local_mean:
                    votes[pos_idx] += 1
    return dict(votes)


def symmetric_voting(rows, n_known: int) -> dict:
    scores = {p: 255 for p in range(n_known)}
    for row in rows:
        local_mean = np.mean(row)
        for pos_idx, attn_value in enumerate(row):
            if pos_idx < n_known:
                if attn_value > local_mean:
                    scores[pos_idx] += 1
                else:
                    scores[pos_idx] -= 1
    return scores


def magnitude_v1(rows, n_known: int) -> dict:
    scores = {p: 255 for p in range(n_known)}
    for row in rows:
        local_mean = np.mean(row)
        for pos_idx, attn_value in enumerate(row):
            if pos_idx < n_known:
                if attn_value > local_mean:
                    scores[pos_idx] += int(attn_value / local_mean)
                else:
                    scores[pos_idx] -= 1
    return scores


def magnitude_v2(rows, n_known: int) -> dict:
    scores = {p: 255 for p in range(1, n_known)}
    for row in rows:
        bos_attention = row[0]
        non_bos = row[1:n_known]
        if len(non_bos) == 0:
            continue  # numpy divides by zero (inf, a warning) and the loop below has nothing to do
        threshold = (1.0 - bos_attention) / len(non_bos)
        for i, pos in enumerate(range(1, n_known)):
            if i >= len(non_bos):
                break
            a = non_bos[i]
            if a > threshold:
                q = a / threshold  # a float32
                scores[pos] = (scores[pos] + _x86_cast(q, np.int64) + 2**63) % 2**64 - 2**63  # int64 wraps
            else:
                scores[pos] -= 1
    return scores


def magnitude_v3(rows, n_known: int) -> dict:
    scores = np.full(n_known, 255, dtype=np.int32)
    scores[0] = 0
    for row in rows:
        context_len = min(len(row), len(scores))
        non_bos = row[1:context_len]
        if len(non_bos) == 0:
            continue
        threshold = (1.0 - row[0]) / len(non_bos)
        for i in range(len(non_bos)):
            a = non_bos[i]
            step = _x86_cast(a / threshold, np.int32) if a > threshold else np.int32(-1)
            scores[1 + i] = np.int32((int(scores[1 + i]) + int(step) + 2**31) % 2**32 - 2**31)
    return {p: int(scores[p]) for p in range(1, n_known)}


def _x86_cast(q, dtype) -> int:
    """numpy's float32-to-integer cast as x86 gives it (undefined in C): out of range or NaN -> the minimum."""
    info = np.iinfo(dtype)
    if not np.isfinite(q) or q < info.min or q >= info.max + 1.0:
        return int(info.min)
    return int(q)


def cumulative(
    rows,
    n_known: int,
    decay_rate=0.001,
    decay_mode="additive",
    distance_mode="logarithmic",
    min_distance=20,
    distance_scale=10.0,
) -> dict:
    """cumulative_strategy.py, its expressions as written (the numpy scalar types do the rounding)."""

    def weight(raw_attention, distance):
        if distance_mode == "none":
            return raw_attention
        if distance < min_distance:
            return 0.0
        multiplier = 1.0
        if distance_mode == "threshold":
            multiplier = 1.0 if distance >= min_distance else 0.0
        elif distance_mode == "linear":
            multiplier = distance / distance_scale
        elif distance_mode == "logarithmic":
            multiplier = np.log(distance + 1) / np.log(distance_scale + 1)
        elif distance_mode == "square_root":
            multiplier = np.sqrt(distance) / np.sqrt(distance_scale)
        return raw_attention * multiplier

    def decay(current_score):
        if decay_mode == "none":
            return 0.0
        if decay_mode == "additive":
            return decay_rate
        if decay_mode == "exponential":
            return current_score * decay_rate
        return 0.0

    scores = defaultdict(float)
    for row in rows:
        current_position = len(row)
        for pos_idx, attn_value in enumerate(row):
            if pos_idx < n_known:
                distance = current_position - pos_idx
                old_score = scores[pos_idx]
                scores[pos_idx] = old_score + weight(attn_value, distance) - decay(old_score)
    return {p: float(v) for p, v in scores.items()}


def prune_to_fit(sentences: list[dict], current_turn: int, fits=None) -> list[list[int]]:
    """conversation.js pruneToFit(0) with _isAnchorProtected, transcribed with lists and filters.

    ``sentences``: getSentences() order, each {turn_id, sentence_id, role, peak}. ``fits``: called
    with the deletions so far after each one (a sentence with its pair); True stops (pruneToFit(budget)).
    """
    live = [dict(s, deleted=False) for s in sentences]
    out = []

    def protected(s):
        if s["sentence_id"] != 0:
            return False
        turn_chunks = [x for x in live if x["turn_id"] == s["turn_id"] and x["role"] == s["role"] and not x["deleted"]]
        if len(turn_chunks) > 1:
            return True
        if s["role"] == "user":
            pt, pr = s["turn_id"] + 1, "assistant"
        elif s["role"] == "assistant":
            pt, pr = s["turn_id"] - 1, "user"
        else:
            return False
        pair = [
            x for x in live if x["turn_id"] == pt and x["sentence_id"] == 0 and x["role"] == pr and not x["deleted"]
        ]
        if not pair:
            return False
        pair_chunks = [x for x in live if x["turn_id"] == pt and x["role"] == pr and not x["deleted"]]
        return len(pair_chunks) > 1

    while True:
        lowest, lowest_peak, count = None, math.inf, 0
        for s in live:
            if s["deleted"] or s["turn_id"] == current_turn or (s["turn_id"] == 0 and s["role"] == "system"):
                continue
            if protected(s):
                continue
            count += 1
            if s["peak"] < lowest_peak:
                lowest_peak, lowest = s["peak"], s
        if count <= 1 or lowest is None:
            return out
        pair = None
        if lowest["sentence_id"] == 0 and lowest["role"] in ("user", "assistant"):
            pt = lowest["turn_id"] + 1 if lowest["role"] == "user" else lowest["turn_id"] - 1
            pr = "assistant" if lowest["role"] == "user" else "user"
            found = [
                x for x in live if x["turn_id"] == pt and x["sentence_id"] == 0 and x["role"] == pr and not x["deleted"]
            ]
            pair = found[0] if found else None
        lowest["deleted"] = True
        out.append([lowest["turn_id"], lowest["sentence_id"]])
        if pair is not None:
            pair["deleted"] = True
            out.append([pair["turn_id"], pair["sentence_id"]])
        if fits is not None and fits(out):
            return out
