"""Layer/head reductions and token sampling: the guide's "mean over layers and heads per step".

The reduction core, below every format: plans (which layer/head rows fold into
which output row), step selections, the fold of decoded tokens and the ``Reduced``
result. ``halo_fast.reduce(path, ...)`` (api.py) streams a file through a format's
own fold; ``Capture.reduce`` applies ``fold_tokens`` to a decoded capture; both give
identical numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import SelectionError

if TYPE_CHECKING:  # a Capture and a Table are only read here; capture.py imports this module
    from .capture import Capture, Table


AXES = ("layers", "heads")

#: Which layers or heads: an index, indices, a slice, text like "20-27", "-4:", "0,3,5", or None (all).
Selection = int | str | slice | Sequence[int] | np.ndarray | None
#: Which steps: "START:STOP" (either may be empty) or (start, stop) with None for open ends, or None (all).
TokenRange = str | tuple[int | None, int | None] | None
#: What to reduce over: "layers", "heads", or both.
Axes = str | tuple[str, ...]


@dataclass(frozen=True)
class ReduceRequest:
    """A reduction as asked, before the capture's layers and heads are known (``reduce``'s options)."""

    op: str = "mean"
    over: Axes = AXES
    layers: Selection = None
    heads: Selection = None
    every: int = 1
    tokens: TokenRange = None


@dataclass
class ReducePlan:
    """Which (layer, head) rows fold into which output row, and how."""

    op: str
    over: tuple[str, ...]
    layers: np.ndarray
    heads: np.ndarray
    n_layers: int
    n_heads: int
    row_group: np.ndarray  # int64[n_layers * n_heads]: output row, or -1 when not selected
    first_row: np.ndarray  # int64[groups]: first (file order) row folding into each group
    group_size: np.ndarray  # float64[groups]: rows per group (the mean's divisor)

    @property
    def n_groups(self) -> int:
        return len(self.group_size)

    @property
    def op_code(self) -> int:
        from .kernels.reduce import OPS

        return OPS[self.op]


@dataclass
class Reduced:
    """A reduced capture: ``data[t]`` is generation step ``steps[t]`` (NaN beyond its context)."""

    data: np.ndarray
    steps: np.ndarray
    context_lengths: np.ndarray
    positions: np.ndarray
    token_ids: np.ndarray
    texts: np.ndarray
    prompt: Table
    metadata: dict
    op: str
    over: tuple[str, ...]
    layers: list[int]
    heads: list[int]
    every: int
    tokens: tuple | None
    source: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __repr__(self) -> str:
        """One line (the dataclass default would print every array, flooding a notebook)."""
        shape = self.data.shape
        steps = f"{len(self.steps)} steps"
        if len(self.steps):
            steps += f" {int(self.steps[0])}..{int(self.steps[-1])}"
        kept_axes: dict[tuple[str, ...], str] = {("layers",): "heads", ("heads",): "layers"}
        kept = kept_axes.get(tuple(self.over))
        middle = f" x {shape[1]} {kept}" if len(shape) == 3 and kept else ""
        origin = f"{self.source!r}: " if self.source else ""
        return f"Reduced({origin}{self.op} over {'+'.join(self.over)}, {steps}{middle} x {shape[-1]} context)"


def parse_selection(spec: Selection, n: int, name: str) -> np.ndarray:
    """Sorted unique indices from an int, list, slice, or text like "20-27", "-4:", "0,3,5" (None: all)."""
    if spec is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(spec, slice):
        chosen = list(range(n))[spec]
    elif isinstance(spec, (int, np.integer)):
        chosen = [int(spec)]
    elif isinstance(spec, str):
        chosen = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            if ":" in part:
                pieces = [int(x) if x.strip() else None for x in part.split(":")]
                if len(pieces) > 3:
                    raise SelectionError(f"bad {name} selection {spec!r}")
                chosen += list(range(n))[slice(*pieces)]
            elif re.fullmatch(r"\d+\s*-\s*\d+", part):
                lo, hi = (int(x) for x in part.split("-"))
                chosen += list(range(lo, hi + 1))
            else:
                try:
                    chosen.append(int(part))
                except ValueError:
                    raise SelectionError(f"bad {name} selection {spec!r}: use e.g. 5, 0,3, 20-27 or -4:") from None
    else:
        chosen = [int(x) for x in spec]
    out = []
    for i in chosen:
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise SelectionError(f"{name} {i} out of range: the capture has {n} {name}")
        out.append(j)
    if not out:
        raise SelectionError(f"the {name} selection {spec!r} selects nothing")
    return np.unique(np.array(out, dtype=np.int64))


def make_plan(op: str, over: Axes, layers: Selection, heads: Selection, n_layers: int, n_heads: int) -> ReducePlan:
    from .kernels.reduce import OPS

    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
    over = (over,) if isinstance(over, str) else tuple(over)
    if not over or any(axis not in AXES for axis in over) or len(set(over)) != len(over):
        raise ValueError(f"over must be 'layers', 'heads' or both, got {over!r}")
    over = tuple(axis for axis in AXES if axis in over)
    layer_ids = parse_selection(layers, n_layers, "layers")
    head_ids = parse_selection(heads, n_heads, "heads")
    row_group = np.full(n_layers * n_heads, -1, dtype=np.int64)
    for li, layer in enumerate(layer_ids.tolist()):
        for hi, head in enumerate(head_ids.tolist()):
            if over == AXES:
                group = 0
            elif over == ("layers",):
                group = hi
            else:
                group = li
            row_group[layer * n_heads + head] = group
    n_groups = int(row_group.max()) + 1
    first_row = np.array([np.flatnonzero(row_group == g)[0] for g in range(n_groups)], dtype=np.int64)
    group_size = np.bincount(row_group[row_group >= 0], minlength=n_groups).astype(np.float64)
    return ReducePlan(op, over, layer_ids, head_ids, n_layers, n_heads, row_group, first_row, group_size)


def select_tokens(
    steps: np.ndarray, has_attention: np.ndarray, every: int = 1, tokens: TokenRange = None
) -> np.ndarray:
    """Indices of tokens to keep: with attention, step in [start, stop), (step - start) % every == 0.

    A selection that keeps nothing while some token has attention is a SelectionError
    (an empty output would look like an answer), and so is a range with STOP <= START.
    """
    ids = np.flatnonzero(keep_mask(steps, has_attention, every, tokens))
    if not len(ids) and has_attention.any():
        start, stop = _token_range(tokens)
        present = steps[has_attention]
        raise SelectionError(
            f"no step is selected: the capture has steps {int(present.min())}..{int(present.max())} with attention"
            f" (asked for steps {'' if start is None else start}:{'' if stop is None else stop}, every {int(every)})"
        )
    return ids


def keep_mask(steps: np.ndarray, has_attention: np.ndarray, every: int = 1, tokens: TokenRange = None) -> np.ndarray:
    """select_tokens' rule token by token (bool per token), without its check that something is kept:
    each token's fate depends on its own step alone, so a scan can apply it before it has seen them all."""
    if int(every) < 1:
        raise SelectionError(f"every must be >= 1, got {every}")
    start, stop = _token_range(tokens)
    if start is not None and stop is not None and stop <= start:
        raise SelectionError(f"the step range {start}:{stop} is empty: STOP must be greater than START")
    keep = has_attention.copy()
    if start is not None:
        keep &= steps >= start
    if stop is not None:
        keep &= steps < stop
    keep &= (steps - (start or 0)) % int(every) == 0
    return keep


