"""Scoring rules replayed offline on the reduced attention (docs/analysis.md, "Scoring rules").

Two families share :func:`score`: Halo Weave's own rules, exactly (``hw_frontend``,
``hw_voting``, ... in :mod:`.hw_rules`), and halo_fast's generalisations of them below
(``magnitude``, ``voting``, ``cumulative``), whose parameters reach every variant.

halo_fast's own rules see probabilities (a logit capture is softmaxed per row first) and score the
positions ``0..N-1`` (default: every column; ``prompt_only``: the prompt). A position is
scored from the first step it is in the context; before that its score is NaN.

* **magnitude voting** (the front end's brightness): per step ``threshold = (1 - a_BOS) / (n - 1)``
  with ``a_BOS`` the step's attention on position 0 and ``n`` its context length; a token
  strictly above gains ``int(a / threshold)``, otherwise loses 1; scores start at ``start``
  (10000 in the front end, 255 in an older offline strategy) and never exceed ``cap``
  (10000); there is no lower bound. BOS is not scored (NaN).
* **rolling-mean voting**: +1 per step for a token strictly above the step's mean attention
  over its context (the row mean), counted only when it is at least ``min_distance`` (50)
  behind the head (``ctx - i >= min_distance``); starts at 0.
* **cumulative score**: starts at 0; each step ``score += boost * w(d) * a - decay_rate``,
  then clamped at 0 (``floor``; brightness is never negative, and without the clamp an
  additive decay shifts every prompt token alike and would not change any ranking).
  ``d = ctx - i``; ``w(d) = 1`` for ``d <= min_distance`` (20), beyond with
  ``x = (d - min_distance) / scale`` (scale 10): none 1, linear ``1 + x``, logarithmic
  ``1 + ln(1 + x)`` -- distant tokens are weighted up against the local bias.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import matrix, open_reduced, prompt_length, to_probabilities, value_kind
from .hw_rules import HW_DEFAULTS, HW_RULES

OWN_RULES = ("magnitude", "voting", "cumulative")
RULES = HW_RULES + OWN_RULES
DEFAULTS = {
    "magnitude": {"start": 10000.0, "cap": 10000.0, "exclude_bos": True},
    "voting": {"min_distance": 50},
    "cumulative": {
        "decay_rate": 0.003,
        "distance": "logarithmic",
        "min_distance": 20.0,
        "scale": 10.0,
        "boost": 1.0,
        "floor": True,
    },
}


@dataclass
class Scores:
    """A rule's scores: ``final`` and ``peak`` (NaN: not scored) of each of ``positions``."""

    rule: str
    params: dict
    final: np.ndarray  # [N]
    peak: np.ndarray  # [N]
    trajectory: np.ndarray | None  # [T, N] or None
    steps: np.ndarray
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [N] context positions
    prune_order: list | None = None  # hw_frontend: [turn_id, sentence_id] as pruneToFit deletes them

    def __repr__(self) -> str:
        """One line: the dataclass default prints every array, which floods a notebook."""
        trajectory = ", with trajectory" if self.trajectory is not None else ""
        return f"Scores({self.rule}: {len(self.final)} positions x {len(self.steps)} steps{trajectory})"

    def to_json(self) -> dict:
        def clean(a):
            return [None if not np.isfinite(v) else float(v) for v in a]

        out = {
            "rule": self.rule,
            "params": self.params,
            "positions": [int(p) for p in self.positions],
            "final": clean(self.final),
            "peak": clean(self.peak),
        }
        if self.prune_order is not None:
            out["prune_order"] = self.prune_order
        if self.trajectory is not None:
            out["trajectory"] = [clean(row) for row in self.trajectory]
        return out


