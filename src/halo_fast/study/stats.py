"""Statistics across a study's captures: per key figure the mean and a bootstrap confidence interval.

Captures are the unit (each capture one value), so the interval says how far the study's mean
could move with another draw of captures like these. The percentile bootstrap: resample the
captures with replacement, take each resample's mean, read the interval from those means'
quantiles (linear interpolation). It assumes nothing of the distribution, but with few captures
(under ~10) it is too narrow: ``n`` is given beside it. Resamples are drawn in fixed blocks from
one seeded generator, so a seed gives the same interval on every machine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .summary import finite, read_summary

BLOCK = 1000  # resamples drawn per call: memory BLOCK x n indices, whatever the resample count


def resample_indices(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of [rows, n] indices into the n values: ``resamples`` rows in all."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, BLOCK):
        yield rng.integers(0, n, size=(min(BLOCK, resamples - start), n))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float] | None:
    """The percentile-bootstrap interval of the mean of ``values`` (None for fewer than two)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return None
    means = np.concatenate([x[idx].mean(axis=1) for idx in resample_indices(x.size, resamples, seed)])
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def figure_stats(
    figures: list[str], rows: list[dict], level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> list[dict]:
    """One row per figure: n (captures with a value), mean, ci_low, ci_high, over the ok and skipped rows."""
    usable = [r for r in rows if r.get("status") in ("ok", "skipped")]
    out = []
    for name in figures:
        values = [v for v in (finite(r.get(name)) for r in usable) if v is not None]
        ci = bootstrap_ci(values, level, resamples, seed)
        out.append(
            {
                "figure": name,
                "n": len(values),
                "mean": float(np.mean(values)) if values else None,
                "ci_low": ci[0] if ci else None,
                "ci_high": ci[1] if ci else None,
            }
        )
    return out


def batch_stats(path: str, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> list[dict]:
    """``figure_stats`` of a batch's summary.csv (``path``: the file or the batch's OUT_DIR)."""
    if not 0 < level < 1:
        raise ValueError(f"the confidence level must be between 0 and 1, got {level:g}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    figures, rows = read_summary(path)
    return figure_stats(figures, rows, level, resamples, seed)
