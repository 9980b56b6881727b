"""Analyses of reduced attention: the guide's five questions and three experiments.

Every analysis works on the reduced matrix (``reduce()`` output, float32 ``[T, C]``,
mean over layers and heads by default, NaN beyond each step's context).
:func:`open_reduced` is the one place that turns an input into it: a capture path
(anything ``load`` reads; reduced with the usual options), a ``.reduced.h5`` /
``.npz`` written by ``python -m halo_fast reduce``, or a :class:`~halo_fast.reduction.Reduced`.

Prompt token ``k`` (row ``k`` of the prompt table) is column ``k`` of the matrix.

Modules, one analysis each: ``sentences`` (question 1), ``decay`` (2-4), ``distance`` (5),
``stats``, ``scoring`` (Halo Weave's rules), ``prune`` (experiment 2), ``sweep``,
``heatmap`` (experiment 3; needs matplotlib) and ``report`` (all of them in one Markdown file):
``from halo_fast.analysis.heatmap import heatmap``, ``from halo_fast.analysis.report import report``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

KINDS = ("probabilities", "logits")
REDUCE_OPTIONS = ("op", "layers", "heads", "every", "tokens")

__all__ = [
    "open_reduced",
    "value_kind",
    "to_probabilities",
    "Sentences",
    "sentence_index",
    "prompt_length",
    "planted_groups",
    "parse_groups",
]


def open_reduced(
    source, *, op="mean", layers=None, heads=None, every=1, tokens=None, over=("layers", "heads"), recover=False
):
    """A :class:`~halo_fast.reduction.Reduced` from a capture (path or loaded ``Capture``), a reduce
    output (.h5/.npz) or a Reduced.

    Captures are reduced with ``op`` / ``over`` / ``layers`` / ``heads`` / ``every`` / ``tokens``
    (mean over layers and heads by default). A reduce output or a Reduced is taken as it was
    made; ``every`` and ``tokens`` are then applied to its rows, and the other options must be
    left at their defaults (a ValueError says so, rather than answering for another reduction).
    """
    from ..api import reduce
    from ..capture import Capture
    from ..reduction import Reduced
    from ..store import is_reduced_h5, load_reduced

    options = dict(op=op, over=over, layers=layers, heads=heads, every=every, tokens=tokens)
    if isinstance(source, Capture):
        return source.reduce(**options)
    if isinstance(source, Reduced):
        _refuse_reduce_options("this result", op, over, layers, heads)
        return _subset_rows(source, every, tokens)
    path = os.fspath(source)
    lower = path.lower()
    if lower.endswith((".reduced.h5", ".npz")) or (lower.endswith(".h5") and is_reduced_h5(path)):
        _refuse_reduce_options(path, op, over, layers, heads)
        return _subset_rows(load_reduced(path), every, tokens)
    return reduce(path, recover=recover, **options)


def _refuse_reduce_options(what: str, op, over, layers, heads) -> None:
    over = (over,) if isinstance(over, str) else tuple(over)
    if op != "mean" or layers is not None or heads is not None or sorted(over) != ["heads", "layers"]:
        raise ValueError(
            f"{what} is already reduced: --op, --layers, --heads (and a per-layer view) apply to captures only"
        )


def _subset_rows(red, every, tokens):
    from ..reduction import select_tokens

    if int(every) == 1 and tokens is None:
        return red
    ids = select_tokens(red.steps, np.ones(len(red.steps), dtype=bool), every, tokens)
    rows = ("data", "steps", "context_lengths", "positions", "token_ids", "texts")
    return dataclasses.replace(red, **{name: getattr(red, name)[ids] for name in rows})  # the caller's stays whole


def matrix(red) -> tuple[np.ndarray, np.ndarray]:
    """``(data, ctx)``: the float32 C-contiguous ``[T, C]`` matrix and int64 context lengths the kernels take."""
    data = np.asarray(red.data)
    if data.ndim != 2:
        raise ValueError(
            f"the analyses need attention reduced over layers and heads ([T, C]); got shape {data.shape}"
            " (reduce with --over layers,heads)"
        )
    return np.ascontiguousarray(data, dtype=np.float32), np.ascontiguousarray(red.context_lengths, dtype=np.int64)


def value_kind(data: np.ndarray, kind: str | None = None) -> str:
    """``probabilities`` or ``logits``: ``kind`` when given, else logits when any value is negative
    (``halo_fast.describe.value_kind`` semantics)."""
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
        return kind
    return "logits" if data.size and np.nanmin(data, initial=0.0) < 0 else "probabilities"


def to_probabilities(data: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """Softmax of each row over its context (NaN stays NaN, NaN beyond context kept).

    For logits reduced by a mean over layers and heads this is the softmax of the mean
    logit, an approximation of the mean attention (documented in docs/analysis.md).
    """
    out = np.full(data.shape, np.nan, dtype=np.float32)
    for t in range(data.shape[0]):
        c = min(int(ctx[t]), data.shape[1])
        row = data[t, :c].astype(np.float64)
        ok = np.isfinite(row)
        if not ok.any():
            continue
        e = np.where(ok, np.exp(row - row[ok].max()), np.nan)
        out[t, :c] = e / np.nansum(e)
    return out


def prompt_length(red) -> int:
    return min(len(red.prompt), np.asarray(red.data).shape[-1])


@dataclass
class Sentences:
    """The prompt's sentences, in order of first appearance: a sentence is (turn_id, sentence_id)."""

    keys: list[tuple[int, int]]
    labels: np.ndarray  # int64 [P]: sentence index of each prompt column
    roles: list[str]
    texts: list[str]
    n_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def index(self, key) -> int:
        key = (int(key[0]), int(key[1]))
        try:
            return self.keys.index(key)
        except ValueError:
            raise ValueError(f"no sentence {key[0]}:{key[1]} (turn:sentence) in the prompt") from None


