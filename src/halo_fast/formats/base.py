"""What every input format provides, and the generic ways to decode or reduce it.

A format's source, opened as a context manager, has done its structure pass:
it knows the metadata, the prompt and token tables, every token's shape and
where its values start in the flat output (``offsets``). It must give one
token's values exactly (``token_values``). ``decode`` and ``reduce`` have
generic implementations on top of that; formats with a faster route (the JSON
decoder's parallel kernels) override them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..capture import PROMPT_COLUMNS, Capture, Table
from ..errors import CaptureError
from ..progress import progress_bar
from ..reduction import ReducePlan, ReduceRequest, fold_tokens
from .mapped import output_buffer

WINDOW_BYTES = 4 << 20  # file bytes resident at once, beyond the output: every format's default


class ShortcutRefuted(Exception):
    """Raised by a source's ``decode`` or ``reduce`` when a shortcut its first pass took on a plan's
    word (``plan_decode``, ``plan_reduce``) is not borne out by what it read after: the caller opens
    the source again without the plan, and gets the plain route's result or error. Never seen
    outside ``api``."""


@dataclass(frozen=True)
class SourceOptions:
    """How a source reads, the same for every format (``open_capture``'s keywords).

    ``window_bytes``: input bytes mapped or buffered at once; ``progress``: bars on stderr;
    ``recover``: a truncated input yields its complete tokens (``source.recovery``) instead of
    raising; ``strict``: what a capture directory or JSON-lines file can carry (gaps, missing
    .bin files, no metadata) raises instead of warning.
    """

    window_bytes: int = WINDOW_BYTES
    progress: bool = False
    recover: bool = False
    strict: bool = False


@dataclass
class CaptureDocument:
    """The top level of a capture once its attention arrays are set aside, checked once for every format."""

    metadata: dict[str, Any]
    prompt_tokens: list[Any]
    generated_tokens: list[Any]


NOT_A_CAPTURE = (
    "not a capture: expected a JSON object with a 'generated_tokens' list "
    "(supported: the single-JSON capture of the Data Capture guide)"
)


def check_document(document: object, path: str) -> CaptureDocument:
    """The capture's three parts, or a CaptureError naming the part that is wrong."""
    if not isinstance(document, dict) or not isinstance(document.get("generated_tokens"), list):
        raise CaptureError(NOT_A_CAPTURE, path, 0)
    prompt = document.get("prompt_tokens") or []
    if not isinstance(prompt, list):
        raise CaptureError("'prompt_tokens' is not a list", path, None)
    metadata = document.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise CaptureError("'metadata' is not a JSON object", path, None)
    return CaptureDocument(metadata or {}, prompt, document["generated_tokens"])


def prompt_table(records: list[Any]) -> Table:
    """The prompt token table, from the prompt's records (the columns of ``capture.PROMPT_COLUMNS``)."""
    return Table.from_records(records, PROMPT_COLUMNS)


class CaptureSource:
    """One opened capture of any format: tables, shapes and offsets known, values on demand."""

    format_name = "unknown"  # shown by `info`
    path: str
    metadata: dict
    prompt_table: Table
    token_table: Table
    shapes: np.ndarray  # int64 [n, 3]: layers, heads, context of each token
    has_attention: np.ndarray  # bool [n]
    offsets: np.ndarray  # int64 [n + 1]: where each token's values start in the flat buffer
    recovery: dict | None = None  # what was salvaged from a truncated input (recover=True)

    def __init__(self, path: str | os.PathLike[str], *, options: SourceOptions | None = None) -> None:
        self.path = os.fspath(path)
        self.options = options or SourceOptions()

    @property
    def window_bytes(self) -> int:
        return self.options.window_bytes

    @property
    def progress(self) -> bool:
        return self.options.progress

    @property
    def recover(self) -> bool:
        return self.options.recover

    @property
    def strict(self) -> bool:
        return self.options.strict

    def __enter__(self) -> CaptureSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def plan_reduce(self, request: ReduceRequest) -> None:
        """Say, before ``__enter__``, the reduction ``reduce`` will be asked for: a source that can fold
        while it reads (a mapped single JSON: json_ahead) starts during its first pass. A hint: any
        ``reduce(ids, plan)`` still gives the same result; one may raise ShortcutRefuted."""

    def plan_decode(self) -> None:
        """Say, before ``__enter__``, that ``capture()`` (every token decoded) will follow: a single
        JSON's first pass then steps over most of each array, leaving it to the decode to read
        (json_brackets). ``decode`` may then raise ShortcutRefuted, and an error raised before the
        shortcuts are confirmed is believed only once ``confirm_shortcuts`` holds (``api`` does this)."""

    def confirm_shortcuts(self) -> bool:
        """Whether every shortcut the first pass took holds, checked now by reading what it skipped
        (True where none was taken). A caller that meets an error before ``decode`` or ``reduce``
        has checked them asks this first: the error may be the shortcut's doing."""
        return True

    def step_of(self, i: int) -> Any:
        return self.token_table["step"][i]

    def token_values(self, i: int) -> np.ndarray:
        """Token i's attention, flat float32 of length offsets[i+1] - offsets[i], exact."""
        raise NotImplementedError

    def token_bar(self, count: int, phase: str) -> Any:
        """A progress bar over ``count`` tokens of one phase (nothing shown without ``progress``)."""
        return progress_bar(count, self.progress, phase, unit="tok")

    def token_windows(
        self, ids: np.ndarray, phase: str = "read"
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The tokens ``ids`` (in order, each with attention) a window at a time, for a pass that needs
        every token's full tensor but never all of them at once: ``(batch, values, starts)``, token
        ``batch[k]``'s flat float32 values being ``values[starts[k]:starts[k + 1]]``. The buffer is
        reused: copy what must outlive the next window. Here one token per window; formats that
        parse in parallel (single JSON) give many. ``phase``: the progress bar's label."""
        starts = np.zeros(2, dtype=np.int64)
        with self.token_bar(len(ids), phase) as bar:
            for i in ids.tolist():
                values = self.token_values(i)
                starts[1] = len(values)
                yield np.array([i], dtype=np.int64), values, starts
                bar.update(1)

    def decode(self) -> np.ndarray:
        """Every token's values in one flat float32 buffer."""
        values = output_buffer(int(self.offsets[-1]))
        wanted = np.flatnonzero(self.has_attention).tolist()
        with self.token_bar(len(wanted), "decode") as bar:
            for i in wanted:
                values[self.offsets[i] : self.offsets[i + 1]] = self.token_values(i)
                bar.update(1)
        return values

    def reduce(self, ids: np.ndarray, plan: ReducePlan) -> np.ndarray:
        """float32 [len(ids), groups, max context] folded as ``plan`` says, NaN beyond each context."""
        with self.token_bar(len(ids), "reduce") as bar:

            def values_of(i: int) -> np.ndarray:
                bar.update(1)
                return self.token_values(i)

            return fold_tokens(plan, ids, self.shapes, values_of)

    def capture(self) -> Capture:
        cap = Capture(
            metadata=self.metadata,
            prompt_tokens=self.prompt_table,
            tokens=self.token_table,
            values=self.decode(),
            offsets=self.offsets,
            shapes=self.shapes,
            path=self.path,
        )
        cap.recovery = self.recovery
        return cap
