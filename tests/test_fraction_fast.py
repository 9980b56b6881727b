"""The parser's fast path for "0.ddd..." (``kernels.floats._fraction_fast``) against a plain twin.

Every attention weight a JavaScript capture holds is written ``0.`` + digits. The fast path reads
the 24 bytes after the point as three chunks and takes the digit run's length and value from
them, without a loop over the digits. Two things are checked here:

* the fast path itself, through ``fraction_fast``, against ``fraction_fast_twin`` (plain
  Python: the digit run, its integer, the reasons to decline) on hand-picked runs around the
  chunk edges and around 10**19, and on random ones (hypothesis);
* ``parse_value`` with room for the fast path (a long trailer) against ``json.loads``, bit for
  bit, and against itself without that room (the general path), for position and status too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import examples, float32_texts, float64_texts, js_number, reference_array, same_bits

SPAN = 26  # kernels.floats.FRACTION_SPAN, restated: the test fails if the kernel reads more or less
TRAILERS = [",", "]", " ,", "e-5", "E+2", "e0", ".5", "x", "\u00e9", ",0.25"]


def fraction_fast_twin(raw: bytes, p: int) -> tuple[bool, int, int, int]:
    """What the fast path must give for the number at raw[p:] (starting "0."): (ok, w, after, digits)."""
    assert raw[p : p + 2] == b"0."
    window = raw[p + 2 : p + SPAN]
    run = 0
    while run < len(window) and 48 <= window[run] <= 57:
        run += 1
    if run == 0 or run == len(window):  # no digit, or more than 23 in the window
        return False, 0, p, 0
    w = int(window[:run])
    if w >= 10**19:  # the general path hands such numbers to the reference
        return False, 0, p, 0
    if window[run] in b"eE":
        return False, 0, p, 0
    return True, w, p + 2 + run, run


def kernel_fraction_fast(raw: bytes, p: int = 0) -> tuple[bool, int, int, int]:
    from halo_fast.kernels.floats import fraction_fast

    buf = np.frombuffer(raw, dtype=np.uint8).copy()
    ok, w, after, digits = fraction_fast(buf, p, len(raw))
    return bool(ok), int(w), int(after), int(digits)


def padded(text: str, trailer: str) -> bytes:
    """text + trailer, then filler, so the fast path has its SPAN bytes after the number's start (after
    its sign: parse_value takes the fast path from there)."""
    raw = (text + trailer).encode()
    sign = len(text) - len(text.lstrip("-"))
    return raw + b"]" * max(0, sign + SPAN - len(raw))


def assert_twin(raw: bytes, p: int = 0) -> tuple[bool, int, int, int]:
    got = kernel_fraction_fast(raw, p)
    expected = fraction_fast_twin(raw, p)
    if expected[0]:
        assert got == expected, f"{raw!r}: {got} != {expected}"
    else:
        assert not got[0], f"{raw!r}: fast path took {got}, the twin declines"
    return got


def _hand_picked() -> list[str]:
    runs = []
    for n in range(1, 25):  # every run length in the window, and one past it
        runs += ["7" * n, "0" * (n - 1) + "3", "1" + "0" * (n - 1), "9" * n, ("1234567890" * 3)[:n], "0" * n]
    runs += [
        "9" * 19,  # 10**19 - 1: the largest the fast path takes
        "1" + "0" * 19,  # 10**19: handed on
        "18446744073709551615",  # 2**64 - 1
        "18446744073709551616",  # 2**64: would wrap in a uint64
        "0" * 4 + "9" * 19,  # 23 digits, value below 10**19
        "0" * 3 + "1" + "0" * 19,  # 23 digits, value 10**19
        "0008848331053741276",  # the JS shape
        "00044772765249945223",
        "99999999999999999999999",
    ]
    return runs


HAND_PICKED = _hand_picked()


@pytest.mark.parametrize("trailer", TRAILERS)
def test_fast_path_matches_twin_on_hand_picked_runs(trailer):
    for run in HAND_PICKED:
        assert_twin(padded("0." + run, trailer))


def test_fast_path_takes_the_js_shape():
    """The fast path is not allowed to decline what it exists for: JS's writing of float32 weights."""
    rng = np.random.default_rng(20261207)
    weights = rng.dirichlet(np.ones(400)).astype(np.float32)
    taken = 0
    for x in weights.tolist():
        text = js_number(x)
        if text.startswith("0.") and "e" not in text:
            ok, w, after, digits = assert_twin(padded(text, ","))
            assert ok, text
            taken += 1
    assert taken > 350


