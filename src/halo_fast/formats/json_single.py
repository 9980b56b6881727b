"""The guide's single-JSON capture (``attention_capture_<ts>.json``), decoded exactly.

Pass 1 (json_scan) walks the file window by window and finds every
``generated_tokens[i].attention.data`` array. Everything else -- metadata,
prompt tokens, each token's small fields -- is a "skeleton" (json_skeleton): the
file with those arrays emptied, small enough for pysimdjson. Shapes from the
skeleton size one float32 allocation, and pass 2 (json_values) parses every array
into its slice in parallel, or folds it straight into a reduction.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..capture import Capture
from ..errors import CaptureError
from ..reduction import ReduceRequest
from . import streamed
from .base import CaptureSource, ShortcutRefuted, SourceOptions, check_document, prompt_table
from .json_ahead import ReduceAhead, outgrows_page_cache
from .json_brackets import confirm_jumps
from .json_scan import check_data_content, scan_structure
from .json_skeleton import Skeleton, plan_tokens, token_table
from .json_values import decode_attention, decode_one, decode_windows, reduce_attention
from .mapped import MappedFile
from .streamed import StreamedFile


class ScannedJson(CaptureSource):
    """A mapped single-JSON capture after pass 1 and the skeleton parse: everything but the floats.

    Use as a context manager; ``mapped`` stays open for a pass 2 (decode or reduce).
    """

    format_name = "json"

    def __init__(self, path, *, options: SourceOptions | None = None):
        super().__init__(path, options=options)
        self.mapped = MappedFile(self.path)
        self._request: ReduceRequest | None = None
        self.ahead: ReduceAhead | None = None
        self._jump = False  # pass 1 may step over most of each array (json_brackets): a pass 2 will read it

    def plan_reduce(self, request: ReduceRequest) -> None:
        self._request = request
        self._jump = True

    def plan_decode(self) -> None:
        self._jump = True

    def __enter__(self) -> ScannedJson:
        self.mapped.__enter__()
        try:
            layout = None
            if self._request is not None and outgrows_page_cache(self.mapped.size):
                layout = self._scan_folding_ahead()
            if layout is not None:
                self._read_structure(layout)
            elif self._jump and not self.recover:
                try:
                    self._read_structure(scan_structure(self.mapped, self.window_bytes, self.progress, jump=True))
                except Exception:  # perhaps a jump's doing: the plain pass 1 says what is wrong, if anything
                    self._read_structure(scan_structure(self.mapped, self.window_bytes, self.progress))
            else:
                self._read_structure(
                    scan_structure(self.mapped, self.window_bytes, self.progress, recover=self.recover)
                )
        except BaseException:
            self._close_ahead()
            self.mapped.__exit__(None, None, None)
            raise
        return self

    def _read_structure(self, layout) -> None:
        """Everything but the floats, from pass 1's layout: the skeleton, tokens, shapes and tables."""
        self.layout = layout
        self.recovery = _public(self.layout.recovery)
        try:
            self.document = Skeleton(self.mapped, self.layout).parse()
        except CaptureError:
            check_data_content(self.mapped, self.layout.events)
            raise
        self.tokens, self.shapes, self.has_attention, self.offsets = plan_tokens(
            self.document, self.layout, self.mapped
        )
        document = check_document(self.document, self.path)
        self.prompt_table = prompt_table(document.prompt_tokens)
        self.token_table = token_table(self.tokens, self.shapes, self.has_attention)
        self.metadata = document.metadata

    def _confirmed(self, run, parsed: np.ndarray):
        """``run()``'s result once pass 1's jumps are confirmed (json_brackets): by its parse for the
        tokens ``parsed`` (bool per token), by a search for the others. ShortcutRefuted where they do
        not hold: the caller reads the file again without jumping. An error ``run`` raises goes to
        the caller, who checks the jumps (``confirm_shortcuts``) before believing it, as ``api`` does."""
        result = run()
        if not self._confirm(parsed):
            raise ShortcutRefuted(self.path)
        return result

    def confirm_shortcuts(self) -> bool:
        return self._confirm(self._parsed())

    def _confirm(self, parsed: np.ndarray) -> bool:
        layout = self.layout
        if layout.jumped is not None:
            if not confirm_jumps(self.mapped.bytes, layout.data_open, layout.jumped, parsed):
                return False
            layout.jumped = None
        return True

    def _parsed(self, ids: np.ndarray | None = None) -> np.ndarray:
        parsed = np.zeros(len(self.layout.data_open), dtype=bool)
        if ids is not None:
            parsed[ids] = True
        return parsed

    def _scan_folding_ahead(self):
        """Pass 1 over the file read once from disk (``streamed``; the map where that is not
        available or cannot reserve its address range), folding each token as it passes
        (``json_ahead``). None if pass 1 finds an error: then the plain pass 1 runs instead,
        over the map, and raises it as without this route (its messages read the bytes around
        the error, which the streamed file has handed back)."""
        assert self._request is not None
        with contextlib.ExitStack() as stack:
            scanned: MappedFile | StreamedFile = self.mapped
            if streamed.supported():
                try:
                    scanned = stack.enter_context(StreamedFile(self.path))
                except OSError:  # no room for its reservation (strict overcommit, a memory limit): the map
                    scanned = self.mapped
            self.ahead = ReduceAhead(scanned, self._request, self.window_bytes)
            stack.callback(self.ahead.close)  # its fold thread reads the file: done before it closes
            try:
                return scan_structure(scanned, self.window_bytes, self.progress, recover=self.recover, ahead=self.ahead)
            except CaptureError:
                self.ahead = None
                return None

    def _close_ahead(self) -> None:
        if self.ahead is not None:
            self.ahead.close()
            self.ahead = None

    def __exit__(self, *exc_info) -> None:
        self._close_ahead()
        self.mapped.__exit__(*exc_info)

    def step_of(self, i: int):
        return self.tokens[i].get("step", i)

    def token_values(self, i: int) -> np.ndarray:
        """Token i's values; the mapped pages they were parsed from are handed back, so reading the
        capture token by token (convert, lazy readers) keeps memory flat."""
        if not self.confirm_shortcuts():
            raise ShortcutRefuted(self.path)
        values = decode_one(self, i)
        if self.layout.data_open[i] >= 0:
            self.mapped.release(int(self.layout.data_open[i]), int(self.layout.data_close[i]) + 1)
        return values

    def decode(self) -> np.ndarray:
        def run():
            return decode_attention(
                self.mapped,
                self.layout,
                self.tokens,
                self.shapes,
                self.has_attention,
                self.offsets,
                self.window_bytes,
                self.progress,
            )

        return self._confirmed(run, self.has_attention & (self.layout.data_open >= 0))

    def reduce(self, ids: np.ndarray, plan) -> np.ndarray:
        if self.ahead is not None:
            ahead, self.ahead = self.ahead, None  # its rows are handed over once
            return ahead.result(self, ids, plan)
        return self._confirmed(lambda: reduce_attention(self, ids, plan), self._parsed(ids))

    def token_windows(self, ids: np.ndarray, phase: str = "read"):
        if not self.confirm_shortcuts():
            raise ShortcutRefuted(self.path)
        return decode_windows(self, ids, phase)


def _public(recovery: dict | None) -> dict | None:
    if recovery is None:
        return None
    return {key: recovery[key] for key in ("truncated_at", "complete_tokens", "partial_tokens", "kept_bytes")}


def load_json(path, *, options: SourceOptions | None = None, **option_fields) -> Capture:
    """Decode a single-JSON capture; see the module docstring for how (``option_fields``: SourceOptions')."""
    with ScannedJson(path, options=options or SourceOptions(**option_fields)) as scan:
        return scan.capture()
