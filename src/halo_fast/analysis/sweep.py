"""``sweep``: the cumulative score over a parameter grid, each point scored by the attention mass its pruning keeps.

For every combination of ``decay_rate`` x ``boost`` x ``distance`` x ``min_distance`` x
``scale`` the cumulative score of every prompt token is replayed over the whole capture
(numba, parallel across grid points), the bottom ``budget`` % of unprotected prompt tokens
by final score is pruned, and the point is scored by the mean (and minimum) share of each
step's prompt attention that the kept tokens hold. With the clamp at 0, only the ratio
``boost / decay_rate`` (and the distance weighting) changes the ranking.

The sweep is of halo_fast's ``cumulative`` rule, so the decay rate it recommends beside the
grid (:mod:`.rule_decay`, with the first grid point's ``boost`` and distance weighting) is
for that rule, in its units -- the number ``decay --rule cumulative`` gives with the same
``--param`` values; ``decay`` and ``report`` default to the front end's rule,
``hw_frontend``, whose units differ. Protected like ``prune``'s: BOS, the chat template's
tokens and (``protect_system``) the system prompt.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from . import open_reduced, prompt_length
from .conversation import template_mask
from .prune import choose_pruned, token_scores
from .scoring import probability_matrix
from .text import fmt

GRID_DEFAULTS = {
    "decay_rate": [0.003],
    "boost": [1.0],
    "distance": ["logarithmic"],
    "min_distance": [20.0],
    "scale": [10.0],
}


def parse_values(spec: str, cast=float) -> list:
    """``"0.001:0.01:10"`` (START:STOP:COUNT, both ends included) or ``"0.5,1,2"``."""
    spec = str(spec).strip()
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise ValueError(f"bad range {spec!r}: use START:STOP:COUNT, e.g. 0.001:0.01:10")
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
        if count < 1:
            raise ValueError(f"bad range {spec!r}: COUNT must be >= 1")
        return [cast(v) for v in np.linspace(start, stop, count)]
    values = [cast(v) if cast is not str else v.strip() for v in spec.split(",") if v.strip()]
    if not values:
        raise ValueError(f"empty value list {spec!r}")
    return values


@dataclass
class SweepResult:
    grid: list  # list of parameter dicts
    mass_mean: np.ndarray
    mass_min: np.ndarray
    budget: float
    seconds: float
    recommendation: dict | None = None

    def __repr__(self) -> str:
        """One line: the dataclass default prints every array, which floods a notebook."""
        order = self.order()
        best = f"; best mass retained {fmt(float(self.mass_mean[order[0]]))}" if len(order) else ""
        return f"SweepResult({len(self.grid)} grid points, budget {self.budget:g}%{best})"

    def order(self) -> np.ndarray:
        return np.lexsort((-np.nan_to_num(self.mass_min, nan=-1), -np.nan_to_num(self.mass_mean, nan=-1)))

    def to_json(self) -> dict:
        rows = [
            dict(self.grid[g], mass_retained_mean=_num(self.mass_mean[g]), mass_retained_min=_num(self.mass_min[g]))
            for g in self.order()
        ]
        return {
            "budget": self.budget,
            "points": len(self.grid),
            "seconds": self.seconds,
            "results": rows,
            "best": rows[0] if rows else None,
            "rule": "cumulative",
            "recommended_decay_rate": _num(self.recommendation["decay_rate"]) if self.recommendation else None,
            "recommendation": {
                k: (_num(v) if isinstance(v, float) else v) for k, v in (self.recommendation or {}).items()
            },
        }


def _num(x):
    x = float(x)
    return x if np.isfinite(x) else None


def sweep(source, budget=30.0, protect_system=True, kind=None, reduce_options=None, **grid) -> SweepResult:
    """Evaluate the cumulative score on the grid (lists per parameter, see :data:`GRID_DEFAULTS`)."""
    import time

    from .kernels import DISTANCE_MODES, mass_retained, sweep_cumulative

    unknown = set(grid) - set(GRID_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown sweep parameter(s) {', '.join(sorted(unknown))}")
    axes = {k: list(grid.get(k) or v) for k, v in GRID_DEFAULTS.items()}
    for mode in axes["distance"]:
        if mode not in DISTANCE_MODES:
            raise ValueError(f"unknown distance weighting {mode!r}; choose from {', '.join(DISTANCE_MODES)}")
    points = [
        {k: (v if isinstance(v, str) else float(v)) for k, v in zip(axes, combo)}
        for combo in itertools.product(*axes.values())
    ]
    red = open_reduced(source, **(reduce_options or {}))
    data, ctx = probability_matrix(red, kind)
    started = time.perf_counter()
    n_prompt = prompt_length(red)
    g = len(points)
    final, peak = np.empty((g, n_prompt)), np.empty((g, n_prompt))
    sweep_cumulative(
        data,
        ctx,
        np.array([p["decay_rate"] for p in points], dtype=np.float64),
        np.array([p["boost"] for p in points], dtype=np.float64),
        np.array([DISTANCE_MODES[p["distance"]] for p in points], dtype=np.int64),
        np.array([p["min_distance"] for p in points], dtype=np.float64),
        np.array([p["scale"] for p in points], dtype=np.float64),
        True,
        final,
        peak,
    )
    texts = [str(t) for t in red.prompt["text"][:n_prompt]] if "text" in red.prompt else [""] * n_prompt
    protected = template_mask(texts)  # as prune protects them: BOS, the chat template, the system prompt
    protected[:1] = True
    if protect_system and "message_role" in red.prompt:
        protected |= np.array([str(r) == "system" for r in red.prompt["message_role"][:n_prompt]])
    candidates = np.flatnonzero(~protected)
    tiebreak = token_scores(data, ctx, n_prompt, "mean")
    kept = np.ones((g, n_prompt), dtype=np.bool_)
    for k in range(g):
        kept[k, choose_pruned(final[k], tiebreak, candidates, budget)] = False
    mass = np.empty((g, data.shape[0]))
    mass_retained(data, ctx, kept, mass)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mass_mean = np.nanmean(mass, axis=1) if mass.shape[1] else np.full(g, np.nan)
            mass_min = np.nanmin(mass, axis=1) if mass.shape[1] else np.full(g, np.nan)
    seconds = time.perf_counter() - started
    return SweepResult(points, mass_mean, mass_min, float(budget), seconds, _recommendation(red, data, ctx, points))


def _recommendation(red, data, ctx, points) -> dict:
    """The decay rate :mod:`.rule_decay` recommends for the swept rule, with the first point's weighting."""
    from .decay import fit_series
    from .rule_decay import recommend
    from .scoring import DEFAULTS

    n_prompt = prompt_length(red)
    first = points[0] if points else {}
    params = {**DEFAULTS["cumulative"], **{k: v for k, v in first.items() if k in DEFAULTS["cumulative"]}}
    fades = fit_series(np.asarray(red.steps, dtype=np.float64), data[:, :n_prompt], "probabilities").rate
    return recommend(red, "cumulative", params, fades, n_prompt, (data, ctx))