def test_fast_path_declines_what_it_cannot_read():
    assert not kernel_fraction_fast(b"0." + b"1" * 30)[0]  # 24 digits or more
    assert not kernel_fraction_fast(b"0.," + b"]" * 30)[0]  # no digit
    assert not kernel_fraction_fast(b"0.125e-3" + b"]" * 30)[0]  # an exponent follows
    assert not kernel_fraction_fast(b"0.125" + b"]" * 20)[0]  # fewer than SPAN bytes: no room
    assert kernel_fraction_fast(b"0.125" + b"]" * 21)[0]
    assert not kernel_fraction_fast(b"1.125" + b"]" * 30)[0]  # not "0."
    assert not kernel_fraction_fast(b"0,125" + b"]" * 30)[0]
    assert kernel_fraction_fast(b"[0.5" + b"]" * 30, 1) == (True, 5, 4, 1)


@settings(max_examples=examples(500))
@given(
    st.text("0123456789", min_size=0, max_size=26),
    st.sampled_from(TRAILERS),
    st.integers(0, 3),
)
def test_fast_path_matches_twin_on_random_runs(run, trailer, zeros):
    assert_twin(padded("0." + "0" * zeros + run, trailer))


# --------------------------------------------------------------------------- parse_value through the fast path


def parse(raw: bytes, end: int | None = None):
    from halo_fast.kernels.floats import parse_value

    buf = np.frombuffer(raw, dtype=np.uint8).copy()
    value, after, status = parse_value(buf, 0, len(raw) if end is None else end)
    return np.float32(value), int(after), int(status)


def assert_fast_and_general_agree(text: str, trailer: str) -> None:
    """parse_value with room for the fast path gives json.loads's float32, and what the general path gives.

    The general path's run: the same bytes with the end at the number's last byte, where the fast
    path, which reads SPAN bytes, cannot be taken (a number "0." + digits shorter than that has
    no room; a longer one has 24 digits or an exponent in the window, which the fast path declines).
    """
    from halo_fast.kernels.floats import HARD, OK

    raw = padded(text, trailer)
    size = len(text.encode())
    fast = parse(raw)
    general = parse(raw, size)
    assert fast[2] in (OK, HARD), f"{raw!r}: status {fast[2]}"
    assert fast[1] == size, f"{raw!r}: stopped at {fast[1]}"
    assert fast[1:] == general[1:], (text, fast, general)
    if fast[2] == OK:
        expected = reference_array([json.loads(text)])[0]
        assert same_bits(fast[0], expected), f"{text!r}: {fast[0]!r} != {expected!r}"
        assert same_bits(fast[0], general[0]), (text, fast, general)


@pytest.mark.parametrize("trailer", [",", "]", " ,", ".5"])
def test_parse_value_hand_picked(trailer):
    for run in HAND_PICKED:
        for sign in ["", "-"]:
            assert_fast_and_general_agree(sign + "0." + run, trailer)


@settings(max_examples=examples(500))
@given(
    st.one_of(float32_texts, float64_texts, st.floats(0, 1, width=32).map(js_number)), st.sampled_from([",", "]", " "])
)
def test_parse_value_random_numbers(text, trailer):
    assert_fast_and_general_agree(text, trailer)
