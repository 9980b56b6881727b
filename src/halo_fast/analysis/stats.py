"""``stats``: per step min / max / mean / row sum and NaN counts, and whether values are probabilities or logits."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import matrix, open_reduced, value_kind

ROW_SUM_TOLERANCE = 1e-2


@dataclass
class StepStats:
    steps: np.ndarray
    context_lengths: np.ndarray
    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    sum: np.ndarray
    valid: np.ndarray
    nan_inside: np.ndarray
    values_beyond: np.ndarray
    kind: str

    def __repr__(self) -> str:
        """One line: the dataclass default prints every array, which floods a notebook."""
        sums = ""
        if self.kind == "probabilities":
            sums = ", rows sum to 1" if self.rows_sum_to_one else ", rows do not all sum to 1"
        return f"StepStats({len(self.steps)} steps, {self.kind}{sums}, {int(self.nan_inside.sum())} NaN)"

    @property
    def rows_sum_to_one(self) -> bool:
        ok = self.valid > 0
        return bool(ok.any() and np.all(np.abs(self.sum[ok] - 1.0) <= ROW_SUM_TOLERANCE))

    def rows(self) -> list[dict]:
        return [
            {
                "step": int(self.steps[t]),
                "context_length": int(self.context_lengths[t]),
                "min": _num(self.min[t]),
                "max": _num(self.max[t]),
                "mean": _num(self.mean[t]),
                "sum": _num(self.sum[t]),
                "nan": int(self.nan_inside[t]),
                "values_beyond_context": int(self.values_beyond[t]),
            }
            for t in range(len(self.steps))
        ]

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "rows_sum_to_one": self.rows_sum_to_one,
            "nan_total": int(self.nan_inside.sum()),
            "steps": self.rows(),
        }


def _num(x):
    x = float(x)
    return x if math.isfinite(x) else None


def step_stats(source, kind=None, **reduce_options) -> StepStats:
    """Per kept step statistics of the reduced matrix (NaN inside the context counted, not used)."""
    from .kernels import row_summary

    red = open_reduced(source, **reduce_options)
    data, ctx = matrix(red)
    n = data.shape[0]
    lo, hi, total = np.empty(n), np.empty(n), np.empty(n)
    valid, nan_inside, beyond = (np.empty(n, dtype=np.int64) for _ in range(3))
    row_summary(data, ctx, lo, hi, total, valid, nan_inside, beyond)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid > 0, total / np.maximum(valid, 1), np.nan)
    return StepStats(np.asarray(red.steps), ctx, lo, hi, mean, total, valid, nan_inside, beyond, value_kind(data, kind))
