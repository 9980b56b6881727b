"""The skeleton of a single-JSON capture: the file with its attention arrays emptied.

What is left -- metadata, prompt tokens, each token's small fields -- is small enough
for pysimdjson (or ``json`` when it holds NaN or Infinity). Its shapes are checked
and sized here (plan_tokens), before pass 2 allocates anything.
"""

from __future__ import annotations

import bisect
import json

import numpy as np

from ..capture import TOKEN_COLUMNS, Table
from ..errors import CaptureError
from .base import check_document
from .json_scan import Layout
from .mapped import MappedFile

MAX_DIMENSION = 1 << 40  # a larger layer/head/context count is a corrupt shape, not a model


class Skeleton:
    """The file with every attention data array emptied to ``[]``, and a map back to file offsets."""

    def __init__(self, mapped: MappedFile, layout: Layout):
        opens = layout.data_open[layout.data_open >= 0]
        closes = layout.data_close[layout.data_open >= 0]
        pieces = []
        self._skeleton_starts = []
        self._file_starts = []
        cursor = 0
        length = 0
        for open_at, close_at in zip(opens.tolist(), closes.tolist()):
            pieces.append(mapped.read(cursor, open_at + 1))
            self._skeleton_starts.append(length)
            self._file_starts.append(cursor)
            length += open_at + 1 - cursor
            cursor = close_at
        end, suffix = mapped.size, b""
        if layout.recovery is not None:
            end, suffix = layout.recovery["end"], layout.recovery["suffix"]
        pieces.append(mapped.read(cursor, end))
        pieces.append(suffix)
        self._skeleton_starts.append(length)
        self._file_starts.append(cursor)
        self.text = b"".join(pieces)
        self.path = mapped.path

    @classmethod
    def from_text(cls, text: bytes, skeleton_starts: list, file_starts: list, path: str) -> Skeleton:
        """A skeleton gathered elsewhere (a stream); piece k starts at skeleton_starts[k] / file_starts[k]."""
        skeleton = cls.__new__(cls)
        skeleton.text = text
        skeleton._skeleton_starts = list(skeleton_starts) or [0]
        skeleton._file_starts = list(file_starts) or [0]
        skeleton.path = path
        return skeleton

    def file_offset(self, skeleton_offset: int) -> int:
        i = bisect.bisect_right(self._skeleton_starts, skeleton_offset) - 1
        return self._file_starts[i] + skeleton_offset - self._skeleton_starts[i]

    def parse(self):
        try:
            import simdjson

            return simdjson.Parser().parse(self.text, True)
        except Exception:  # NaN/Infinity, huge integers, lone surrogates: json decides
            pass
        try:
            return json.loads(self.text)
        except json.JSONDecodeError as exc:
            raise CaptureError(f"invalid JSON: {exc.msg}", self.path, self.file_offset(exc.pos)) from None
        except UnicodeDecodeError as exc:
            raise CaptureError(f"not UTF-8 text: {exc.reason}", self.path, self.file_offset(exc.start)) from None
        except RecursionError:
            raise CaptureError("JSON nested too deeply", self.path) from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise CaptureError(f"invalid JSON: {exc}", self.path) from None


def shape_of(attention: dict, path: str, offset: int, step) -> tuple[int, int, int]:
    from .encoded import aggregated_shape

    shape = aggregated_shape(attention) or attention.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < MAX_DIMENSION for d in shape)
    ):
        raise CaptureError(f"attention shape must be [layers, heads, context], got {shape!r}", path, offset, step)
    context_length = attention.get("context_length", shape[2])
    if context_length != shape[2]:
        raise CaptureError(
            f"context_length {context_length!r} disagrees with attention shape {shape}", path, offset, step
        )
    return shape[0], shape[1], shape[2]