def sentence_index(prompt, n_prompt: int | None = None) -> Sentences:
    n = len(prompt) if n_prompt is None else n_prompt
    turns = np.asarray(prompt["turn_id"])[:n] if "turn_id" in prompt else np.zeros(n, np.int64)
    sids = np.asarray(prompt["sentence_id"])[:n] if "sentence_id" in prompt else np.zeros(n, np.int64)
    roles = prompt["message_role"][:n] if "message_role" in prompt else np.array([""] * n, dtype=object)
    texts = prompt["text"][:n] if "text" in prompt else np.array([""] * n, dtype=object)
    keys: list[tuple[int, int]] = []
    where: dict[tuple[int, int], int] = {}
    labels = np.empty(n, dtype=np.int64)
    parts: list[list[str]] = []
    role_of: list[str] = []
    for k in range(n):
        key = (int(turns[k]), int(sids[k]))
        s = where.get(key)
        if s is None:
            s = where[key] = len(keys)
            keys.append(key)
            parts.append([])
            role_of.append("" if roles[k] is None else str(roles[k]))
        labels[k] = s
        parts[s].append("" if texts[k] is None else str(texts[k]))
    return Sentences(
        keys, labels, role_of, ["".join(p) for p in parts], np.bincount(labels, minlength=len(keys)).astype(np.int64)
    )


def planted_groups(metadata: dict) -> dict[str, list[tuple[int, int]]]:
    """The synth capture's planted groups (name -> sentences), or {} for a real capture."""
    synth = (metadata or {}).get("synth") or {}
    return {g["name"]: [tuple(int(v) for v in s) for s in g["sentences"]] for g in synth.get("groups", [])}


def parse_groups(specs) -> dict[str, list[tuple[int, int]]]:
    """``["critical=0:1,1:2", ...]`` -> {"critical": [(0, 1), (1, 2)]} (turn:sentence pairs)."""
    groups: dict[str, list[tuple[int, int]]] = {}
    for spec in specs or []:
        name, sep, pairs = spec.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"bad group {spec!r}: use NAME=TURN:SENTENCE,TURN:SENTENCE")
        members = []
        for pair in pairs.split(","):
            if not pair.strip():
                continue
            try:
                turn, sentence = (int(x) for x in pair.split(":"))
            except ValueError:
                raise ValueError(f"bad sentence {pair!r} in group {name!r}: use TURN:SENTENCE, e.g. 1:3") from None
            members.append((turn, sentence))
        if not members:
            raise ValueError(f"group {name!r} has no sentences")
        groups[name.strip()] = members
    return groups
