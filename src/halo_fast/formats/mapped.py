"""A read-only memory map of a capture whose pages are handed back once parsed.

Mapped pages count in a process's resident set, so walking a 5 GB file through
one mapping would show 5 GB resident. ``release`` drops a parsed range from this
process (the kernel's page cache keeps it), keeping peak memory flat.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading

import numpy as np

from ..errors import CaptureError


def _libc_memchr():
    try:
        memchr = ctypes.CDLL(None).memchr
    except (OSError, AttributeError):
        return None
    memchr.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
    memchr.restype = ctypes.c_void_p
    return memchr


_memchr = _libc_memchr()
READ_AHEAD_BYTES = 128 << 20  # how far ahead of a scan the kernel is asked to read


class _ReadAhead:
    """Asks the kernel to read a file ahead of its reader (``posix_fadvise(WILLNEED)``), from a thread.

    The kernel's own read-ahead on page faults keeps a few hundred KB in flight, so a reader that
    parses between faults leaves the disk idle: a capture larger than the page cache then takes the
    time of the reads plus the time of the parse. The advice queues reads and returns once the
    device has taken them, so this thread keeps the disk busy while the kernels parse. For a file
    already cached it costs a page-cache lookup.
    """

    STEP = 8 << 20  # bytes advised per call: the thread never waits long on the device before its next look

    def __init__(self, fd: int, size: int):
        self._fd = fd
        self._size = size
        self._done = 0  # advised up to here
        self._target = 0
        self._stopped = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="halo_fast-read-ahead", daemon=True)
        self._thread.start()

    def request(self, start: int, stop: int) -> None:
        """Have [start, stop) read ahead (what lies before start is not needed any more)."""
        with self._changed:
            self._done = max(self._done, start)
            if stop > self._target:
                self._target = min(stop, self._size)
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stopped and self._done >= self._target:
                    self._changed.wait()
                if self._stopped:
                    return
                start = self._done
                stop = min(self._target, start + self.STEP)
                self._done = stop
            try:
                os.posix_fadvise(self._fd, start, stop - start, os.POSIX_FADV_WILLNEED)
            except OSError:
                return  # advice only: reads go on without it

    def close(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._thread.join()


class MappedFile:
    """``with MappedFile(path) as m: m.bytes`` is a read-only uint8 view of the file."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._file = None
        self._map = None
        self._read_ahead: _ReadAhead | None = None
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

    def read_ahead(self, start: int) -> None:
        """Have the kernel read the READ_AHEAD_BYTES from ``start`` into the page cache, in the background."""
        if self._read_ahead is None:
            if self._file is None or not hasattr(os, "posix_fadvise"):
                return
            self._read_ahead = _ReadAhead(self._file.fileno(), self.size)
        self._read_ahead.request(start, start + READ_AHEAD_BYTES)

    @property
    def size(self) -> int:
        return self.bytes.shape[0]

    def release(self, start: int, stop: int) -> None:
        """Drop the whole pages inside [start, stop) from this process's memory."""
        if self._map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        last = min(stop, self.size) // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first:
            self._map.madvise(mmap.MADV_DONTNEED, first, last - first)

    def find(self, needle: bytes, start: int) -> int:
        """First position of needle at or after start, or -1 (memchr speed for one byte).

        One byte is looked for by libc's memchr through ctypes, which lets go of the GIL:
        on a file read from disk the search waits for its pages, and the threads reading
        ahead and folding (json_ahead) need the GIL meanwhile. ``mmap.find`` holds it.
        """
        if len(needle) != 1 or _memchr is None or not 0 <= start < self.size:
            return self._map.find(needle, start)
        base = self.bytes.ctypes.data
        found = _memchr(base + start, needle[0], self.size - start)
        return found - base if found else -1

    def read(self, start: int, stop: int) -> bytes:
        """Bytes [start, stop) by pread, not through the map: touching the map would keep pages
        (whole large folios, with modern page caches) resident in this process."""
        start = max(0, min(start, self.size))
        stop = max(start, min(stop, self.size))
        return os.pread(self._file.fileno(), stop - start, start)

    def __exit__(self, *exc_info) -> None:
        if self._read_ahead is not None:
            self._read_ahead.close()
            self._read_ahead = None
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