def _token_range(tokens: TokenRange) -> tuple[int | None, int | None]:
    if tokens is None:
        return None, None
    if isinstance(tokens, str):
        parts = tokens.split(":")
        if len(parts) != 2:
            raise SelectionError(f"tokens range must look like START:STOP, got {tokens!r}")
        start_text, stop_text = parts
        return (int(start_text) if start_text.strip() else None, int(stop_text) if stop_text.strip() else None)
    start, stop = tokens
    return start, stop


def output_array(n_tokens: int, plan: ReducePlan, max_context: int) -> np.ndarray:
    return np.full((n_tokens, plan.n_groups, max_context), np.nan, dtype=np.float32)


def finish(
    data: np.ndarray,
    ids: np.ndarray,
    token_table: Table,
    prompt: Table,
    metadata: dict,
    plan: ReducePlan,
    every: int,
    tokens: TokenRange,
    source: str | None,
) -> Reduced:
    """The ``Reduced`` of folded ``data`` (``[len(ids), groups, C]``) for the tokens ``ids`` of a table."""
    if plan.over == AXES:
        data = data[:, 0, :]
    return Reduced(
        data=data,
        steps=np.asarray(token_table["step"])[ids],
        context_lengths=np.asarray(token_table["context_length"])[ids],
        positions=np.asarray(token_table["position"])[ids],
        token_ids=np.asarray(token_table["token_id"])[ids],
        texts=np.asarray(token_table["text"])[ids],
        prompt=prompt,
        metadata=metadata,
        op=plan.op,
        over=plan.over,
        layers=plan.layers.tolist(),
        heads=plan.heads.tolist(),
        every=int(every),
        tokens=None if tokens is None else _token_range(tokens),
        source=source,
        extra={"capture_layers": plan.n_layers, "capture_heads": plan.n_heads},
    )


