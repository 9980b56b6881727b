"""Question 5 -- is distance weighting needed: attention by distance from the generation head.

Column ``c`` of a step with context length ``ctx`` is at distance ``ctx - c`` (the
newest context token is at distance 1). The profile is the mean attention at each
distance over the steps where that distance exists. The local share is, per step, the
attention on the last ``window`` (20) context tokens divided by the step's total; the
prompt share likewise for the prompt columns. Logit captures are softmaxed per row first
(unless ``kind="probabilities"`` is forced).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import matrix, open_reduced, prompt_length, to_probabilities, value_kind
from .text import fmt

LOCAL_WINDOW = 20


@dataclass
class DistanceResult:
    profile: np.ndarray  # [D]: mean attention at distance 1..D
    counts: np.ndarray
    local_share_per_step: np.ndarray
    prompt_share_per_step: np.ndarray
    local_window: int
    kind: str
    uniform_local_share: float
    per_layer: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line: the dataclass default prints every array, which floods a notebook."""
        layers = f", {len(self.per_layer)} layers" if self.per_layer else ""
        return (
            f"DistanceResult(distances 1..{len(self.profile)}, {self.kind}; share of the last {self.local_window} "
            f"{fmt(self.local_share)} ({fmt(self.local_ratio, 3)}x uniform), "
            f"prompt share {fmt(self.prompt_share)}{layers})"
        )

    @property
    def local_share(self) -> float:
        return _mean(self.local_share_per_step)

    @property
    def prompt_share(self) -> float:
        return _mean(self.prompt_share_per_step)

    @property
    def local_ratio(self) -> float:
        """How many times more attention the local window gets than a uniform spread would give it."""
        return self.local_share / self.uniform_local_share if self.uniform_local_share else float("nan")

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "profile": [_num(v) for v in self.profile],
            "local_share": _num(self.local_share),
            "local_window": self.local_window,
            "prompt_share": _num(self.prompt_share),
            "uniform_local_share": _num(self.uniform_local_share),
            "local_ratio": _num(self.local_ratio),
            "per_layer": {
                str(k): {"profile": [_num(v) for v in p["profile"]], "local_share": _num(p["local_share"])}
                for k, p in self.per_layer.items()
            },
        }


def _num(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _mean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def profile_of(data, ctx, max_distance=None):
    """(mean attention at distance 1..D, counts) of a ``[T, C]`` matrix with the numba kernel."""
    from .kernels import distance_profile

    top = int(ctx.max()) if len(ctx) else 0
    top = min(top, data.shape[1]) if max_distance is None else int(max_distance)
    sums = np.zeros(top + 1)
    counts = np.zeros(top + 1, dtype=np.int64)
    distance_profile(data, ctx, sums, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return profile[1:], counts[1:]


def shares(data, ctx, n_prompt, window):
    """(local share, prompt share) per step with the numba kernel."""
    from .kernels import step_shares

    n = data.shape[0]
    total, local, prompt = np.empty(n), np.empty(n), np.empty(n)
    step_shares(data, ctx, n_prompt, window, total, local, prompt)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total != 0, local / total, np.nan), np.where(total != 0, prompt / total, np.nan)


def distance_analysis(source, window=LOCAL_WINDOW, per_layer=False, kind=None, **reduce_options) -> DistanceResult:
    """Mean attention by distance from the head, local and prompt shares; ``per_layer`` needs a capture
    (it reduces over heads only, once more)."""
    red = open_reduced(source, **reduce_options)
    data, ctx = matrix(red)
    kind = value_kind(data, kind)
    if kind == "logits":
        data = to_probabilities(data, ctx)
    n_prompt = prompt_length(red)
    profile, counts = profile_of(data, ctx)
    local, prompt = shares(data, ctx, n_prompt, int(window))
    with np.errstate(divide="ignore"):
        uniform = _mean(np.minimum(window, ctx) / np.maximum(ctx, 1)) if len(ctx) else float("nan")
    result = DistanceResult(profile, counts, local, prompt, int(window), kind, uniform)
    if per_layer:
        # The same capture once more, per layer: the first open_reduced has warned about its data already.
        options = {k: v for k, v in reduce_options.items() if k not in ("over", "check")}
        by_layer = open_reduced(source, over=("heads",), check=False, **options)
        cube = np.asarray(by_layer.data)
        for li, layer in enumerate(by_layer.layers):
            layer_data = np.ascontiguousarray(cube[:, li, :], dtype=np.float32)
            if kind == "logits":
                layer_data = to_probabilities(layer_data, ctx)
            p, _ = profile_of(layer_data, ctx)
            loc, _ = shares(layer_data, ctx, n_prompt, int(window))
            result.per_layer[int(layer)] = {"profile": p, "local_share": _mean(loc)}
    return result
