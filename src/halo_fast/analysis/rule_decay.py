"""The decay rate to recommend, in the units of the rule a user runs.

Every rule adds to a token's score each step an *increment* and takes away a *decay*:

==========================================  =======================================  =================
rule                                        increment per step                       its own decay
==========================================  =======================================  =================
hw_frontend, magnitude                      ``a / threshold`` when above it          1 (below it)
hw_magnitude_v1 / _v2 / _v3                 ``a / mean`` / ``a / threshold``, above  1 (below it)
hw_symmetric_voting                         1 when above the row mean                1 (below it)
hw_voting, voting                           1 when above the row mean (far tokens)   none
hw_cumulative, cumulative                   ``w(d) * a`` (``boost * w(d) * a``)      ``decay_rate``
==========================================  =======================================  =================

A prompt token whose attention fades at rate ``r`` (``a * exp(-r t)``, :mod:`.decay`) sees its
increment fall by ``r * increment`` per step. The recommended decay, in the rule's units, is
that loss for the median token: ``max(median r, 0) x median mean increment`` over the prompt
tokens the rule rewards at least once (BOS excluded; a token the rule never rewards has no
gains for a decay to balance) -- subtracted each step, it takes from the score what the
attention's own fading takes from its gains. Set against the rule's own decay it says whether
that decay is too fast or too slow for this capture.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from . import finite_median as _median
from . import matrix
from .hw_rules import HW_RULES, distance_weights, replay_input, row_means

#: The rule a recommendation is for when none is named: the front end's own brightness.
DEFAULT_RULE = "hw_frontend"
UNITS = {
    "hw_frontend": "brightness points",
    "magnitude": "brightness points",
    "hw_magnitude_v1": "score points",
    "hw_magnitude_v2": "score points",
    "hw_magnitude_v3": "score points",
    "hw_symmetric_voting": "votes",
    "hw_voting": "votes",
    "voting": "votes",
    "hw_cumulative": "score (attention) units",
    "cumulative": "score (attention) units",
}


def own_decay(rule: str, params: dict) -> float:
    """The decay ``rule`` itself subtracts per step (0 for the votes)."""
    if rule in ("hw_voting", "voting"):
        return 0.0
    if rule in ("hw_cumulative", "cumulative"):
        return float(params["decay_rate"])
    return 1.0


def increments(red, rule: str, params: dict, n_prompt: int, probabilities, cache=None) -> np.ndarray:
    """float64 ``[T, n_prompt]``: what ``rule`` adds to each prompt token's score per step (0 when it adds
    nothing, NaN beyond the step's context or where the rule never scores: the front end's system
    prompt). halo_fast's rules read ``probabilities`` ((data, ctx)); Halo Weave's their own
    aggregation of ``red``, as recorded (``cache``: :func:`~.hw_rules.replay_input`'s)."""
    from . import hw_kernels as hk
    from .conversation import context_tokens

    own = replay_input(red, rule, cache) if rule in HW_RULES else None
    data, ctx = matrix(own) if own is not None else probabilities
    a = data[:, :n_prompt].astype(np.float64)
    t_steps, n = a.shape
    inside = np.arange(n)[None, :] < np.asarray(ctx)[:, None]
    a = np.where(inside, a, np.nan)
    nothing = np.where(np.isnan(a), np.nan, 0.0)
    d = np.asarray(ctx)[:, None] - np.arange(n)[None, :]
    with np.errstate(all="ignore"):
        if rule in ("hw_frontend", "magnitude"):  # the integer part of the quotient: ``| 0`` and ``int()``
            th = np.empty(t_steps)
            if rule == "hw_frontend":
                hk.frontend_thresholds(data, ctx, th)
            else:
                th = (1.0 - data[:, 0].astype(np.float64)) / (ctx.astype(np.float64) - 1.0)
            th = np.where((th > 0) & np.isfinite(th), th, np.nan)[:, None]
            out = np.where(a > th, np.trunc(a / th), nothing)
            if rule == "hw_frontend":
                out[:, : context_tokens(own).n_system] = np.nan  # held apart, never scored
            return out
        if rule in ("hw_magnitude_v2", "hw_magnitude_v3"):
            known = n_prompt if params["known_tokens"] is None else int(params["known_tokens"])
            th = np.empty(t_steps)
            hk.bos_thresholds(data, ctx, known, th)
            return np.where(a > th[:, None], np.trunc(a / th[:, None]), nothing)
        if rule in ("hw_magnitude_v1", "hw_symmetric_voting", "hw_voting", "voting"):
            means = row_means(data, ctx).astype(np.float64)[:, None]
            if rule == "hw_magnitude_v1":
                return np.where(a > means, np.trunc(a / means), nothing)
            votes = np.where(a > means, 1.0, nothing)
            if rule != "hw_symmetric_voting":
                votes = np.where((d >= int(params["min_distance"])) | np.isnan(votes), votes, 0.0)
            return votes
        if rule == "hw_cumulative":
            mode = params["distance_mode"]
            weight = distance_weights(mode, float(params["distance_scale"]), int(max(ctx.max(initial=0), 1)))
            w = np.ones_like(a) if mode in ("none", "threshold") else weight[np.clip(d, 0, len(weight) - 1)]
            if mode != "none":
                w = np.where(d < int(params["min_distance"]), 0.0, w)
            return w * a
        if rule == "cumulative":
            return float(params["boost"]) * _own_weight(d, params) * a
    raise ValueError(f"no increment defined for rule {rule!r}")


def _own_weight(d: np.ndarray, params: dict) -> np.ndarray:
    """halo_fast's cumulative distance weight (analysis.kernels.distance_weight, in numpy)."""
    x = (d - float(params["min_distance"])) / float(params["scale"])
    mode = params["distance"]
    if mode == "none":
        return np.ones(d.shape)
    grown = 1.0 + x if mode == "linear" else 1.0 + np.log1p(np.maximum(x, 0.0))
    return np.where(d <= float(params["min_distance"]), 1.0, grown)


def recommend(red, rule: str, params: dict, rates: np.ndarray, n_prompt: int, probabilities, cache=None) -> dict:
    """The recommendation for ``rule`` (see the module docstring); ``rates``: the fitted fade of each prompt
    token (BOS first, as :func:`.decay.fit_series` gives them)."""
    inc = increments(red, rule, params, n_prompt, probabilities, cache)[:, 1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        level = np.nanmean(inc, axis=0) if inc.size else np.zeros(inc.shape[1])
    rates = np.asarray(rates, dtype=np.float64)[1:n_prompt]
    rewarded = np.nan_to_num(level) > 0
    rate_med = _median(rates[rewarded])
    level_med = _median(level[rewarded])
    ok = math.isfinite(rate_med) and math.isfinite(level_med)
    value = max(rate_med, 0.0) * level_med if ok else float("nan")
    mine = own_decay(rule, params)
    units = UNITS[rule]
    return {
        "rule": rule,
        "decay_rate": value,
        "units": f"{units} per step",
        "rule_decay": mine,
        "ratio_to_rule_decay": value / mine if mine and ok else None,
        "median_rate": rate_med,
        "median_half_life": math.log(2) / rate_med if rate_med > 0 else None,
        "median_increment": level_med,
        "per_step_factor": math.exp(-rate_med) if math.isfinite(rate_med) else None,
        "tokens_fitted": int(np.isfinite(rates[rewarded]).sum()),
        "tokens_rewarded": int(rewarded.sum()),
        "derivation": f"decay_rate = median fitted fade rate x median increment {rule} gives a prompt token per "
        f"step, over the tokens it rewards at least once (BOS excluded), in {units}: what the attention's own fading takes from a median token's gains "
        f"each step; {rule} itself subtracts {mine:g} per step",
    }


def describe(rec: dict) -> str:
    """One sentence: the decay_rate recommended for the rule, in its units, against the rule's own decay."""
    from .text import fmt

    if rec.get("decay_rate") is None:
        return f"recommended decay_rate for {rec['rule']}: - (no prompt token could be fitted)"
    own = rec["rule_decay"]
    versus = f"; {rec['rule']} itself subtracts {fmt(own)}" if own else f"; {rec['rule']} has no decay of its own"
    if rec.get("ratio_to_rule_decay") is not None:
        versus += f" (x{fmt(rec['ratio_to_rule_decay'], 3)})"
    return (
        f"recommended decay_rate for {rec['rule']}: {fmt(rec['decay_rate'], 3)} {rec['units']} "
        f"(median fade {fmt(rec['median_rate'], 3)}/step x median increment {fmt(rec['median_increment'], 3)})" + versus
    )
