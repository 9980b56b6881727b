"""A gzip stream, decompressed as it is read: never the whole text in memory or on disk.

Shared by the gzip-compressed formats: ``json_gz.GzipJson`` (``.json.gz``) walks
``decompressed_blocks``; ``jsonlines.JsonLines`` (``.jsonl.gz``) reads ``gz_lines``.
Decompression runs in a background thread (zlib and ISA-L release the GIL), so it
overlaps the parsing. Every gzip member is read; a stream cut short or damaged is
reported with how much of its text can be trusted (``GzipEnd``, ``GzipStreamError``).
"""

from __future__ import annotations

import queue
import threading
import zlib

from ..errors import CaptureError

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
    """The tail of a stream still needed: ``buffer`` holds stream bytes from ``base`` on.

    The buffer grows and shrinks in place, which a bytearray refuses while any view of
    it is alive. Callers release theirs, but the first call of a numba kernel compiles
    it, and numba keeps the arguments of that call (a view of this buffer among them)
    in frames held by an exception it caught, until Python's cyclic garbage collector
    runs. So a refused resize is done on a copy: the stale view keeps the old bytes,
    never the new ones.
    """

    def __init__(self):
        self.buffer = bytearray()
        self.base = 0

    @property
    def end(self) -> int:
        return self.base + len(self.buffer)

    def append(self, block: bytes) -> None:
        try:
            self.buffer += block
        except BufferError:  # a view is still alive (see the class): grow a copy
            self.buffer = self.buffer + block

    def view(self, start: int, stop: int) -> memoryview:
        """Stream bytes [start, stop) without a copy (release the view before the next append)."""
        return memoryview(self.buffer)[start - self.base : stop - self.base]

    def drop_before(self, offset: int) -> int:
        """Forget bytes before stream ``offset``; returns how many were dropped."""
        count = min(max(offset - self.base, 0), len(self.buffer))
        if count:
            try:
                del self.buffer[:count]
            except BufferError:  # a view is still alive (see the class): keep a copy of the rest
                self.buffer = self.buffer[count:]
            self.base += count
        return count


class GzipStreamError(CaptureError):
    """A gzip stream that is not whole; ``gz_lines`` raises it after the lines decompressed before the problem.

    ``kind``: "early" (cut short: the text is a true prefix) or "damaged" (invalid data,
    a checksum mismatch, garbage after the last member: text decoded after the damage
    may be wrong without any error, so only ``trusted`` bytes -- whole members whose
    checksum matched -- count). ``text_end``: decompressed bytes produced; ``lines_end``:
    where the lines yielded end.
    """

    def __init__(
        self, kind: str, detail: str, path: str, text_end: int, lines_end: int, compressed_at: int, trusted: int
    ):
        self.kind, self.detail = kind, detail
        self.text_end, self.lines_end, self.compressed_at, self.trusted = text_end, lines_end, compressed_at, trusted
        if kind == "early":
            message = f"gzip stream ends early at decompressed byte {text_end} (the .gz is cut short)"
        else:
            message = (
                f"damaged gzip stream near compressed byte {compressed_at} ({detail}): gzip verifies its data "
                f"only at the end of each member, so only the first {trusted} decompressed bytes can be trusted"
            )
        super().__init__(message, path, trusted)


def gz_lines(path: str, chunk: int = CHUNK_BYTES):
    """(offset, line bytes, terminated) of a gzip file's decompressed text, streamed ``chunk`` bytes at a time.

    A stream that is not whole raises ``GzipStreamError`` after every line before the
    problem; the unterminated tail of a stream cut short is yielded first, a damaged stream's is not.
    """
    end, blocks = decompressed_blocks(path, chunk)
    pending = bytearray()
    offset = 0
    searched = 0
    for block in blocks:
        pending += block
        start = 0
        while (newline := pending.find(b"\n", max(start, searched))) >= 0:
            yield offset + start, bytes(pending[start:newline]), True
            start = newline + 1
        del pending[:start]
        offset += start
        searched = len(pending)
    text_end = offset + len(pending)
    if pending and not end.damaged:
        yield offset, bytes(pending), False
        offset = text_end
    if not end.complete:
        raise GzipStreamError(
            "damaged" if end.damaged else "early",
            end.detail,
            path,
            text_end,
            offset,
            end.compressed_offset,
            end.trusted,
        )
