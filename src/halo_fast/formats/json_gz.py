"""A gzip-compressed single-JSON capture (``.json.gz``), streamed (the stream: ``gzip_stream``).

A gzip-compressed single JSON document (``.json.gz``) cannot be memory-mapped, so
``GzipJson`` streams it twice:

1. The structure walker of the single-JSON reader (``kernels.structure``) runs over
   the decompressed text chunk by chunk; its state carries over between chunks.
   Each generated-token object, once complete, goes through ``token_object``
   (the same passes as every other container: shape checks, exact floats) for its
   fields and shape. Everything outside the ``generated_tokens`` list (metadata,
   prompt) is kept as a small skeleton text and parsed at the end.
2. Decoding and reducing decompress again and cut out each token's byte range
   (known from pass 1) as it streams past.

Decompression runs ahead in a background thread (``gzip_stream``). Memory holds one chunk plus the token object being read. Offsets in
error messages are into the decompressed text, as ``gzip -dc`` would print it.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import CaptureError
from .base import CaptureSource, SourceOptions, check_document, prompt_table
from .gzip_stream import CHUNK_BYTES, GzipEnd, TextWindow, decompressed_blocks


# Walker state slots holding buffer positions: they move when the buffer's front is dropped.
def _position_slots() -> np.ndarray:
    from ..kernels import structure as st

    return np.array([st.S_ESCAPED, st.S_STRING_START, st.S_STRING_END, st.S_PREVIOUS, st.S_ERROR_AT])


def _next_step(records: list):
    """The step after the last complete token, for error messages."""
    if records:
        step = records[-1].get("step")
        if isinstance(step, int):
            return step + 1
    return None


class _StreamScan:
    """Pass 1 over decompressed text fed block by block: token objects, their byte ranges, the skeleton.

    The walker of ``kernels.structure`` keeps its state between blocks. As in the
    memory-mapped scan, the bulk of each attention array is jumped over with a
    byte search for its closing bracket (the token object's own passes check every
    byte of it later). Only the open token object, or a string that may still
    turn out to be a key, is kept from one block to the next.
    """

    PROBE_BYTES = 1 << 16

    def __init__(self, source: GzipJson):
        from ..kernels import structure as st

        self.st = st
        self.source = source
        self.state, self.kinds, self.roles = st.new_walker_state()
        self.window = TextWindow()
        self.skeleton = bytearray()
        self.pieces = []  # (skeleton offset, stream offset) where each copied piece starts
        self.skeleton_from = 0  # stream offset from which text belongs to the skeleton; None inside the list
        self.list_open_length = None  # skeleton length just after the list's "["
        self.list_open_at = None
        self.token_start = None
        self.data = None  # [open, close] stream offsets of the open token's attention array
        self.records, self.shapes, self.has, self.ranges = [], [], [], []

    def feed(self, block: bytes) -> None:
        st, state, window = self.st, self.state, self.window
        position = len(window.buffer)
        window.append(block)
        size = len(window.buffer)
        probe = self.PROBE_BYTES
        while position < size:
            if st.inside_data(state, self.roles):
                close = window.buffer.find(b"]", position)
                if close < 0:
                    break
                positions = np.array([close], dtype=np.int64)
                position = close + 1
                probe = self.PROBE_BYTES
            else:
                stop = min(position + probe, size)
                positions = st.find_structural(np.frombuffer(window.buffer, dtype=np.uint8), position, stop)
                position = stop
                probe *= 2
            events = np.empty((positions.shape[0] + 1, 3), dtype=np.int64)
            data = np.frombuffer(window.buffer, dtype=np.uint8)
            n = st.walk_structure(data, positions, state, self.kinds, self.roles, events)
            del data  # the bytearray may change size only once no view of it is left
            self._handle(events[:n])
            if state[st.S_ERROR] != st.WALK_OK:
                raise CaptureError(
                    st.WALK_MESSAGES[int(state[st.S_ERROR])],
                    self.source.path,
                    int(state[st.S_ERROR_AT]) + window.base,
                    _next_step(self.records),
                )
        self._keep(window.end)
        # keep the open token object, and a string that may turn out to be a key
        needed = window.end if self.token_start is None else self.token_start
        if state[st.S_IN_STRING] or state[st.S_PREVIOUS] == state[st.S_STRING_END]:
            needed = min(needed, int(state[st.S_STRING_START]) + window.base)
        dropped = window.drop_before(needed)
        state[_position_slots()] -= dropped  # every position moves together: comparisons between them hold

    def _handle(self, events: np.ndarray) -> None:
        st = self.st
        for kind, _, at in events.tolist():
            at += self.window.base
            if kind == st.EVENT_TOKENS_OPEN:
                if self.list_open_length is not None:
                    raise CaptureError("the capture has two 'generated_tokens' keys", self.source.path, at)
                self._keep(at + 1)
                self.skeleton_from = None
                self.list_open_length = len(self.skeleton)
                self.list_open_at = at
            elif kind == st.EVENT_TOKENS_CLOSE:
                self.skeleton_from = at
            elif kind == st.EVENT_TOKEN_OPEN:
                self.token_start = at
                self.data = None
            elif kind == st.EVENT_DATA_OPEN:
                self.data = [at, None]
            elif kind == st.EVENT_DATA_CLOSE:
                self.data[1] = at
            elif kind == st.EVENT_TOKEN_CLOSE:
                self._add_token(self.token_start, at + 1)
                self.token_start = None

    def _keep(self, stop: int) -> None:
        """Copy the skeleton's text up to stream offset ``stop``."""
        start = self.skeleton_from
        if start is not None and stop > start:
            self.pieces.append((len(self.skeleton), start))
            self.skeleton += self.window.buffer[start - self.window.base : stop - self.window.base]
            self.skeleton_from = stop

    def _add_token(self, start: int, stop: int) -> None:
        from .token_object import frame_bytes, parse_token

        source = self.source
        window = self.window
        if self.data is None:  # no attention array (null, base64): the whole object
            with window.view(start, stop) as text:
                token = parse_token(frame_bytes(text), source.path, start, source.window_bytes)
        else:  # its fields only: the array's bulk is left to pass 2
            open_at, close_at = self.data
            with window.view(start, open_at + 1) as head, window.view(close_at, stop) as tail:
                token = parse_token(
                    frame_bytes(head, tail), source.path, start, source.window_bytes, data_span=close_at - open_at
                )
        self.records.append(token.record)
        self.shapes.append(token.shape)
        self.has.append(token.has_attention)
        self.ranges.append((start, stop))

    def complete(self) -> bool:
        state, st = self.state, self.st
        return state[st.S_DEPTH] == 0 and not state[st.S_IN_STRING] and bool(state[st.S_CLOSED])

    def opened_tokens(self) -> int:
        return int(self.state[self.st.S_TOKENS])


