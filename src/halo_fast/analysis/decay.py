"""Questions 2-4 -- does irrelevant context fade, do negative logits act as natural decay, what decay rate.

Probabilities: each series (a prompt token's attention, a sentence's summed attention,
a group's) is fitted with ``a * exp(-rate * step)`` by weighted log-linear least squares
(``ln y`` against the generation step, weights ``y``; zeros and NaN skipped); half-life
``ln 2 / rate`` steps; r2 in log space.  Logits (may be negative): a straight line,
``rate = -slope`` (logit units lost per step), so in both cases a positive rate means fading.

The recommended ``decay_rate`` is for the rule the user runs (``rule``, default
``hw_frontend``), in that rule's units (:mod:`.rule_decay`): the median fitted fade rate
times the median per-step increment the rule gives a prompt token, set against the
rule's own decay. Fits for it use probabilities (softmax of each row for logit
captures), BOS excluded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import finite_median as _median
from . import matrix, open_reduced, planted_groups, prompt_length, sentence_index, to_probabilities, value_kind
from .sentences import sentence_matrices
from .text import fmt


@dataclass
class Trend:
    """Fits of the columns of a ``[T, N]`` series: ``rate`` (positive: fading), ``amplitude``, ``r2``, ``n`` points."""

    rate: np.ndarray
    amplitude: np.ndarray
    r2: np.ndarray
    n: np.ndarray
    kind: str

    @property
    def half_life(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.where(self.rate > 0, math.log(2) / self.rate, np.nan)
        return h if self.kind == "probabilities" else np.full_like(self.rate, np.nan)

    def __repr__(self) -> str:
        return f"Trend({len(self.rate)} series, {self.kind}, median rate {fmt(_median(self.rate))})"


def fit_series(steps: np.ndarray, series: np.ndarray, kind: str) -> Trend:
    """Fit every column of ``series`` ([T, N], any float) against ``steps`` with the numba kernel."""
    from .kernels import fit_trend

    y = np.ascontiguousarray(series, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    n = y.shape[1]
    slope, intercept, r2 = np.empty(n), np.empty(n), np.empty(n)
    count = np.empty(n, dtype=np.int64)
    fit_trend(np.ascontiguousarray(steps, dtype=np.float64), y, kind == "probabilities", slope, intercept, r2, count)
    amplitude = np.exp(intercept) if kind == "probabilities" else intercept
    return Trend(-slope, amplitude, r2, count, kind)


@dataclass
class DecayResult:
    kind: str
    steps: np.ndarray
    positions: np.ndarray
    roles: list
    tokens: Trend
    sentence_keys: list
    sentences: Trend
    groups: dict
    by_role: dict
    negative_trend_share: float
    recommended_decay_rate: float
    recommendation: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line: the dataclass default prints every array, which floods a notebook."""
        return (
            f"DecayResult({len(self.positions)} prompt tokens, {len(self.sentence_keys)} sentences, "
            f"{len(self.groups)} groups over {len(self.steps)} steps, {self.kind}; "
            f"recommended decay_rate {fmt(self.recommended_decay_rate)})"
        )

    def to_json(self) -> dict:
        def rows(trend, extra):
            return [
                dict(extra(i), rate=_num(trend.rate[i]), half_life=_num(trend.half_life[i]), r2=_num(trend.r2[i]))
                for i in range(len(trend.rate))
            ]

        return {
            "kind": self.kind,
            "tokens": rows(self.tokens, lambda i: {"position": int(self.positions[i])}),
            "sentences": rows(
                self.sentences, lambda i: {"turn_id": self.sentence_keys[i][0], "sentence_id": self.sentence_keys[i][1]}
            ),
            "groups": {
                k: {kk: (_num(v) if isinstance(v, float) else v) for kk, v in g.items()} for k, g in self.groups.items()
            },
            "by_role": {
                k: {kk: _num(v) if isinstance(v, float) else v for kk, v in r.items()} for k, r in self.by_role.items()
            },
            "negative_trend_share": _num(self.negative_trend_share),
            "recommended_decay_rate": _num(self.recommended_decay_rate),
            "recommendation": {k: (_num(v) if isinstance(v, float) else v) for k, v in self.recommendation.items()},
        }


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def decay_analysis(
    source, groups=None, kind=None, rule=None, params=None, rule_input=None, replay_cache=None, **reduce_options
) -> DecayResult:
    """Trend of every prompt token, sentence, group and role, and the decay rate recommended for ``rule``
    (default ``hw_frontend``; ``params`` its parameters; ``rule_input``: the reduced attention a Halo Weave
    rule reads, when ``source`` has been transformed -- softmaxed -- from it; ``replay_cache``: see ``prune``)."""
    from .rule_decay import DEFAULT_RULE, recommend
    from .scoring import rule_defaults

    rule = rule or DEFAULT_RULE
    rule_params = {**rule_defaults(rule), **(params or {})}
    red = open_reduced(source, **reduce_options)
    data, ctx = matrix(red)
    kind = value_kind(data, kind)
    steps = np.asarray(red.steps, dtype=np.float64)
    n_prompt = prompt_length(red)
    tokens = fit_series(steps, data[:, :n_prompt], kind)
    sent = sentence_index(red.prompt, n_prompt)
    total, _, _ = sentence_matrices(data, ctx, sent.labels, len(sent))
    sentences = fit_series(steps, total, kind)
    if groups is None:
        groups = planted_groups(red.metadata)
    planted = {g["name"]: g for g in ((red.metadata or {}).get("synth") or {}).get("groups", [])}
    group_fits = {}
    for name, members in groups.items():
        idx = [sent.index(m) for m in members]
        curve = np.nansum(total[:, idx], axis=1) if len(total) else np.zeros(0)
        fit = fit_series(steps, curve, kind)
        entry = {
            "sentences": [list(m) for m in members],
            "rate": float(fit.rate[0]),
            "half_life": float(fit.half_life[0]),
            "r2": float(fit.r2[0]),
            "sentence_rate_median": _median(sentences.rate[idx]),
        }
        if name in planted and kind == "probabilities":
            truth = float(planted[name]["decay_rate"])
            entry["planted_rate"] = truth
            entry["relative_error"] = abs(entry["rate"] - truth) / truth if truth else float("nan")
        group_fits[name] = entry
    roles = [
        str(r) for r in (red.prompt["message_role"][:n_prompt] if "message_role" in red.prompt else [""] * n_prompt)
    ]
    by_role = {}
    role_arr = np.array(roles, dtype=object)
    for role in dict.fromkeys(roles):
        mask = role_arr == role
        mask[:1] = False  # BOS excluded
        if mask.any():
            by_role[role] = {
                "tokens": int(mask.sum()),
                "rate_median": _median(tokens.rate[mask]),
                "fading_share": float(np.mean(tokens.rate[mask] > 0)),
            }
    finite = np.isfinite(tokens.rate[1:])
    negative = float(np.mean(tokens.rate[1:][finite] > 0)) if finite.any() else float("nan")
    probs = data if kind == "probabilities" else to_probabilities(data, ctx)
    fades = tokens.rate if kind == "probabilities" else fit_series(steps, probs[:, :n_prompt], "probabilities").rate
    source_red = rule_input if rule_input is not None else red
    recommendation = recommend(source_red, rule, rule_params, fades, n_prompt, (probs, ctx), replay_cache)
    positions = np.asarray(red.prompt["position"])[:n_prompt] if "position" in red.prompt else np.arange(n_prompt)
    return DecayResult(
        kind,
        np.asarray(red.steps),
        positions,
        roles,
        tokens,
        sent.keys,
        sentences,
        group_fits,
        by_role,
        negative,
        recommendation["decay_rate"],
        recommendation,
    )
