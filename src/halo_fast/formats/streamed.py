"""A capture read once from disk into a little memory used over and over: the input of the
larger-than-memory route (``json_ahead``).

On a file larger than the page cache, every page mapped from it (``MappedFile``) is a
page of cache the kernel must first take back from another part of the file; on this
project's machines that reclaiming costs more CPU than the parse (bench/RESULTS.md:
`cat` alone spends 18-21 s of system time on 27 GB, a numpy pass over the map 26-38 s of
CPU). ``StreamedFile`` reads with ``O_DIRECT`` instead -- the disk writes straight into
this process's memory, past the page cache -- into a ring of chunks (a memfd) whose
pages are allocated once. Each chunk, while it holds the file's bytes at offset ``o``, is
mapped at ``o`` inside an anonymous reservation as long as the file, so ``bytes[i]`` is
the file's byte ``i`` wherever it is resident: the scan and the kernels use file
positions exactly as with ``MappedFile``, and every position they may touch lies inside
the reservation (a chunk handed back reads as zeros, never as unmapped memory).

Reads run ahead on threads (``preadv`` lets go of the GIL). ``ensure(stop)`` waits for
the bytes before ``stop``; ``release(start, stop)`` hands back every chunk whose bytes are
all released. The ring grows only when the reader needs more chunks than it has handed
back (a token larger than the ring); reading ahead uses free chunks only. Where
``O_DIRECT`` is refused (tmpfs, some network file systems) the same reads go through the
page cache. Where the reservation itself is refused (strict overcommit), ``__enter__``
raises OSError and ``json_single`` folds over the map instead.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..errors import CaptureError
from .mapped import _libc_memchr

CHUNK_BYTES = 8 << 20  # one read; a multiple of every block size O_DIRECT may ask alignment to
AHEAD_CHUNKS = 8  # chunks read ahead of the scan (64 MB): 12 measured no faster, 30 MB more resident
READERS = 4  # reads in flight: the disk is faster with several than with one

_PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE
_MAP_SHARED, _MAP_PRIVATE, _MAP_FIXED, _MAP_ANONYMOUS, _MAP_NORESERVE = 0x01, 0x02, 0x10, 0x20, 0x4000


@functools.cache
def _libc_mmap():
    libc = ctypes.CDLL(None, use_errno=True)
    function = libc.mmap
    function.restype = ctypes.c_void_p
    function.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    return function


def _reserve(length: int) -> mmap.mmap:
    """Address range for the whole file, no memory behind it until a chunk is placed (OSError where
    the system counts it against a strict overcommit limit and refuses)."""
    return mmap.mmap(-1, length, flags=_MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_NORESERVE)


def supported() -> bool:
    """Linux only: a memfd, O_DIRECT (or its buffered fallback), and libc's mmap and memchr."""
    has_os = hasattr(os, "memfd_create") and hasattr(os, "preadv") and hasattr(os, "O_DIRECT")
    return has_os and _libc_memchr() is not None


class _Released:
    """Released byte ranges, merged: which chunks are wholly released."""

    def __init__(self):
        self.ranges: list[list[int]] = []  # sorted, disjoint, not touching

    def add(self, start: int, stop: int) -> None:
        merged = [start, stop]
        kept = []
        for r in self.ranges:
            if r[1] < merged[0] or r[0] > merged[1]:
                kept.append(r)
            else:
                merged = [min(r[0], merged[0]), max(r[1], merged[1])]
        kept.append(merged)
        self.ranges = sorted(kept)

    def covers(self, start: int, stop: int) -> bool:
        return any(r[0] <= start and stop <= r[1] for r in self.ranges)


