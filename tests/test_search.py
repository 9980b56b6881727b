"""kernels.search against ``bytes.find``, through the vector path and the byte-by-byte one.

The twin is Python's own ``bytes.find`` on the span clipped to the buffer. Spans are
drawn around the vector loop's edges: shorter than a step, ending a byte before or
after a step, in a view cut from a larger buffer whose next bytes hold the byte
sought (they must not be found), and split over any number of parts.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halo_fast.formats.json_brackets import ClosingBrackets
from halo_fast.kernels.search import STEP, STOP_BYTES, find_byte, find_byte_split, find_stop
from reference import examples


def twin(data: bytes, start: int, stop: int, byte: int) -> int:
    lo = max(start, 0)
    hi = min(stop, len(data))
    if hi <= lo:
        return -1
    return data.find(bytes([byte]), lo, hi)


def check(data: bytes, start: int, stop: int, byte: int) -> None:
    buf = np.frombuffer(data, dtype=np.uint8)
    want = twin(data, start, stop, byte)
    for vector in (True, False):
        assert find_byte(buf, start, stop, byte, vector) == want, (vector, start, stop)
    for parts in (1, 2, 3, 7):
        found = np.empty(parts, dtype=np.int64)
        assert find_byte_split(buf, start, stop, byte, found) == want, (parts, start, stop)


def sparse(size: int, positions: list[int], byte: int = 93) -> bytes:
    data = bytearray(b"0.1," * (size // 4 + 1))[:size]
    for p in positions:
        if 0 <= p < size:
            data[p] = byte
    return bytes(data)


@settings(max_examples=examples(200))
@given(
    size=st.integers(0, 3 * STEP + 40),
    marks=st.lists(st.integers(0, 3 * STEP + 40), max_size=4),
    bounds=st.data(),
)
def test_search_matches_bytes_find(size, marks, bounds):
    data = sparse(size, marks)
    start = bounds.draw(st.integers(-3, size + 3))
    stop = bounds.draw(st.integers(-3, size + STEP))
    check(data, start, stop, 93)


@settings(max_examples=examples(100))
@given(data=st.binary(max_size=4 * STEP), byte=st.integers(0, 255), bounds=st.data())
def test_search_any_bytes_any_value(data, byte, bounds):
    start = bounds.draw(st.integers(-2, len(data) + 2))
    stop = bounds.draw(st.integers(-2, len(data) + 2))
    check(data, start, stop, byte)


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, STEP - 1, STEP, STEP + 1, 2 * STEP, 5 * STEP + 17])
def test_every_position_of_one_match(size):
    for p in range(size):
        data = sparse(size, [p])
        check(data, 0, size, 93)
        check(data, p, size, 93)
        check(data, p + 1, size, 93)
        check(data, 0, p, 93)
    check(sparse(size, []), 0, size, 93)


def test_every_byte_value_sets_only_its_own_lanes():
    data = bytes(range(256)) * 2
    for byte in range(256):
        check(data, 0, len(data), byte)
        check(data, byte + 1, len(data), byte)


def test_a_view_does_not_see_the_bytes_after_it():
    big = np.frombuffer(sparse(4 * STEP, [3 * STEP + 5, 3 * STEP + 6]), dtype=np.uint8)
    for k in range(2 * STEP, 4 * STEP + 1, 7):
        view = big[:k]
        want = twin(big.tobytes()[:k], 0, k + STEP, 93)
        assert find_byte(view, 0, k + STEP, 93, True) == want
        assert find_byte_split(view, 0, k + STEP, 93, np.empty(2, np.int64)) == want


def test_split_gives_the_first_part_with_a_match():
    data = sparse(10 * STEP, [9 * STEP, 2 * STEP + 3, 6 * STEP])
    buf = np.frombuffer(data, dtype=np.uint8)
    found = np.empty(4, dtype=np.int64)
    assert find_byte_split(buf, 0, len(data), 93, found) == 2 * STEP + 3
    assert find_byte_split(buf, 0, len(data), 93, np.empty(0, np.int64)) == -1  # no parts: nothing searched


def test_closing_brackets_sized_from_the_previous_array():
    """ClosingBrackets finds every ']' whatever its guess: too short (spans double), too long, none at all."""
    arrays = [5000, 5100, 300, 40_000, 41_000, 10]
    text = bytearray()
    opens = []
    for length in arrays:
        opens.append(len(text))
        text += b"[" + (b"1," * length)[: length - 1] + b"]"
    closes = [o + a for o, a in zip(opens, arrays)]
    buf = np.frombuffer(bytes(text) + b" " * 10, dtype=np.uint8)
    brackets = ClosingBrackets(buf)
    brackets.FIRST_SPAN = 64
    brackets.SLACK = 16
    for opened, close in zip(opens, closes):
        assert brackets.find(opened + 1, opened) == close
        assert brackets.previous_length == close - opened
    assert brackets.find(closes[-1] + 1, closes[-1]) == -1


# --------------------------------------------------------------------------- where a stepped-over number ends

STOPS = b", \n\r\t]"


def twin_stop(data: bytes, start: int, stop: int) -> int:
    """The first position in the clipped span holding one of STOP_BYTES, else the clipped stop."""
    lo = max(start, 0)
    hi = min(stop, len(data))
    if hi <= lo:
        return lo
    return next((p for p in range(lo, hi) if data[p] in STOPS), hi)


def check_stop(data: bytes, start: int, stop: int) -> None:
    want = twin_stop(data, start, stop)
    buf = np.frombuffer(data, dtype=np.uint8)
    for vector in (True, False):
        assert find_stop(buf, start, stop, vector) == want, (vector, data[max(start, 0) : stop], start, stop)
    if 0 <= start < len(data) and stop < len(data):  # a view ending at stop: the bytes after it are not read
        view = np.frombuffer(data, dtype=np.uint8)[: max(stop, 0)]
        assert find_stop(view, start, len(data), True) == twin_stop(data[: max(stop, 0)], start, len(data))


def test_the_twin_stops_at_the_kernel_bytes():
    assert set(STOP_BYTES) == set(STOPS)


@pytest.mark.parametrize("stop_byte", sorted(set(STOPS)))
def test_stop_at_every_position_of_two_vectors(stop_byte):
    """One stop byte at each position of a 70-byte number-like span, the span's ends around it."""
    for at in range(70):
        data = bytearray(b"0.0001234567890123456789e-05+" * 3)[:70]
        data[at] = stop_byte
        for start in (0, 1, at, at + 1):
            for stop in (at, at + 1, 32, 33, 64, 70):
                check_stop(bytes(data), start, stop)


NUMBER_BYTES = STOPS + b"0123456789.e-+x\x00\xff" * 4  # a stop byte about one in twelve


@settings(max_examples=examples(300))
@given(
    data=st.binary(max_size=150).map(lambda raw: bytes(NUMBER_BYTES[x % len(NUMBER_BYTES)] for x in raw)),
    bounds=st.data(),
)
def test_stop_matches_twin(data, bounds):
    start = bounds.draw(st.integers(-2, len(data) + 2))
    stop = bounds.draw(st.integers(-2, len(data) + 40))
    check_stop(data, start, stop)