def _element_offset(mapped: MappedFile, layout: Layout, k: int) -> int | None:
    """Byte offset of generated_tokens[k] when it is not an object (the walker did not record it)."""
    start = int(layout.token_close[k - 1]) + 1 if k > 0 else layout.tokens_open + 1
    if start <= 0:
        return None
    text = mapped.read(start, min(start + 4096, mapped.size))
    stripped = text.lstrip(b" \t\r\n,")
    return start + len(text) - len(stripped)


def check_layers_heads(shapes: np.ndarray, has_attention: np.ndarray, where) -> None:
    """Every token with attention has the first one's layers x heads; ``where(i)``: (path, offset, step)."""
    if not has_attention.any():
        return
    first = shapes[np.argmax(has_attention)]
    differs = np.flatnonzero(has_attention & ((shapes[:, 0] != first[0]) | (shapes[:, 1] != first[1])))
    if len(differs):
        i = int(differs[0])
        raise CaptureError(
            f"token has {shapes[i, 0]} layers x {shapes[i, 1]} heads, the first has {first[0]} x {first[1]}", *where(i)
        )


def plan_tokens(document, layout: Layout, mapped: MappedFile):
    """Shapes, value offsets and token table from the skeleton; all checks before any allocation."""
    path = mapped.path
    tokens = check_document(document, path).generated_tokens
    n = len(tokens)
    if n != len(layout.token_open):
        bad = next((i for i, t in enumerate(tokens) if not isinstance(t, dict)), len(layout.token_open))
        raise CaptureError(f"generated token #{bad} is not a JSON object", path, _element_offset(mapped, layout, bad))
    shapes = np.zeros((n, 3), dtype=np.int64)
    has_attention = np.zeros(n, dtype=bool)
    for i, token in enumerate(tokens):
        step = token.get("step", i)
        attention = token.get("attention")
        offset = int(layout.token_open[i])
        if attention is None:
            continue
        if not isinstance(attention, dict):
            raise CaptureError("'attention' is neither an object nor null", path, offset, step)
        data = attention.get("data")
        if layout.data_open[i] < 0:
            if data is None:
                continue
            if isinstance(data, str):
                _plan_encoded(attention, shapes, has_attention, i, path, offset, step)
                continue
            raise CaptureError("attention 'data' is not an array", path, offset, step)
        shape = shape_of(attention, path, int(layout.data_open[i]), step)
        count = shape[0] * shape[1] * shape[2]
        span = int(layout.data_close[i] - layout.data_open[i])
        if count > span // 2:
            raise CaptureError(
                f"shape {list(shape)} needs {count} values but the data array is only {span + 1} bytes",
                path,
                int(layout.data_open[i]),
                step,
            )
        shapes[i] = shape
        has_attention[i] = True
    check_layers_heads(shapes, has_attention, lambda i: (path, int(layout.data_open[i]), tokens[i].get("step", i)))
    counts = shapes.prod(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return tokens, shapes, has_attention, offsets


def _plan_encoded(attention: dict, shapes, has_attention, i: int, path, offset, step) -> None:
    """A base64 data string (formats.encoded): shape and length checked here, decoded in pass 2."""
    from .encoded import check_encoded, is_encoded

    if not is_encoded(attention):
        raise CaptureError('attention \'data\' is a string without "encoding": "base64"', path, offset, step)
    shape = shape_of(attention, path, offset, step)
    check_encoded(attention, shape[0] * shape[1] * shape[2], path, offset, step)
    shapes[i] = shape
    has_attention[i] = True


def token_table(tokens: list, shapes: np.ndarray, has_attention: np.ndarray) -> Table:
    records = []
    for i, token in enumerate(tokens):
        attention = token.get("attention")
        context = attention.get("context_length") if isinstance(attention, dict) else None
        if has_attention[i]:
            context = int(shapes[i, 2])
        records.append(
            {
                "step": token.get("step", i),
                "token_id": token.get("token_id"),
                "text": token.get("text"),
                "position": token.get("position"),
                "timestamp": token.get("timestamp"),
                "context_length": context,
                "has_attention": bool(has_attention[i]),
            }
        )
    return Table.from_records(records, TOKEN_COLUMNS)
