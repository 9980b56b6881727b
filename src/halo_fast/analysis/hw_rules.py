"""Halo Weave's own scoring rules, replayed exactly: the same numbers its code gives, token by token.

Source: RecursiveRabbit/halo_weave at 49e142cce18f6456bc21b1288a32fa88374c02bc. Each rule
reads Halo Weave's aggregation of the capture (``mean_js`` for the front end, ``mean_f32``
for the offline strategies: see ``kernels.reduce``) and the values as recorded -- Halo
Weave's code does not softmax a logit capture, so neither does a replay of it. The rules
(docs/analysis.md, "Halo Weave's rules", states each in a paragraph):

* ``hw_frontend`` -- js/conversation.js ``updateBrightness``: the live brightness;
* ``hw_voting`` -- tests/strategy_framework/voting_strategy.py;
* ``hw_symmetric_voting`` -- symmetric_voting_strategy.py;
* ``hw_cumulative`` -- cumulative_strategy.py (every decay and distance mode);
* ``hw_magnitude_v1`` / ``_v2`` / ``_v3`` -- magnitude_voting_strategy.py, _v2.py, _v3.py.

The offline strategies score the first ``known_tokens`` positions (Halo Weave's
``all_tokens``: the prompt, or an export file's tokens), v2 and v3 all but position 0;
the front end every conversation token (not the system prompt), generated ones included.
Integer rules give integers; a position a rule leaves out is NaN (``hw_voting`` leaves
out every position that never got a vote, as its output does).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from . import hw_kernels as hk
from .conversation import ContextTokens, prune_order

HW_RULES = (
    "hw_frontend",
    "hw_voting",
    "hw_symmetric_voting",
    "hw_cumulative",
    "hw_magnitude_v1",
    "hw_magnitude_v2",
    "hw_magnitude_v3",
)
#: Each rule's parameters and defaults: those of its Halo Weave class (the front end has none),
#: plus ``known_tokens`` for the strategies (None: the prompt's length).
HW_DEFAULTS: dict[str, dict] = {
    "hw_frontend": {},
    "hw_voting": {"min_distance": 50, "known_tokens": None},
    "hw_symmetric_voting": {"known_tokens": None},
    "hw_cumulative": {
        "decay_rate": 0.001,
        "decay_mode": "additive",
        "distance_mode": "logarithmic",
        "min_distance": 20,
        "distance_scale": 10.0,
        "known_tokens": None,
    },
    "hw_magnitude_v1": {"known_tokens": None},
    "hw_magnitude_v2": {"known_tokens": None},
    "hw_magnitude_v3": {"known_tokens": None},
}
#: How each rule aggregates a step's [layers, heads, ctx] tensor (a ``reduce`` op).
AGGREGATION = {rule: ("mean_js" if rule == "hw_frontend" else "mean_f32") for rule in HW_RULES}
SOURCE_FILES = {
    "hw_frontend": "js/conversation.js (updateBrightness, _aggregateAttention, pruneToFit)",
    "hw_voting": "tests/strategy_framework/voting_strategy.py",
    "hw_symmetric_voting": "tests/strategy_framework/symmetric_voting_strategy.py",
    "hw_cumulative": "tests/strategy_framework/cumulative_strategy.py",
    "hw_magnitude_v1": "tests/strategy_framework/magnitude_voting_strategy.py",
    "hw_magnitude_v2": "tests/strategy_framework/magnitude_voting_strategy_v2.py",
    "hw_magnitude_v3": "tests/strategy_framework/magnitude_voting_strategy_v3.py",
}
FRONTEND_START = 10000.0  # a token's brightness when it enters, and the cap
STRATEGY_START = 255


@dataclass
class HWResult:
    """What one replay gives: ``positions`` scored, ``final`` and ``peak`` aligned with them (NaN: not
    scored), ``trajectory`` ([T, len(positions)] or None), the parameters used, and for ``hw_frontend``
    the ``prune_order``."""

    positions: np.ndarray
    final: np.ndarray
    peak: np.ndarray
    trajectory: np.ndarray | None
    params: dict
    prune_order: list | None = None


def check_params(rule: str, params: dict) -> dict:
    """The rule's parameters with ``params`` applied; a ValueError names what the rule does not take."""
    defaults = HW_DEFAULTS[rule]
    unknown = set(params) - set(defaults)
    if unknown:
        takes = ", ".join(defaults) or "no parameters"
        raise ValueError(f"{rule} takes {takes}, not {', '.join(sorted(unknown))}")
    p = {**defaults, **params}
    if rule == "hw_cumulative":
        if p["decay_mode"] not in hk.DECAY_MODES:
            raise ValueError(f"unknown decay_mode {p['decay_mode']!r}; choose from {', '.join(hk.DECAY_MODES)}")
        if p["distance_mode"] not in hk.DISTANCE_MODES:
            raise ValueError(
                f"unknown distance_mode {p['distance_mode']!r}; choose from {', '.join(hk.DISTANCE_MODES)}"
            )
    return p


