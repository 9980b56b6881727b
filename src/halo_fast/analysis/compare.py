"""The guide's experiment 2, end to end: a generation on the full prompt against one on the pruned prompt.

After a user reruns the model on a prompt ``prune --write-prompt`` wrote, :func:`compare` says
what changed: the generated texts from the first step where the token ids differ, the share
of steps whose tokens agree (position by position), the edit distance between the two token
id sequences, and, for every sentence both prompts hold (matched by its text, chat-template
tokens left out, in order), how its share of each step's attention moved -- of all the
attention, and of the attention on the sentences both hold (the fair comparison: a pruned
prompt leaves the kept sentences more attention to share).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import open_reduced, prompt_length, sentence_index
from .conversation import generated, template_mask
from .scoring import probability_matrix
from .sentences import sentence_matrices


@dataclass
class Generation:
    """One run's generated tokens (every step, with attention or not) and its reduced attention."""

    path: str
    token_ids: np.ndarray
    texts: list[str]
    red: object


def generation(source, **reduce_options) -> Generation:
    """The generated tokens of a capture (any format; a reduce output holds only its steps with attention)."""
    red = open_reduced(source, **reduce_options)
    _, ids, texts = generated(red)
    return Generation(os.fspath(red.source or ""), ids, texts, red)


def sentence_texts(red) -> tuple[list[tuple[int, int]], list[str], np.ndarray]:
    """(keys, texts without the chat template, labels) of the prompt's sentences."""
    n = prompt_length(red)
    sent = sentence_index(red.prompt, n)
    texts = [str(t) for t in red.prompt["text"][:n]] if "text" in red.prompt else [""] * n
    template = template_mask(texts)
    parts: list[list[str]] = [[] for _ in sent.keys]
    for k, label in enumerate(sent.labels.tolist()):
        if not template[k]:
            parts[label].append(texts[k])
    return sent.keys, ["".join(p).strip() for p in parts], sent.labels


def attention_shares(red, kind=None) -> np.ndarray:
    """float64 [T, S]: each step's attention (probabilities) summed over each prompt sentence."""
    data, ctx = probability_matrix(red, kind)
    _, _, labels = sentence_texts(red)
    total, _, _ = sentence_matrices(data, ctx, labels, int(labels.max()) + 1 if len(labels) else 0)
    return total


def match_sentences(full_texts: list[str], pruned_texts: list[str]) -> list[tuple[int, int]]:
    """(full index, pruned index) of each sentence both hold: equal texts, paired in order; empty texts
    (a sentence of template tokens only) are not matched."""
    waiting: dict[str, list[int]] = {}
    for j, text in enumerate(pruned_texts):
        if text:
            waiting.setdefault(text, []).append(j)
    pairs = []
    for i, text in enumerate(full_texts):
        if text and waiting.get(text):
            pairs.append((i, waiting[text].pop(0)))
    return pairs


@dataclass
class Comparison:
    full: Generation
    pruned: Generation
    first_divergent_step: int | None
    token_agreement: float | None
    edit_distance: int
    sentences: list[dict]
    unmatched: int

    def __repr__(self) -> str:
        first = "never" if self.first_divergent_step is None else f"at step {self.first_divergent_step}"
        return (
            f"Comparison({len(self.full.token_ids)} vs {len(self.pruned.token_ids)} tokens, diverging {first}, "
            f"edit distance {self.edit_distance}, {len(self.sentences)} sentences in both)"
        )

    def to_json(self) -> dict:
        k = self.first_divergent_step
        k_text = len(self.full.texts) if k is None else k
        return {
            "full": self.full.path,
            "pruned": self.pruned.path,
            "generated": {"full": len(self.full.token_ids), "pruned": len(self.pruned.token_ids)},
            "first_divergent_step": k,
            "token_agreement": self.token_agreement,
            "edit_distance": self.edit_distance,
            "texts": {
                "common": "".join(self.full.texts[:k_text]),
                "full": "".join(self.full.texts[k_text:]),
                "pruned": "".join(self.pruned.texts[k_text:]),
            },
            "sentences": self.sentences,
            "sentences_only_in_full": self.unmatched,
        }


def compare(full, pruned, kind=None, **reduce_options) -> Comparison:
    """Compare the generation on the full prompt (``full``) with the one on the pruned prompt (``pruned``)."""
    from ..errors import CaptureError
    from .kernels import edit_distance

    a, b = generation(full, **reduce_options), generation(pruned, **reduce_options)
    for run in (a, b):
        if (run.token_ids < 0).any():
            raise CaptureError(
                "its generated tokens have no token_id: compare needs them to say what changed", run.path
            )
    n = min(len(a.token_ids), len(b.token_ids))
    differ = np.flatnonzero(a.token_ids[:n] != b.token_ids[:n])
    if len(differ):
        first = int(differ[0])
    else:
        first = None if len(a.token_ids) == len(b.token_ids) else n
    agreement = float(np.mean(a.token_ids[:n] == b.token_ids[:n])) if n else None
    scratch = np.empty(len(b.token_ids) + 1, dtype=np.int64)
    distance = int(edit_distance(a.token_ids, b.token_ids, scratch))
    keys_a, texts_a, _ = sentence_texts(a.red)
    keys_b, texts_b, _ = sentence_texts(b.red)
    pairs = match_sentences(texts_a, texts_b)
    share_a, share_b = attention_shares(a.red, kind), attention_shares(b.red, kind)
    mean_a = _step_mean(share_a)
    mean_b = _step_mean(share_b)
    common_a = _step_mean(_of_common(share_a, [i for i, _ in pairs]))
    common_b = _step_mean(_of_common(share_b, [j for _, j in pairs]))
    rows = []
    for k, (i, j) in enumerate(pairs):
        rows.append(
            {
                "sentence_full": f"{keys_a[i][0]}:{keys_a[i][1]}",
                "sentence_pruned": f"{keys_b[j][0]}:{keys_b[j][1]}",
                "text": texts_a[i],
                "share_full": _num(mean_a[i]),
                "share_pruned": _num(mean_b[j]),
                "common_share_full": _num(common_a[k]),
                "common_share_pruned": _num(common_b[k]),
                "change": _num(common_b[k] - common_a[k]),
            }
        )
    unmatched = sum(1 for t in texts_a if t) - len(pairs)
    return Comparison(a, b, first, agreement, distance, rows, unmatched)


def _of_common(shares: np.ndarray, columns: list[int]) -> np.ndarray:
    """[T, len(columns)]: each step's attention on those sentences as a share of their sum."""
    picked = shares[:, columns] if shares.size else np.zeros((shares.shape[0], len(columns)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return picked / np.nansum(picked, axis=1, keepdims=True)


def _step_mean(x: np.ndarray) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=0) if x.shape[0] else np.full(x.shape[1], np.nan)


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None
