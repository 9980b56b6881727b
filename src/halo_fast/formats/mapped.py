"""A read-only memory map of a capture whose pages are handed back once parsed.

Mapped pages count in a process's resident set, so walking a 5 GB file through
one mapping would show 5 GB resident. ``release`` drops a parsed range from this
process (the kernel's page cache keeps it), keeping peak memory flat.
"""

from __future__ import annotations

import functools
import mmap
import os

import numpy as np

from ..errors import CaptureError


def mem_available_bytes() -> float:
    """MemAvailable from /proc/meminfo: what the kernel could give a process, page cache included
    (infinite where there is no such file, so nothing is thought too large for memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return float("inf")


@functools.cache
def _libc_memchr():
    """libc's memchr through ctypes (imported at the first search, not with the package), or None."""
    import ctypes

    try:
        memchr = ctypes.CDLL(None).memchr
    except (OSError, AttributeError):
        return None
    memchr.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
    memchr.restype = ctypes.c_void_p
    return memchr


class MappedFile:
    """``with MappedFile(path) as m: m.bytes`` is a read-only uint8 view of the file."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._file = None
        self._map = None
        self.bytes = np.empty(0, dtype=np.uint8)

    def __enter__(self) -> MappedFile:
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise CaptureError(f"cannot open: {exc.strerror}", self.path) from None
        size = os.fstat(self._file.fileno()).st_size
        if size == 0:
            self._file.close()
            raise CaptureError("empty file", self.path, 0)
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self.bytes = np.frombuffer(self._map, dtype=np.uint8)
        return self

    @property
    def size(self) -> int:
        return self.bytes.shape[0]

    def ensure(self, stop: int) -> None:
        """Nothing: a mapped file's bytes are all there (``streamed.StreamedFile`` reads them first)."""

    def release(self, start: int, stop: int) -> None:
        """Drop the whole pages inside [start, stop) from this process's memory."""
        if self._map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        last = min(stop, self.size) // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first:
            self._map.madvise(mmap.MADV_DONTNEED, first, last - first)

    def find(self, needle: bytes, start: int) -> int:
        """First position of needle at or after start, or -1 (memchr speed for one byte)."""
        return self._map.find(needle, start)

    def find_byte_without_gil(self, needle: bytes, start: int) -> int:
        """``find`` for one byte by libc's memchr through ctypes, which lets go of the GIL: on a file
        read from disk the search waits for its pages, and a thread folding tokens meanwhile
        (json_ahead) needs the GIL between its kernels. ``mmap.find`` holds it."""
        memchr = _libc_memchr() if len(needle) == 1 else None
        if memchr is None or not 0 <= start < self.size:
            return self._map.find(needle, start)
        base = self.bytes.ctypes.data
        found = memchr(base + start, needle[0], self.size - start)
        return found - base if found else -1

    def read(self, start: int, stop: int) -> bytes:
        """Bytes [start, stop) by pread, not through the map: touching the map would keep pages
        (whole large folios, with modern page caches) resident in this process."""
        start = max(0, min(start, self.size))
        stop = max(start, min(stop, self.size))
        return os.pread(self._file.fileno(), stop - start, start)

    def __exit__(self, *exc_info) -> None:
        self.bytes = np.empty(0, dtype=np.uint8)
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # a caller still holds a view; the map closes when it is gone
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None


def output_buffer(count: int, dtype=np.float32) -> np.ndarray:
    """A writable array for decoded values, backed by an anonymous map of 4 KiB pages.

    numpy advises transparent huge pages for large arrays; their first touch (zeroing
    2 MiB at a time under the fault lock) measured 3-5x slower than 4 KiB pages here,
    and for a single decoding pass that first touch is most of the cost of the output.
    """
    nbytes = count * np.dtype(dtype).itemsize
    if nbytes == 0:
        return np.empty(count, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype)
