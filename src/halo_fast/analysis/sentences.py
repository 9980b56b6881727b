"""Question 1 -- which prompt sentences stay bright: attention to each sentence over generation steps."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from . import matrix, open_reduced, planted_groups, prompt_length, sentence_index, value_kind


@dataclass
class SentenceAttention:
    """Per sentence ``s`` and kept step ``t``: ``sum[t, s]`` (over its tokens), ``mean`` and ``max``.

    ``ranking`` lists sentence indices brightest first by ``mean`` (ties: peak). ``groups``
    maps a group name to its summed attention per step ``[T]``.
    """

    steps: np.ndarray
    keys: list
    roles: list
    texts: list
    n_tokens: np.ndarray
    sum: np.ndarray
    mean: np.ndarray
    max: np.ndarray
    kind: str
    score_mean: np.ndarray
    score_peak: np.ndarray
    score_final: np.ndarray
    ranking: np.ndarray
    groups: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line: the dataclass default prints every array, which floods a notebook."""
        groups = f", groups {', '.join(self.groups)}" if self.groups else ""
        return f"SentenceAttention({len(self.keys)} sentences x {len(self.steps)} steps, {self.kind}{groups})"

    def rows(self) -> list[dict]:
        return [
            {
                "turn_id": self.keys[s][0],
                "sentence_id": self.keys[s][1],
                "role": self.roles[s],
                "text": self.texts[s],
                "n_tokens": int(self.n_tokens[s]),
                "mean": _num(self.score_mean[s]),
                "peak": _num(self.score_peak[s]),
                "final": _num(self.score_final[s]),
            }
            for s in self.ranking
        ]

    def to_json(self) -> dict:
        """The summaries and, per sentence (brightest first) and group, ``per_step``: its summed
        attention at each of ``steps`` (None where it has no valid value), so a curve can be
        plotted from the JSON alone."""
        return {
            "kind": self.kind,
            "steps": self.steps.tolist(),
            "sentences": [
                dict(row, per_step=[_num(v) for v in self.sum[:, s]]) for s, row in zip(self.ranking, self.rows())
            ],
            "groups": {
                name: {
                    "sentences": [list(k) for k in g["sentences"]],
                    "mean": _num(g["mean"]),
                    "peak": _num(g["peak"]),
                    "final": _num(g["final"]),
                    "per_step": [_num(v) for v in g["sum"]],
                }
                for name, g in self.groups.items()
            },
        }

    def curves(self) -> tuple[list[str], list[list]]:
        """``(header, rows)`` of the per-step curves, one row per kept step: ``step``, then each
        sentence's summed attention in prompt order (column ``turn:sentence``), then each group's
        (``group:NAME``); None where a sentence has no valid value at that step."""
        header = ["step"] + [f"{turn}:{sentence}" for turn, sentence in self.keys]
        header += [f"group:{name}" for name in self.groups]
        columns = [self.sum[:, s] for s in range(len(self.keys))] + [g["sum"] for g in self.groups.values()]
        rows = [[int(step)] + [_num(column[t]) for column in columns] for t, step in enumerate(self.steps.tolist())]
        return header, rows

    def to_csv(self, path, force: bool = False) -> str:
        """Write :meth:`curves` as CSV to ``path`` (empty cells for None; numbers as Python prints
        them, which read back exactly), atomically: an existing file raises FileExistsError unless
        ``force``, and an interrupted write leaves it as it was. Returns ``path``."""
        import csv

        from ..store import atomic_path

        header, rows = self.curves()
        with atomic_path(path, force) as temporary:
            with open(temporary, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                writer.writerows(rows)
        return str(path)


def _num(x):
    x = float(x)
    return x if np.isfinite(x) else None


def final_quarter(values: np.ndarray) -> np.ndarray:
    """Mean over the last quarter of the rows (at least one row) of a ``[T, ...]`` array."""
    n = values.shape[0]
    if n == 0:
        return np.full(values.shape[1:], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values[n - max(1, n // 4) :], axis=0)


def summarize(per_step: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, peak, final-quarter mean) over steps of a ``[T, S]`` array, NaN-aware."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if per_step.shape[0] == 0:
            empty = np.full(per_step.shape[1:], np.nan)
            return empty, empty.copy(), empty.copy()
        return np.nanmean(per_step, axis=0), np.nanmax(per_step, axis=0), final_quarter(per_step)


def sentence_matrices(data, ctx, labels, n_sentences):
    """(sum, mean, max) ``[T, S]`` from the kernel; mean = sum / count (NaN when no token is valid)."""
    from .kernels import segment_stats

    n_steps = data.shape[0]
    total = np.zeros((n_steps, n_sentences))
    peak = np.zeros((n_steps, n_sentences))
    count = np.zeros((n_steps, n_sentences), dtype=np.int64)
    segment_stats(data, ctx, labels, total, peak, count)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return np.where(count > 0, total, np.nan), mean, peak


def sentence_attention(source, groups=None, kind=None, **reduce_options) -> SentenceAttention:
    """Attention to each prompt sentence per kept step, a brightness ranking and named-group curves.

    ``groups``: {name: [(turn_id, sentence_id), ...]}; default the planted groups of a synth
    capture (none for real captures). Unknown sentences raise ValueError.
    """
    red = open_reduced(source, **reduce_options)
    data, ctx = matrix(red)
    n_prompt = prompt_length(red)
    sent = sentence_index(red.prompt, n_prompt)
    total, mean, peak = sentence_matrices(data, ctx, sent.labels, len(sent))
    s_mean, s_peak, s_final = summarize(total)
    order = np.lexsort((-np.nan_to_num(s_peak, nan=-np.inf), -np.nan_to_num(s_mean, nan=-np.inf)))
    result = SentenceAttention(
        np.asarray(red.steps),
        sent.keys,
        sent.roles,
        sent.texts,
        sent.n_tokens,
        total,
        mean,
        peak,
        value_kind(data, kind),
        s_mean,
        s_peak,
        s_final,
        order,
    )
    if groups is None:
        groups = planted_groups(red.metadata)
    for name, members in groups.items():
        try:
            idx = [sent.index(m) for m in members]
        except ValueError:
            missing = [m for m in members if tuple(m) not in sent.keys]
            raise ValueError(
                f"group {name!r}: no sentence {missing[0][0]}:{missing[0][1]} (turn:sentence) in the prompt"
            ) from None
        curve = np.nansum(total[:, idx], axis=1) if len(total) else np.zeros(0)
        g_mean, g_peak, g_final = summarize(curve[:, None])
        result.groups[name] = {
            "sentences": list(members),
            "index": idx,
            "sum": curve,
            "mean": g_mean[0],
            "peak": g_peak[0],
            "final": g_final[0],
        }
    return result