def fold_tokens(
    plan: ReducePlan, ids: np.ndarray, shapes: np.ndarray, values_of: Callable[[int], np.ndarray]
) -> np.ndarray:
    """Fold already decoded tokens one by one (``values_of(i)``: token i's flat float32 values).

    The same arithmetic as the streaming JSON kernel, so every route gives identical numbers.
    """
    from .kernels.reduce import reduce_decoded

    max_context = int(shapes[ids, 2].max()) if len(ids) else 0
    data = output_array(len(ids), plan, max_context)
    acc = np.zeros((plan.n_groups, max_context), dtype=np.float64)
    counts = np.zeros((plan.n_groups, max_context), dtype=np.int64)
    n_rows = plan.n_layers * plan.n_heads
    for row, i in enumerate(ids.tolist()):
        reduce_decoded(
            values_of(i),
            n_rows,
            int(shapes[i, 2]),
            plan.row_group,
            plan.first_row,
            plan.group_size,
            plan.op_code,
            acc,
            counts,
            data[row],
        )
    return data


def reduce_capture(
    cap: Capture,
    op: str = "mean",
    over: Axes = AXES,
    layers: Selection = None,
    heads: Selection = None,
    every: int = 1,
    tokens: TokenRange = None,
) -> Reduced:
    """The same reduction on a decoded Capture (used by ``Capture.reduce``)."""

    def fold(ids: np.ndarray, plan: ReducePlan) -> np.ndarray:
        return fold_tokens(plan, ids, cap.shapes, lambda i: cap.values[cap.offsets[i] : cap.offsets[i + 1]])

    return reduce_tokens(
        fold,
        cap.tokens,
        cap.prompt_tokens,
        cap.metadata,
        cap.path,
        cap.n_layers,
        cap.n_heads,
        op,
        over,
        layers,
        heads,
        every,
        tokens,
    )


def reduce_tokens(
    fold: Callable[[np.ndarray, ReducePlan], np.ndarray],
    token_table: Table,
    prompt: Table,
    metadata: dict,
    source: str | None,
    n_layers: int,
    n_heads: int,
    op: str,
    over: Axes,
    layers: Selection,
    heads: Selection,
    every: int,
    tokens: TokenRange,
) -> Reduced:
    """The one reduction every route shares -- a file's source, a decoded capture, a lazy HDF5 one:
    the plan, the step selection, ``fold(ids, plan)`` (``[len(ids), groups, C]``) and the Reduced."""
    plan = make_plan(op, over, layers, heads, n_layers, n_heads)
    ids = select_tokens(np.asarray(token_table["step"]), np.asarray(token_table["has_attention"]), every, tokens)
    return finish(fold(ids, plan), ids, token_table, prompt, metadata, plan, every, tokens, source)
