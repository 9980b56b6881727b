"""Analyses of reduced attention: the guide's five questions and three experiments.

Every analysis works on the reduced matrix (``reduce()`` output, float32 ``[T, C]``,
mean over layers and heads by default, NaN beyond each step's context).
:func:`open_reduced` is the one place that turns an input into it: a capture path
(anything ``load`` reads; reduced with the usual options), a ``.reduced.h5`` /
``.npz`` written by ``python -m halo_fast reduce``, or a :class:`~halo_fast.reduction.Reduced`.

Prompt token ``k`` (row ``k`` of the prompt table) is column ``k`` of the matrix.

:func:`open_reduced` also looks at what it hands on, on the reduced matrix only: rows
that should sum to ~1 over their context and do not (and are not logits), and steps
that repeat, are each a :class:`DataWarning` -- the analyses would otherwise answer
from such data as if nothing were wrong (``python -m halo_fast check`` says more).

Modules, one analysis each: ``sentences`` (question 1), ``decay`` (2-4), ``distance`` (5),
``stats``, ``scoring`` (Halo Weave's rules), ``prune`` (experiment 2), ``sweep``,
``heatmap`` (experiment 3; needs matplotlib) and ``report`` (all of them in one Markdown file):
``from halo_fast.analysis.heatmap import heatmap``, ``from halo_fast.analysis.report import report``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass

import numpy as np

KINDS = ("probabilities", "logits")
#: The reductions whose rows are means (of probabilities: sum to ~1 over their context).
MEAN_OPS = ("mean", "nanmean", "mean_f32", "mean_js")
REDUCE_OPTIONS = ("op", "layers", "heads", "every", "tokens")
#: How far a reduced row's sum over its context may be from its expected value (``check``'s tolerance).
ROW_SUM_TOLERANCE = 1e-2
#: Rows summed per block by :func:`data_problems`: bounds its temporaries, whatever the capture's size.
CHECK_BLOCK_ROWS = 256

__all__ = [
    "DataWarning",
    "data_problems",
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
    source,
    *,
    op="mean",
    layers=None,
    heads=None,
    every=1,
    tokens=None,
    over=("layers", "heads"),
    recover=False,
    strict=False,
    progress=False,
    check=True,
    prefer_op=None,
):
    """A :class:`~halo_fast.reduction.Reduced` from a capture (path or loaded ``Capture``), a reduce
    output (.h5/.npz) or a Reduced.

    Captures are reduced with ``op`` / ``over`` / ``layers`` / ``heads`` / ``every`` / ``tokens``
    (mean over layers and heads by default). A reduce output or a Reduced is taken as it was
    made; ``every`` and ``tokens`` are then applied to its rows, and the other options must be
    left at their defaults (a ValueError says so, rather than answering for another reduction).
    ``recover``, ``strict`` and ``progress`` are how a capture is read (``halo_fast.reduce``'s).
    With ``check`` (default) each of :func:`data_problems` is a :class:`DataWarning`: every
    analysis passes through here, so none answers silently from rows that are not
    probabilities or from repeated steps. ``prefer_op``: the op a capture is reduced with when ``op``
    is left at "mean" (Halo Weave's rules ask for its own float32 means this way).
    """
    red = _open(source, op, layers, heads, every, tokens, over, recover, strict, progress, prefer_op)
    if check:
        for problem in data_problems(red):
            warnings.warn(problem, DataWarning, stacklevel=2)
    return red


def _open(source, op, layers, heads, every, tokens, over, recover, strict, progress, prefer_op=None):
    from ..api import reduce
    from ..capture import Capture
    from ..reduction import Reduced
    from ..store import is_reduce_output, load_reduced

    capture_op = prefer_op if prefer_op is not None and op == "mean" else op  # how a capture is reduced
    options = dict(op=capture_op, over=over, layers=layers, heads=heads, every=every, tokens=tokens)
    if isinstance(source, Capture):
        return source.reduce(**options)
    if isinstance(source, Reduced):
        _refuse_reduce_options("this result", op, over, layers, heads, source.op)
        return _subset_rows(source, every, tokens)
    path = os.fspath(source)
    if is_reduce_output(path):
        red = load_reduced(path)
        _refuse_reduce_options(path, op, over, layers, heads, red.op)
        return _subset_rows(red, every, tokens)
    return reduce(path, recover=recover, strict=strict, progress=progress, **options)


class DataWarning(UserWarning):
    """The reduced attention an analysis runs on has something ``check`` would flag.

    A warning, not an error: such data can still be worth looking at, but the answers
    should not be read as if it were clean. A class of its own so that it can be
    filtered or caught (``warnings.simplefilter("error", DataWarning)``) apart from others.
    """


def expected_row_sum(red) -> float | None:
    """What each reduced row sums to over its context when the capture holds probabilities:
    1 for a mean, the number of rows folded together for a sum, None (unknown) for max / min."""
    if red.op in MEAN_OPS:
        return 1.0
    if red.op == "sum":
        over = tuple(red.over)
        n_layers, n_heads = len(red.layers), len(red.heads)
        folded = (n_layers if "layers" in over else 1) * (n_heads if "heads" in over else 1)
        return float(folded) if folded else None
    return None


def data_problems(red) -> list[str]:
    """One-line descriptions of what is wrong with ``red``'s matrix, as ``check`` would see it:

    * rows that do not sum to ~1 (:func:`expected_row_sum`) over their context while no value
      is negative -- neither probabilities nor logits (a logit capture is a known kind and passes;
      rows holding NaN are left to ``check``, which counts them);
    * steps that appear more than once -- every analysis would count them twice.

    Looks at the reduced matrix only, in blocks of :data:`CHECK_BLOCK_ROWS` rows: never a
    second pass over the capture, and few temporaries however large it is.
    """
    name = red.source or "the reduced attention"
    found = []
    data = np.asarray(red.data)
    expected = expected_row_sum(red)
    if expected is not None and data.ndim in (2, 3) and data.size and value_kind(data) == "probabilities":
        off, rows, low, high = _rows_off(data, np.asarray(red.context_lengths, dtype=np.int64), expected)
        if off:
            found.append(
                f"{name}: {off} of {rows} reduced rows do not sum to {expected:g} over their context "
                f"(sums {low:.4g}..{high:.4g}) and no value is negative: neither probabilities nor logits, "
                "so the analyses' numbers may mislead (`python -m halo_fast check` says more)"
            )
    steps, counts = np.unique(np.asarray(red.steps), return_counts=True)
    repeated = steps[counts > 1]
    if len(repeated):
        shown = ", ".join(f"{int(s)} (x{int(c)})" for s, c in zip(repeated[:5], counts[counts > 1][:5]))
        more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
        found.append(
            f"{name}: steps recorded more than once: {shown}{more}; each copy counts as a step of its own "
            "in every analysis (`python -m halo_fast check` says more)"
        )
    return found


def _rows_off(data: np.ndarray, ctx: np.ndarray, expected: float) -> tuple[int, int, float, float]:
    """(rows off ``expected``, rows judged, smallest and largest sum judged) of a [T, C] or [T, G, C] matrix.

    A row is judged when its context is non-empty and every value in it is finite.
    """
    n_cols = data.shape[-1]
    off = judged = 0
    low, high = np.inf, -np.inf
    for start in range(0, data.shape[0], CHECK_BLOCK_ROWS):
        block = data[start : start + CHECK_BLOCK_ROWS]
        inside = np.arange(n_cols) < np.clip(ctx[start : start + CHECK_BLOCK_ROWS], 0, n_cols)[:, None]
        if block.ndim == 3:
            inside = np.broadcast_to(inside[:, None, :], block.shape)
        finite = np.isfinite(block)
        sums = np.sum(np.where(inside & finite, block, 0.0), axis=-1, dtype=np.float64)
        ok = np.all(finite | ~inside, axis=-1) & np.any(inside, axis=-1)
        sums = sums[ok]
        if len(sums):
            judged += len(sums)
            off += int(np.count_nonzero(np.abs(sums - expected) > ROW_SUM_TOLERANCE * expected))
            low, high = min(low, float(sums.min())), max(high, float(sums.max()))
    return off, judged, low, high


def _refuse_reduce_options(what: str, op, over, layers, heads, made_with: str) -> None:
    over = (over,) if isinstance(over, str) else tuple(over)
    if op not in ("mean", made_with) or layers is not None or heads is not None or sorted(over) != ["heads", "layers"]:
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


def finite_median(values) -> float:
    """The median of the finite values (NaN when there is none)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else float("nan")


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

    def __repr__(self) -> str:
        return f"Sentences({len(self.keys)} sentences over {len(self.labels)} prompt tokens)"

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
