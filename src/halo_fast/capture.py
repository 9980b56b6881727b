"""The decoded capture: metadata, token tables and every token's attention.

All attention lives in one flat float32 buffer (``values``) with ``offsets``
marking where each generated token's ``[layers, heads, ctx]`` block starts, so
tools can use every token without copying, and ``attention(i)`` is a view.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from .errors import MissingDependency
from .reduction import Axes, Reduced, Selection, TokenRange, reduce_capture

PROMPT_COLUMNS = ("token_id", "text", "position", "turn_id", "sentence_id", "message_role")
TOKEN_COLUMNS = ("step", "token_id", "text", "position", "timestamp", "context_length", "has_attention")
TEXT_COLUMNS = frozenset({"text", "message_role"})
ALIASES = {"role": "message_role"}


class Table:
    """Columns by name: numeric ones are numpy arrays, text ones object arrays."""

    def __init__(self, columns: Mapping[str, np.ndarray]):
        self._columns = dict(columns)
        lengths = {len(c) for c in self._columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {lengths}")
        self._length = lengths.pop() if lengths else 0

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], names: Iterable[str]) -> Table:
        records = list(records)
        columns = {}
        for name in names:
            values = [_field(r, name) for r in records]
            columns[name] = _column(name, values)
        return cls(columns)

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns[ALIASES.get(name, name)]

    def __contains__(self, name: str) -> bool:
        return ALIASES.get(name, name) in self._columns

    def __len__(self) -> int:
        return self._length

    def row(self, i: int) -> dict:
        return {name: column[i] for name, column in self._columns.items()}

    def to_pandas(self) -> Any:
        """The table as a ``pandas.DataFrame`` (one column per name, same order; text stays text).

        pandas is optional, as notebooks want it and the command line does not: without it
        :class:`~halo_fast.errors.MissingDependency` (an ImportError) gives the install command.
        """
        try:
            import pandas
        except ImportError:
            raise MissingDependency(
                "Table.to_pandas needs pandas, which is not installed: pip install 'halo_fast[pandas]'"
                " (or pip install pandas)"
            ) from None
        return pandas.DataFrame(dict(self._columns), columns=self.columns)

    def __repr__(self) -> str:
        return f"Table({self._length} rows: {', '.join(self._columns)})"


def _field(record: Mapping[str, Any], name: str) -> Any:
    if not isinstance(record, Mapping):
        return None
    if name in record:
        return record[name]
    for alias, canonical in ALIASES.items():
        if canonical == name and alias in record:
            return record[alias]
    return None


def _column(name: str, values: list) -> np.ndarray:
    """Numbers become int64 (missing: -1) or float64 (missing: NaN); text stays text."""
    if name in TEXT_COLUMNS:
        out = np.empty(len(values), dtype=object)
        out[:] = ["" if v is None else v for v in values]
        return out
    if name == "has_attention":
        return np.array([bool(v) for v in values], dtype=bool)
    present = [v for v in values if v is not None]
    try:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            return np.array([-1 if v is None else v for v in values], dtype=np.int64)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    except OverflowError:  # integers beyond int64 (or float range): keep json's exact values
        pass
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


class Capture:
    """One generation's recorded attention.

    ``values`` holds every token's attention back to back; token ``i`` occupies
    ``values[offsets[i]:offsets[i+1]]`` with shape ``shapes[i]`` (layers, heads,
    context). Tokens recorded without attention have an empty slice.
    """

    def __init__(
        self,
        metadata: dict,
        prompt_tokens: Table,
        tokens: Table,
        values: np.ndarray,
        offsets: np.ndarray,
        shapes: np.ndarray,
        path: str | None = None,
    ):
        self.metadata = metadata
        self.prompt_tokens = prompt_tokens
        self.tokens = tokens
        self.values = values
        self.offsets = offsets
        self.shapes = shapes
        self.path = path
        self.recovery: dict | None = None  # set by load(recover=True) when the file was truncated

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray | None:
        """``cap[i]`` is ``cap.attention(i)``: negative indices count from the end; slices are refused
        (a list of views of different shapes would hide that they are views)."""
        if isinstance(i, slice):
            raise TypeError("a Capture is indexed by one token: cap[i]; for several, [cap[i] for i in range(a, b)]")
        try:
            index = operator.index(i)
        except TypeError:
            raise TypeError(f"token indices must be integers, not {type(i).__name__}") from None
        return self.attention(index)

    def __iter__(self) -> Iterator[np.ndarray | None]:
        """Every generated token's attention in order (a view, or None for a token without attention)."""
        for i in range(len(self)):
            yield self.attention(i)

    def attention(self, i: int) -> np.ndarray | None:
        """Token i's attention as a float32 view ``[layers, heads, ctx]``, or None."""
        n = len(self)
        asked = i
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"token index {asked} out of range for {n} generated tokens")
        if not self.tokens["has_attention"][i]:
            return None
        block = self.values[self.offsets[i] : self.offsets[i + 1]]
        return block.reshape(tuple(int(d) for d in self.shapes[i]))

    @property
    def n_layers(self) -> int:
        with_attention = np.flatnonzero(self.tokens["has_attention"])
        return int(self.shapes[with_attention[0], 0]) if len(with_attention) else 0

    @property
    def n_heads(self) -> int:
        with_attention = np.flatnonzero(self.tokens["has_attention"])
        return int(self.shapes[with_attention[0], 1]) if len(with_attention) else 0

    def reduce(
        self,
        op: str = "mean",
        over: Axes = ("layers", "heads"),
        layers: Selection = None,
        heads: Selection = None,
        every: int = 1,
        tokens: TokenRange = None,
    ) -> Reduced:
        """Mean (max, min, sum, nanmean) over layers and/or heads; see :func:`halo_fast.reduce`."""
        return reduce_capture(self, op, over, layers, heads, every, tokens)

    def __repr__(self) -> str:
        return (
            f"Capture({self.path!r}: {len(self)} tokens, {self.n_layers} layers x {self.n_heads} heads, "
            f"{len(self.prompt_tokens)} prompt tokens, {self.values.nbytes / 1e6:.1f} MB float32)"
        )