class GzipJson(CaptureSource):
    """A gzip-compressed single-JSON capture after pass 1: everything but the floats."""

    format_name = "json.gz"

    def __init__(
        self, path, *, options: SourceOptions | None = None, chunk_bytes: int = CHUNK_BYTES, threaded: bool = True
    ):
        super().__init__(path, options=options)
        self.threaded = threaded
        self.chunk_bytes = chunk_bytes
        self._cursor = None

    def __enter__(self) -> GzipJson:
        from ..progress import progress_bar

        end, blocks = decompressed_blocks(self.path, self.chunk_bytes, self.threaded)
        scan = _StreamScan(self)
        with progress_bar(os.path.getsize(self.path), self.progress, "scan (gzip)") as bar:
            seen = 0
            try:
                for block in blocks:
                    scan.feed(block)
                    bar.update(end.compressed_offset - seen)
                    seen = end.compressed_offset
            except CaptureError:
                for _ in blocks:  # damage further on explains text that is not JSON
                    pass
                if not end.damaged:
                    raise
        self.size = end.size
        self.recovery = None
        if not end.complete or not scan.complete():
            self._cut(end, scan)
        self._finish(bytes(scan.skeleton), scan.pieces, scan.records, scan.shapes, scan.has, scan.ranges)
        return self

    def _finish(self, skeleton: bytes, pieces, records, shapes, has, ranges) -> None:
        from .json_skeleton import Skeleton, check_layers_heads, token_table

        document = Skeleton.from_text(skeleton, [s for s, _ in pieces], [f for _, f in pieces], self.path).parse()
        checked = check_document(document, self.path)
        self.metadata = checked.metadata
        self.prompt_table = prompt_table(checked.prompt_tokens)
        self.ranges = np.array(ranges, dtype=np.int64).reshape(-1, 2)
        self.shapes = np.array(shapes, dtype=np.int64).reshape(-1, 3)
        self.has_attention = np.array(has, dtype=bool)
        check_layers_heads(
            self.shapes, self.has_attention, lambda i: (self.path, int(self.ranges[i, 0]), records[i].get("step", i))
        )
        self.offsets = np.zeros(len(records) + 1, dtype=np.int64)
        np.cumsum(self.shapes.prod(axis=1), out=self.offsets[1:])
        self.token_table = token_table(records, self.shapes, self.has_attention)

    def _cut(self, end: GzipEnd, scan: _StreamScan) -> None:
        """A stream cut short or damaged: raise, or (recover) keep the complete tokens of the trusted text."""
        trusted = end.trusted
        kept = sum(1 for _, stop in scan.ranges if stop <= trusted)
        opened = scan.list_open_at is not None and scan.list_open_at < trusted
        if end.damaged:
            why = (
                f"{end.reason} near compressed byte {end.compressed_offset}; gzip verifies its data only at "
                f"the end of each member, so only the first {trusted} decompressed bytes (whole members whose "
                "checksum matched) can be trusted"
            )
        else:
            why = end.reason or "the JSON text ends before its last bracket"
        if not self.recover:
            hint = "recover=True, or --recover, keeps them" if opened else "nothing to recover"
            raise CaptureError(
                f"truncated at decompressed byte {trusted} after {kept} complete generated tokens: {why} ({hint})",
                self.path,
                trusted,
                _next_step(scan.records[:kept]),
            )
        if not opened:
            raise CaptureError(
                f"truncated at decompressed byte {trusted} before any generated token: {why}; nothing to recover",
                self.path,
                trusted,
            )
        del scan.records[kept:], scan.shapes[kept:], scan.has[kept:], scan.ranges[kept:]
        del scan.skeleton[scan.list_open_length :]
        scan.skeleton += b"]}"
        self.recovery = {
            "truncated_at": trusted,
            "complete_tokens": kept,
            "partial_tokens": max(scan.opened_tokens(), len(scan.records)) - kept,
            "kept_bytes": scan.ranges[-1][1] if scan.ranges else scan.list_open_at + 1,
            "offsets": "decompressed",
        }

    # pass 2 ---------------------------------------------------------------------------------------

    def _token_texts(self, first: int = 0):
        """(i, framed token object) for tokens ``first``, ``first + 1``, ... as the stream passes them."""
        from .token_object import frame_bytes

        end, blocks = decompressed_blocks(self.path, self.chunk_bytes, self.threaded)
        window = TextWindow()
        i = first
        n = len(self.ranges)
        try:
            for block in blocks:
                window.append(block)
                while i < n and self.ranges[i, 1] <= window.end:
                    start, stop = int(self.ranges[i, 0]), int(self.ranges[i, 1])
                    with window.view(start, stop) as text:
                        framed = frame_bytes(text)
                    yield i, start, framed
                    i += 1
                window.drop_before(int(self.ranges[i, 0]) if i < n else window.end)
                if i >= n:
                    return
        finally:
            blocks.close()
        if i < n:
            raise CaptureError("the gzip file changed while reading", self.path, end.size)

    def token_values(self, i: int) -> np.ndarray:
        from .token_object import parse_token

        # continue the stream when reading forward (the usual order), restart it otherwise
        if self._cursor is None or self._cursor[0] >= i:
            if self._cursor is not None:
                self._cursor[1].close()
            self._cursor = [-1, self._token_texts(i)]
        for k, start, text in self._cursor[1]:
            self._cursor[0] = k
            if k == i:
                return parse_token(text, self.path, start, self.window_bytes).values()
        raise CaptureError("the gzip file changed while reading", self.path, int(self.ranges[i, 0]))

    def decode(self) -> np.ndarray:
        from .mapped import output_buffer
        from .token_object import parse_token

        values = output_buffer(int(self.offsets[-1]))
        wanted = np.flatnonzero(self.has_attention)
        if not len(wanted):
            return values
        with self.token_bar(len(wanted), "decode (gzip)") as bar:
            for i, start, text in self._token_texts(int(wanted[0])):
                if self.has_attention[i]:
                    values[self.offsets[i] : self.offsets[i + 1]] = parse_token(
                        text, self.path, start, self.window_bytes
                    ).values()
                    bar.update(1)
        return values

    def __exit__(self, *exc_info) -> None:
        if self._cursor is not None:
            self._cursor[1].close()
            self._cursor = None