def row_means(data: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """float32 ``np.mean`` of each step's aggregated row, computed by numpy itself (its pairwise float32
    sum is what the strategies compare against); NaN for an empty row."""
    out = np.full(len(ctx), np.nan, dtype=np.float32)
    for t in range(min(len(ctx), data.shape[0])):
        c = min(max(int(ctx[t]), 0), data.shape[1])
        if c:
            out[t] = np.mean(np.ascontiguousarray(data[t, :c]))
    return out


def distance_weights(mode: str, scale: float, max_distance: int) -> np.ndarray:
    """``_apply_distance_weight``'s multiplier for every distance ``0..max_distance``, computed with the
    very numpy calls of cumulative_strategy.py (np.log, np.sqrt on Python ints), so the doubles match."""
    out = np.zeros(max_distance + 1, dtype=np.float64)
    if mode == "linear":
        for d in range(max_distance + 1):
            out[d] = d / scale
    elif mode == "logarithmic":
        for d in range(max_distance + 1):
            out[d] = np.log(d + 1) / np.log(scale + 1)
    elif mode == "square_root":
        for d in range(max_distance + 1):
            out[d] = np.sqrt(d) / np.sqrt(scale)
    return out


def hw_scores(data, ctx, rule: str, n_prompt: int, tokens: ContextTokens | None, trajectory=False, **params):
    """Replay ``rule`` on Halo Weave's aggregated matrix (float32 [T, C], as recorded); an :class:`HWResult`."""
    if rule not in HW_RULES:
        raise ValueError(f"unknown Halo Weave rule {rule!r}; choose from {', '.join(HW_RULES)}")
    p = check_params(rule, params)
    data = np.ascontiguousarray(data, dtype=np.float32)
    ctx = np.ascontiguousarray(ctx, dtype=np.int64)
    if rule == "hw_frontend":
        if tokens is None:
            raise ValueError("hw_frontend needs the capture's tokens (who is system prompt, turn, sentence)")
        n = max(len(tokens), data.shape[1])
        first = tokens.n_system
    else:
        n = int(n_prompt if p["known_tokens"] is None else p["known_tokens"])
        if n < 0:
            raise ValueError(f"known_tokens must be >= 0, got {n}")
        first = 1 if rule in ("hw_magnitude_v2", "hw_magnitude_v3") else 0
    final = np.full(n, np.nan)
    peak = np.full(n, np.nan)
    traj = np.full((data.shape[0], n), np.nan) if trajectory else np.empty((0, 0))
    order = None
    if rule == "hw_frontend":
        thresholds = np.empty(data.shape[0])
        hk.frontend_thresholds(data, ctx, thresholds)
        hk.frontend_scores(data, ctx, thresholds, first, FRONTEND_START, FRONTEND_START, traj, final, peak)
        order = prune_order(tokens, final)
    elif rule in ("hw_voting", "hw_symmetric_voting"):
        symmetric = rule == "hw_symmetric_voting"
        min_distance = 0 if symmetric else int(p["min_distance"])
        means = row_means(data, ctx)
        hk.mean_votes(data, ctx, means, n, min_distance, symmetric, float(STRATEGY_START), traj, final, peak)
    elif rule == "hw_magnitude_v1":
        status = np.full(n, -1, dtype=np.int64)
        hk.mean_magnitude(data, ctx, row_means(data, ctx), n, float(STRATEGY_START), traj, final, peak, status)
        if (status >= 0).any():
            i = int(np.flatnonzero(status >= 0)[0])
            raise ValueError(
                f"hw_magnitude_v1: at row {int(status[i])} the quotient for position {i} is not finite "
                "(the step's mean is 0): Halo Weave's code stops there (int() of inf or NaN)"
            )
    elif rule in ("hw_magnitude_v2", "hw_magnitude_v3"):
        thresholds = np.empty(data.shape[0])
        hk.bos_thresholds(data, ctx, n, thresholds)
        hk.bos_magnitude(data, ctx, thresholds, n, STRATEGY_START, rule == "hw_magnitude_v3", traj, final, peak)
    else:
        max_d = int(ctx.max()) if len(ctx) else 0
        weights = distance_weights(p["distance_mode"], float(p["distance_scale"]), max_d)
        hk.cumulative(
            data,
            ctx,
            weights,
            n,
            hk.DISTANCE_MODES[p["distance_mode"]],
            int(p["min_distance"]),
            hk.DECAY_MODES[p["decay_mode"]],
            float(p["decay_rate"]),
            traj,
            final,
            peak,
        )
    positions = np.arange(first, n, dtype=np.int64)
    return HWResult(positions, final[first:], peak[first:], traj[:, first:] if trajectory else None, p, order)


def aggregated_as(red, rule: str) -> bool:
    """``red`` holds the rule's own aggregation (op, over layers and heads)."""
    return red.op == AGGREGATION[rule] and sorted(red.over) == ["heads", "layers"]


def aggregation_warning(red, rule: str) -> str | None:
    """Why a replay of ``rule`` on ``red`` does not give Halo Weave's numbers exactly, or None: another
    aggregation, some layers or heads only (when known), or some steps only."""
    want = AGGREGATION[rule]
    name = red.source or "this input"
    if not aggregated_as(red, rule):
        return (
            f"{name}: {rule} replays Halo Weave's rule on attention aggregated as {want} over layers and heads; "
            f"this input holds {red.op} over {'+'.join(red.over)}, so a score near an integer boundary can differ "
            f"(run on the capture itself, or reduce it with --op {want})"
        )
    n_layers, n_heads = red.extra.get("capture_layers"), red.extra.get("capture_heads")
    if (n_layers is not None and len(red.layers) != n_layers) or (n_heads is not None and len(red.heads) != n_heads):
        return f"{name}: {rule} on some layers or heads only: Halo Weave's rule averages all of them"
    if red.every != 1 or red.tokens is not None:
        return f"{name}: {rule} on some steps only (--every / --tokens): Halo Weave's rule sees every step"
    return None


def warn_if_inexact(red, rule: str) -> None:
    from . import DataWarning

    problem = aggregation_warning(red, rule)
    if problem:
        warnings.warn(problem, DataWarning, stacklevel=3)


def replay_input(red, rule: str, cache: dict | None = None):
    """The reduced attention a replay of ``rule`` reads: ``red`` itself when it is aggregated as the rule
    aggregates; else the capture ``red`` was reduced from, reduced again that way (once per aggregation:
    ``cache``), with ``red``'s layers, heads and steps; else ``red``. Whatever still keeps the replay from
    being Halo Weave's own numbers is a DataWarning (:func:`aggregation_warning`)."""
    import os

    from ..store import is_reduce_output
    from . import open_reduced

    want = AGGREGATION[rule]
    own = red
    if not aggregated_as(red, rule):
        cache = {} if cache is None else cache
        source = red.source
        if want in cache:
            own = cache[want]
        elif source and os.path.exists(source) and not is_reduce_output(source):
            n_layers, n_heads = red.extra.get("capture_layers"), red.extra.get("capture_heads")
            own = cache[want] = open_reduced(
                source,
                op=want,
                layers=None if len(red.layers) == n_layers else red.layers,
                heads=None if len(red.heads) == n_heads else red.heads,
                every=red.every,
                tokens=red.tokens,
                recover=bool(red.extra.get("recovery")),  # read as red was: a cut capture's complete tokens
                check=False,
            )
            own.extra.setdefault("capture_layers", n_layers)
            own.extra.setdefault("capture_heads", n_heads)
    warn_if_inexact(own, rule)
    return own