class StreamedFile:
    """``with StreamedFile(path) as f: f.ensure(n); f.bytes[:n]`` -- the file's bytes, read once."""

    def __init__(self, path, chunk_bytes: int = CHUNK_BYTES, ahead_chunks: int = AHEAD_CHUNKS, direct: bool = True):
        if chunk_bytes <= 0 or chunk_bytes % mmap.PAGESIZE:
            raise ValueError(f"chunk_bytes must be a positive multiple of the page size ({mmap.PAGESIZE})")
        self.path = os.fspath(path)
        self.chunk = chunk_bytes
        self.ahead = ahead_chunks
        self.direct = direct  # False: read through the page cache (as when O_DIRECT is refused)
        self.bytes = np.empty(0, dtype=np.uint8)
        self.size = 0
        self._fd = -1  # buffered: read(), fields, the fallback
        self._direct_fd = -1
        self._ring = -1  # the memfd
        self._slots = 0
        self._free: list[int] = []
        self._reservation: mmap.mmap | None = None
        self._base = 0
        self._view: memoryview | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._reads: dict[int, Future] = {}  # chunk index -> its read
        self._slot_of: dict[int, int] = {}  # chunk index -> ring slot, while placed
        self._next = 0  # the first chunk not yet asked for
        self._released = _Released()
        self._lock = threading.Lock()

    def __enter__(self) -> StreamedFile:
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise CaptureError(f"cannot open: {exc.strerror}", self.path) from None
        try:
            self.size = os.fstat(self._fd).st_size
            if self.size == 0:
                raise CaptureError("empty file", self.path, 0)
            if self.direct:
                try:
                    self._direct_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECT)
                except OSError:
                    self.direct = False  # tmpfs and some file systems: through the page cache
            n_chunks = -(-self.size // self.chunk)
            self._reservation = _reserve(n_chunks * self.chunk)
            whole = np.frombuffer(self._reservation, dtype=np.uint8)
            self._base = whole.ctypes.data
            self.bytes = whole[: self.size]
            self._view = memoryview(self._reservation)
            self._ring = os.memfd_create("halo_fast-stream", os.MFD_CLOEXEC)
            self._pool = ThreadPoolExecutor(READERS, thread_name_prefix="halo_fast-read")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    # -- reading -----------------------------------------------------------------------------

    def ensure(self, stop: int) -> None:
        """Wait until bytes [.., stop) are read (those released since read as zeros); start reads ahead."""
        stop = min(stop, self.size)
        last = -(-stop // self.chunk)  # chunks [0, last) are needed
        n_chunks = -(-self.size // self.chunk)
        with self._lock:
            while self._next < last:
                self._start_read(self._next, grow=True)
            while self._next < min(last + self.ahead, n_chunks):
                if self._free_slot(grow=self._slots < self.ahead + READERS) is None:
                    break  # reading ahead waits for chunks handed back
                self._start_read(self._next, grow=False)
            waiting = [future for index, future in self._reads.items() if index < last]
        for future in waiting:
            future.result()  # an error of the read is raised here

    def _free_slot(self, grow: bool) -> int | None:
        if self._free:
            return self._free[-1]
        if not grow:
            return None
        self._slots += 1
        os.ftruncate(self._ring, self._slots * self.chunk)
        self._free.append(self._slots - 1)
        return self._slots - 1

    def _start_read(self, index: int, grow: bool) -> None:
        if self._free_slot(grow) is None:
            raise AssertionError("no free chunk")  # callers check first
        slot = self._free.pop()
        offset = index * self.chunk
        self._place(offset, _MAP_SHARED | _MAP_FIXED, self._ring, slot * self.chunk)
        self._slot_of[index] = slot
        self._next = index + 1
        assert self._pool is not None
        self._reads[index] = self._pool.submit(self._read_chunk, offset)

    def _read_chunk(self, offset: int) -> None:
        assert self._view is not None
        target = self._view[offset : offset + self.chunk]
        want = min(self.chunk, self.size - offset)
        got = 0
        if self.direct:
            try:
                got = os.preadv(self._direct_fd, [target], offset)  # whole blocks; the last one comes short
            except OSError:
                got = 0  # alignment refused after all: read this chunk through the page cache
        while got < want:
            n = os.preadv(self._fd, [target[got:want]], offset + got)
            if n <= 0:
                raise CaptureError("the file became shorter while it was read", self.path, offset + got)
            got += n

    def _place(self, offset: int, flags: int, fd: int, file_offset: int) -> None:
        address = self._base + offset
        placed = _libc_mmap()(address, self.chunk, _PROT_RW, flags, fd, file_offset)
        if placed != address:
            raise OSError(ctypes.get_errno(), f"mapping a read chunk at file offset {offset} failed")

    # -- what MappedFile offers --------------------------------------------------------------

    def release(self, start: int, stop: int) -> None:
        """Hand back the chunks all of whose bytes are in released ranges (from any thread)."""
        if stop <= start or self._reservation is None:
            return
        with self._lock:
            self._released.add(start, stop)
            for index in [c for c in self._slot_of if self._reads[c].done()]:  # a read in flight writes on
                lo, hi = index * self.chunk, min((index + 1) * self.chunk, self.size)
                if self._released.covers(lo, hi):
                    self._place(lo, _MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_FIXED | _MAP_NORESERVE, -1, 0)
                    self._free.append(self._slot_of.pop(index))
                    del self._reads[index]

    def find_byte_without_gil(self, needle: bytes, start: int) -> int:
        """First position of the byte ``needle`` at or after ``start``, or -1; reads on as far as it must."""
        memchr = _libc_memchr()  # there: ``supported`` checks
        position = max(start, 0)
        while position < self.size:
            stop = min((position // self.chunk + 1) * self.chunk, self.size)
            self.ensure(stop)  # a chunk at a time: the search never reads a chunk not yet read
            found = memchr(self._base + position, needle[0], stop - position)
            if found:
                return found - self._base
            position = stop
        return -1

    def read(self, start: int, stop: int) -> bytes:
        """Bytes [start, stop): from memory where they are read and not handed back, else from the file."""
        start = max(0, min(start, self.size))
        stop = max(start, min(stop, self.size))
        if stop > start:
            chunks = range(start // self.chunk, (stop - 1) // self.chunk + 1)
            with self._lock:  # a chunk is handed back whole, so while placed it holds all its bytes
                if all(c in self._slot_of and self._reads[c].done() for c in chunks):
                    return self.bytes[start:stop].tobytes()
        return os.pread(self._fd, stop - start, start)

    def __exit__(self, *exc_info) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self.bytes = np.empty(0, dtype=np.uint8)
        if self._view is not None:
            try:
                self._view.release()
            except BufferError:
                pass
            self._view = None
        if self._reservation is not None:
            try:
                self._reservation.close()  # unmaps the chunks placed in it too
            except BufferError:
                pass  # a caller still holds a view; the memory goes when it does
            self._reservation = None
        for fd in (self._ring, self._direct_fd, self._fd):
            if fd >= 0:
                os.close(fd)
        self._ring = self._direct_fd = self._fd = -1
