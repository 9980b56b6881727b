"""gzip-compressed captures: streamed decompression, never the whole text in memory or on disk.

``.jsonl.gz`` is read by ``jsonlines.JsonLines`` one decompressed line at a time.

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

Decompression runs in a background thread (zlib releases the GIL), so it overlaps
the parsing. Memory holds one chunk plus the token object being read. Offsets in
error messages are into the decompressed text, as ``gzip -dc`` would print it.
"""

from __future__ import annotations

import os
import queue
import threading
import zlib

import numpy as np

from ..capture import PROMPT_COLUMNS, Table
from ..errors import CaptureError
from .base import CaptureSource

try:  # ISA-L's inflate: the same streams, two to three times faster than zlib's
    from isal import isal_zlib as inflate_module
except ImportError:  # pragma: no cover -- isal is a dependency; zlib is the fallback where it will not install
    inflate_module = zlib

CHUNK_BYTES = 1 << 20  # compressed bytes read at a time
QUEUE_CHUNKS = 8  # decompressed chunks the background thread may run ahead


def peek(path: str, size: int) -> tuple[bytes, bool]:
    """The first ``size`` decompressed bytes, and whether that is the whole text."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = b""
    try:
        with open(path, "rb") as f:
            while len(out) < size:
                block = f.read(1 << 10)  # small steps: text before a damaged spot still comes out
                if not block:
                    return out, True
                out += decompressor.decompress(block, size - len(out))
                if decompressor.eof:
                    return out, True
    except zlib.error as exc:
        if not out:
            raise CaptureError(f"damaged gzip stream: {exc}", path, 0) from None
        return out, False  # damage further on: the reader reports it where it is
    return out[:size], False


class GzipEnd:
    """How a decompressed stream ended: ``complete``, or why not (``reason``) at ``compressed_offset``."""

    def __init__(self):
        self.complete = False
        self.damaged = False  # the data itself is corrupt, not merely cut short
        self.reason = None
        self.detail = None  # zlib's message for damage
        self.compressed_offset = 0
        self.size = 0  # decompressed bytes delivered
        self.verified = 0  # of those, the bytes of members whose checksum matched

    @property
    def trusted(self) -> int:
        """Where the text that can be trusted ends: all of it when merely cut short, else the verified part.

        A stream cut short gave a prefix of the true text. Damaged data decodes to other
        text until zlib notices (often only at the member's checksum), so only whole
        members whose checksum matched are trusted then.
        """
        return self.verified if self.damaged else self.size


def _inflate(path: str, chunk: int, end: GzipEnd):
    """Decompressed blocks (at most ``chunk`` bytes each) of a gzip file's members, in order.

    Records in ``end`` whether the last member finished (``complete``) or why the
    stream stopped. Zero padding after the last member is allowed, as gzip allows it.
    """
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc.strerror}", path) from None
    with f:
        decompressor = inflate_module.decompressobj(16 + zlib.MAX_WBITS)
        in_member = False
        consumed = 0  # compressed bytes read before ``data``
        while True:
            data = f.read(chunk)
            if not data:
                break
            read = len(data)
            while data:
                if not in_member:  # zero padding between or after members is skipped, as gzip does
                    data = data.lstrip(b"\x00")
                    if not data:
                        break
                    if not b"\x1f\x8b".startswith(data[:2]):
                        end.damaged = True
                        end.detail = "bytes that are not a gzip member follow" + (" the last one" if end.size else "")
                        end.reason = f"damaged gzip stream ({end.detail})"
                        end.compressed_offset = consumed + read - len(data)
                        return
                in_member = True
                try:
                    out = decompressor.decompress(data, chunk)
                except inflate_module.error as exc:
                    end.damaged = True
                    end.detail = str(exc)
                    end.reason = f"damaged gzip stream ({exc})"
                    end.compressed_offset = consumed + read - len(data)
                    return
                if out:
                    end.size += len(out)
                    yield out
                if decompressor.eof:  # the member ended (checksum matched); another may follow
                    end.verified = end.size
                    data = decompressor.unused_data
                    decompressor = inflate_module.decompressobj(16 + zlib.MAX_WBITS)
                    in_member = False
                else:
                    data = decompressor.unconsumed_tail
            consumed += read
            end.compressed_offset = consumed
        if in_member:
            end.reason = "the gzip stream ends early (cut short)"
        else:
            end.complete = True


def decompressed_blocks(path: str, chunk: int = CHUNK_BYTES, threaded: bool = True):
    """(GzipEnd, iterator of decompressed blocks); with ``threaded`` a background thread inflates ahead."""
    end = GzipEnd()
    if not threaded:
        return end, _inflate(path, chunk, end)
    return end, _ahead(_inflate(path, chunk, end), QUEUE_CHUNKS)


_DONE = object()


def _ahead(blocks, depth: int):
    """Run ``blocks`` in a thread, ``depth`` items ahead of the consumer; errors re-raised here."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for block in blocks:
                if not offer(block):
                    return
            offer(_DONE)
        except BaseException as exc:  # noqa: BLE001 -- handed to the consumer
            offer(exc)
        finally:
            blocks.close()

    thread = threading.Thread(target=produce, name="halo_fast-gunzip", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class TextWindow:
    """The tail of a stream still needed: ``buffer`` holds stream bytes from ``base`` on."""

    def __init__(self):
        self.buffer = bytearray()
        self.base = 0

    @property
    def end(self) -> int:
        return self.base + len(self.buffer)

    def append(self, block: bytes) -> None:
        self.buffer += block

    def view(self, start: int, stop: int) -> memoryview:
        """Stream bytes [start, stop) without a copy (release the view before the next append)."""
        return memoryview(self.buffer)[start - self.base : stop - self.base]

    def drop_before(self, offset: int) -> int:
        """Forget bytes before stream ``offset``; returns how many were dropped."""
        count = min(max(offset - self.base, 0), len(self.buffer))
        if count:
            del self.buffer[:count]
            self.base += count
        return count


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
        self,
        path,
        window_bytes: int = 4 << 20,
        progress: bool = False,
        recover: bool = False,
        chunk_bytes: int = CHUNK_BYTES,
        threaded: bool = True,
    ):
        self.path = os.fspath(path)
        self.threaded = threaded
        self.window_bytes = window_bytes
        self.progress = progress
        self.recover = recover
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
        if not isinstance(document, dict) or not isinstance(document.get("generated_tokens"), list):
            raise CaptureError("not a capture: no 'generated_tokens' list at the top level", self.path, 0)
        prompt = document.get("prompt_tokens") or []
        if not isinstance(prompt, list):
            raise CaptureError("'prompt_tokens' is not a list", self.path, None)
        metadata = document.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise CaptureError("'metadata' is not a JSON object", self.path, None)
        self.metadata = metadata or {}
        self.prompt_table = Table.from_records(prompt, PROMPT_COLUMNS)
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
        for i, start, text in self._token_texts(int(wanted[0])):
            if self.has_attention[i]:
                values[self.offsets[i] : self.offsets[i + 1]] = parse_token(
                    text, self.path, start, self.window_bytes
                ).values()
        return values

    def __exit__(self, *exc_info) -> None:
        if self._cursor is not None:
            self._cursor[1].close()
            self._cursor = None
