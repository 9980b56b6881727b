"""gzip-compressed captures: streamed decompression, never the whole text in memory or on disk.

``.jsonl.gz`` is read by ``jsonlines.JsonLines`` one decompressed line at a time.
A gzip-compressed single JSON document (``.json.gz``) cannot be memory-mapped for
the single-JSON reader's random access, and is not supported yet.
"""

from __future__ import annotations

import zlib

from ..errors import CaptureError


def peek(path: str, size: int) -> tuple[bytes, bool]:
    """The first ``size`` decompressed bytes, and whether that is the whole text."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = b""
    try:
        with open(path, "rb") as f:
            while len(out) < size:
                block = f.read(1 << 16)
                if not block:
                    return out, True
                out += decompressor.decompress(block, size - len(out))
                if decompressor.eof:
                    return out, True
    except zlib.error as exc:
        raise CaptureError(f"damaged gzip stream: {exc}", path, 0) from None
    return out[:size], False


class GzipJson:
    """Placeholder that explains the gap (``open_capture`` returns it for .json.gz)."""

    def __init__(self, path, *args, **kwargs):
        self.path = path

    def __enter__(self):
        raise CaptureError("a gzip-compressed single-JSON capture is not supported yet: decompress it "
                           "(gzip -d) or gzip the JSON-lines form instead", self.path, 0)

    def __exit__(self, *exc_info) -> None:
        pass
