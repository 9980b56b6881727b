"""formats.streamed: a file read once into a ring of chunks placed at their file offsets.

Against the file's own bytes: whatever was ensured reads as the file, wherever a chunk
was handed back it reads as zeros (never unmapped memory), ``read`` and the byte search
answer as the file does, the ring stays as small as the reading needs, and reading goes
through the page cache where O_DIRECT is refused.
"""

from __future__ import annotations

import mmap
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halo_fast import CaptureError
from halo_fast.formats import streamed
from halo_fast.formats.streamed import READERS, StreamedFile

PAGE = mmap.PAGESIZE

pytestmark = pytest.mark.skipif(not streamed.supported(), reason="Linux only (memfd, O_DIRECT)")


def random_bytes(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.choice(np.frombuffer(b"0123456789.,]e-", np.uint8), n).tobytes()


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 9 * PAGE + 7),
    seed=st.integers(0, 2**32 - 1),
    chunk_pages=st.integers(1, 3),
    ahead=st.integers(0, 4),
    direct=st.booleans(),
    steps=st.lists(st.tuples(st.integers(0, 12 * PAGE), st.booleans()), min_size=1, max_size=12),
)
def test_ensured_bytes_are_the_files_and_released_chunks_are_zeros(
    scratch, size, seed, chunk_pages, ahead, direct, steps
):
    data = random_bytes(size, seed)
    path = scratch(data)
    chunk = chunk_pages * PAGE
    with StreamedFile(path, chunk_bytes=chunk, ahead_chunks=ahead, direct=direct) as f:
        assert f.size == size and f.bytes.shape == (size,)
        released = np.zeros(size, dtype=bool)
        ensured = 0
        for stop, release in steps:
            f.ensure(stop)
            ensured = max(ensured, min(stop, size))
            if release:  # hand back everything before a point already read, as the scan does
                upto = min(stop, ensured) // 2
                f.release(0, upto)
                released[:upto] = True
            view = f.bytes[:ensured]
            whole = np.frombuffer(data, np.uint8)[:ensured]
            for index in range(-(-ensured // chunk)):
                lo, hi = index * chunk, min((index + 1) * chunk, ensured)
                if released[lo:hi].all() and hi - lo == min(chunk, size - lo):
                    assert not view[lo:hi].any()  # handed back: zeros
                else:
                    assert view[lo:hi].tobytes() == whole[lo:hi].tobytes()
            a, b = sorted((stop % (size + 1), (stop * 7) % (size + 1)))
            assert f.read(a, b) == data[a:b]  # resident or not, read answers as the file


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 6 * PAGE),
    seed=st.integers(0, 2**32 - 1),
    start=st.integers(-3, 6 * PAGE + 3),
    needle=st.sampled_from([b"]", b"e", b"\x00"]),
)
def test_the_byte_search_reads_on_as_far_as_it_must(scratch, size, seed, start, needle):
    data = random_bytes(size, seed)
    with StreamedFile(scratch(data), chunk_bytes=PAGE, ahead_chunks=1) as f:
        found = f.find_byte_without_gil(needle, start)
        assert found == data.find(needle, max(start, 0))
        if found >= 0:
            assert f.bytes[found] == needle[0]


def test_the_ring_holds_what_is_needed_plus_what_is_read_ahead(scratch):
    """Reading a file front to back, each part handed back once passed: the ring stays at the chunks read
    ahead plus those in flight, whatever the file's length; a span needed at once grows it."""
    data = random_bytes(200 * PAGE + 5, 1)
    with StreamedFile(scratch(data), chunk_bytes=PAGE, ahead_chunks=4) as f:
        for stop in range(PAGE, f.size + PAGE, PAGE // 2):
            f.ensure(stop)
            assert f.bytes[max(stop - PAGE, 0) : min(stop, f.size)].tobytes() == data[max(stop - PAGE, 0) : stop]
            f.release(0, max(stop - PAGE, 0))
        assert f._slots <= 4 + READERS + 2
        f.ensure(f.size)
        f.release(0, f.size)
        assert len(f._free) == f._slots  # all handed back
    with StreamedFile(scratch(data), chunk_bytes=PAGE, ahead_chunks=0) as f:
        f.ensure(f.size)  # nothing handed back: every chunk is needed at once
        assert f._slots == 201 and f.bytes.tobytes() == data


def test_where_o_direct_is_refused_the_page_cache_reads(scratch, monkeypatch):
    data = random_bytes(5 * PAGE + 3, 2)
    path = scratch(data)
    real_open = os.open

    def refuse_direct(name, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(22, "Invalid argument")
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", refuse_direct)
    with StreamedFile(path, chunk_bytes=PAGE) as f:
        assert not f.direct
        f.ensure(f.size)
        assert f.bytes.tobytes() == data


def test_a_read_o_direct_refuses_is_read_through_the_page_cache(scratch, monkeypatch):
    """Some file systems open with O_DIRECT and then refuse a read (alignment): that chunk is read
    through the page cache instead."""
    data = random_bytes(3 * PAGE + 9, 3)
    real_preadv = os.preadv
    with StreamedFile(scratch(data), chunk_bytes=PAGE) as f:
        assert f.direct

        def refuse_direct(fd, buffers, offset):
            if fd == f._direct_fd:
                raise OSError(22, "Invalid argument")
            return real_preadv(fd, buffers, offset)

        monkeypatch.setattr(os, "preadv", refuse_direct)
        f.ensure(f.size)
        assert f.bytes.tobytes() == data


def test_missing_empty_and_shrinking_files_are_capture_errors(tmp_path, scratch):
    with pytest.raises(CaptureError, match="cannot open"):
        StreamedFile(tmp_path / "none.json").__enter__()
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    with pytest.raises(CaptureError, match="empty file"):
        StreamedFile(empty).__enter__()
    path = scratch(random_bytes(4 * PAGE, 4))
    with StreamedFile(path, chunk_bytes=PAGE, ahead_chunks=0) as f:
        f.ensure(PAGE)
        os.truncate(path, 2 * PAGE + 10)
        with pytest.raises(CaptureError, match="shorter"):
            f.ensure(f.size)
    with pytest.raises(ValueError, match="page size"):
        StreamedFile(path, chunk_bytes=PAGE + 1)