def magnitude_thresholds(data: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """Per step ``(1 - a_BOS) / (n - 1)`` (NaN when the context has fewer than 2 tokens)."""
    n = ctx.astype(np.float64)
    bos = data[:, 0].astype(np.float64) if data.shape[1] else np.full(len(ctx), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1, (1.0 - bos) / (n - 1.0), np.nan)


def row_means(data: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """Mean of the finite values of each step's context (NaN for an empty row)."""
    out = np.full(len(ctx), np.nan)
    for t in range(len(ctx)):
        row = data[t, : min(int(ctx[t]), data.shape[1])]
        row = row[np.isfinite(row)]
        if len(row):
            out[t] = row.astype(np.float64).mean()
    return out


def score_matrix(data, ctx, rule: str, n_pos: int | None = None, trajectory: bool = False, **params) -> tuple:
    """(final, peak, trajectory or None, params used) of ``rule`` on a probability matrix."""
    from . import kernels

    if rule not in OWN_RULES:
        raise ValueError(f"unknown scoring rule {rule!r}; choose from {', '.join(OWN_RULES)}")
    unknown = set(params) - set(DEFAULTS[rule])
    if unknown:
        raise ValueError(f"{rule} takes {', '.join(DEFAULTS[rule])}, not {', '.join(sorted(unknown))}")
    p = {**DEFAULTS[rule], **params}
    n = data.shape[1] if n_pos is None else int(n_pos)
    final, peak = np.empty(n), np.empty(n)
    traj = np.full((data.shape[0], n), np.nan) if trajectory else np.empty((0, 0))
    if rule == "magnitude":
        kernels.magnitude_scores(
            data,
            ctx,
            magnitude_thresholds(data, ctx),
            float(p["start"]),
            float(p["cap"]),
            bool(p["exclude_bos"]),
            traj,
            final,
            peak,
        )
    elif rule == "voting":
        kernels.rolling_votes(data, ctx, row_means(data, ctx), int(p["min_distance"]), traj, final, peak)
    else:
        if p["distance"] not in kernels.DISTANCE_MODES:
            raise ValueError(
                f"unknown distance weighting {p['distance']!r}; choose from {', '.join(kernels.DISTANCE_MODES)}"
            )
        kernels.cumulative_scores(
            data,
            ctx,
            float(p["decay_rate"]),
            float(p["boost"]),
            kernels.DISTANCE_MODES[p["distance"]],
            float(p["min_distance"]),
            float(p["scale"]),
            bool(p["floor"]),
            traj,
            final,
            peak,
        )
    return final, peak, (traj if trajectory else None), p


def probability_matrix(red, kind=None):
    """``(data, ctx)`` as probabilities (softmax per row for a logit capture)."""
    data, ctx = matrix(red)
    if value_kind(data, kind) == "logits":
        data = to_probabilities(data, ctx)
    return data, ctx


def score(
    source, rule: str, *, prompt_only=False, trajectory=False, kind=None, reduce_options=None, **params
) -> Scores:
    """Replay ``rule`` over the capture (any format, or a reduce output); parameters as in :data:`DEFAULTS`
    and ``hw_rules.HW_DEFAULTS``.

    A Halo Weave rule reduces a capture with its own aggregation and sees the values as recorded
    (``kind`` and ``prompt_only`` are halo_fast's rules' options); on a reduce output made another way
    it warns (:class:`~halo_fast.analysis.DataWarning`) that a score may differ.
    """
    if rule not in RULES:
        raise ValueError(f"unknown scoring rule {rule!r}; choose from {', '.join(RULES)}")
    if rule in HW_RULES:
        return _hw_score(source, rule, trajectory, reduce_options, params)
    red = open_reduced(source, **(reduce_options or {}))
    data, ctx = probability_matrix(red, kind)
    final, peak, traj, used = score_matrix(
        data, ctx, rule, prompt_length(red) if prompt_only else None, trajectory, **params
    )
    return Scores(rule, used, final, peak, traj, np.asarray(red.steps), np.arange(len(final), dtype=np.int64))


def _hw_score(source, rule, trajectory, reduce_options, params) -> Scores:
    from .conversation import context_tokens
    from .hw_rules import AGGREGATION, hw_scores, warn_if_inexact

    red = open_reduced(source, prefer_op=AGGREGATION[rule], **(reduce_options or {}))
    warn_if_inexact(red, rule)
    data, ctx = matrix(red)
    tokens = context_tokens(red) if rule == "hw_frontend" else None
    result = hw_scores(data, ctx, rule, len(red.prompt), tokens, trajectory, **params)
    return Scores(
        rule,
        result.params,
        result.final,
        result.peak,
        result.trajectory,
        np.asarray(red.steps),
        result.positions,
        result.prune_order,
    )


def rule_defaults(rule: str) -> dict:
    """The parameters ``rule`` takes, with their defaults."""
    if rule in HW_RULES:
        return dict(HW_DEFAULTS[rule])
    if rule in DEFAULTS:
        return dict(DEFAULTS[rule])
    raise ValueError(f"unknown scoring rule {rule!r}; choose from {', '.join(RULES)}")


def magnitude_voting(source, **kwargs) -> Scores:
    return score(source, "magnitude", **kwargs)


def rolling_voting(source, **kwargs) -> Scores:
    return score(source, "voting", **kwargs)


def cumulative_score(source, **kwargs) -> Scores:
    return score(source, "cumulative", **kwargs)


def ranked(scores: Scores, tokens) -> dict:
    """Sentences and tokens ranked by final score, highest first (ties in context order): a sentence's
    score is the highest final score of its scored tokens, as Halo Weave's ``_group_tokens_by_sentence``
    ranks them (which also keys by role: a sentence here is halo_fast's (turn, sentence), whose tokens
    share one role in any capture Halo Weave writes); ``tokens`` is the capture's
    :class:`~.conversation.ContextTokens`."""
    rows: dict[tuple[int, int], dict] = {}
    token_rows = []
    for p, f, k in zip(scores.positions.tolist(), scores.final.tolist(), scores.peak.tolist()):
        if not np.isfinite(f) or p >= len(tokens):
            continue
        key = (int(tokens.turn[p]), int(tokens.sentence[p]))
        token_rows.append(
            {"position": p, "sentence": f"{key[0]}:{key[1]}", "final": f, "peak": k, "text": tokens.text[p]}
        )
        row = rows.setdefault(
            key,
            {"turn_id": key[0], "sentence_id": key[1], "role": tokens.role[p], "score": f, "n_tokens": 0, "text": ""},
        )
        row["score"] = max(row["score"], f)
        row["n_tokens"] += 1
        row["text"] += tokens.text[p]
    sentences = sorted(rows.values(), key=lambda r: -r["score"])
    token_rows.sort(key=lambda r: -r["final"])
    return {"sentences": sentences, "tokens": token_rows}
