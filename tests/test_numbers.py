"""Every attention value is bit-identical to np.asarray(json.loads(text), dtype=np.float32).

Three levels: the number kernel (``parse_value``, hard numbers finished the way
json_values finishes them), the array kernel (``decode_array``), and whole files
through ``halo_fast.load`` (which also exercises the hard-number slots and re-runs).
"""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import halo_fast
from halo_fast.formats.json_single import load_json
from reference import (
    Num,
    bits,
    bump_last_digit,
    capture_doc,
    decimal_texts,
    exact_decimal,
    examples,
    float32_texts,
    float64_texts,
    js_number,
    number_texts,
    reference_array,
    reference_number,
    same_bits,
)

# --------------------------------------------------------------------------- kernels + reference finish


def kernel_number(text: str, trailer: str = "") -> np.float32:
    """parse_value on text (followed by trailer), hard numbers finished by the reference like json_values."""
    from halo_fast.kernels.floats import HARD, OK, parse_value

    raw = (text + trailer).encode()
    buf = np.frombuffer(raw, dtype=np.uint8).copy()
    value, after, status = parse_value(buf, 0, len(raw))
    assert status in (OK, HARD), f"{text!r}: status {status}"
    assert after == len(text.encode()), f"{text!r}: parse stopped at {after}, expected {len(text)}"
    if status == HARD:
        value = reference_array([json.loads(text)])[0]
    return np.float32(value)


def kernel_array(texts: list[str], sep: str = ",") -> np.ndarray:
    """decode_array over '[t0,t1,...]' with room for every hard number, finished by the reference."""
    from halo_fast.kernels.arrays import ARRAY_OK, decode_array

    raw = ("[" + sep.join(texts) + "]").encode()
    buf = np.frombuffer(raw, dtype=np.uint8).copy()
    out = np.full(len(texts) + 2, 12345.0, dtype=np.float32)
    hard = np.zeros((max(len(texts), 1), 3), dtype=np.int64)
    code, _position, parsed, n_hard = decode_array(buf, 0, len(raw) - 1, out, 1, len(texts), hard)
    assert code == ARRAY_OK and parsed == len(texts)
    assert out[0] == 12345.0 and out[-1] == 12345.0, "decode_array wrote outside its slice"
    for start, stop, index in hard[:n_hard].tolist():
        out[1 + index] = reference_array([json.loads(raw[start:stop])])[0]
    return out[1:-1]


def expected_number(text: str) -> np.float32:
    value = reference_number(text)
    assert not isinstance(value, Exception), f"corpus number {text!r} has no reference value: {value}"
    return value


def assert_same(text: str, got, expected) -> None:
    assert same_bits(got, expected), (
        f"{text[:80]!r}: got {np.float32(got)!r} (0x{int(bits(got)):08x}), "
        f"expected {np.float32(expected)!r} (0x{int(bits(expected)):08x})"
    )


# --------------------------------------------------------------------------- the fixed corpus of hard cases


def _f32_neighbours(x: np.float32) -> tuple[Fraction, Fraction]:
    with np.errstate(over="ignore"):
        up = np.nextafter(np.float32(x), np.float32(np.inf))
    high = Fraction(2**128) if np.isinf(up) else Fraction(float(up))
    return Fraction(float(x)), high


def _f64_neighbours(x: float) -> tuple[Fraction, Fraction]:
    with np.errstate(over="ignore"):
        up = float(np.nextafter(x, np.inf))
    high = Fraction(2**1024) if up == float("inf") else Fraction(up)
    return Fraction(x), high


def _midpoint_texts(low: Fraction, high: Fraction, cuts=(17, 20, 40, 45)) -> list[str]:
    mid = (low + high) / 2
    exact = exact_decimal(mid)
    out = [exact, bump_last_digit(exact, 1), bump_last_digit(exact, -1)]
    for n in cuts:
        cut = exact_decimal(mid, n)
        out += [cut, bump_last_digit(cut, 1), bump_last_digit(cut, -1)]
    return out


def _round_to_even_texts(rng: random.Random, n: int) -> list[str]:
    """Exact halfway points between adjacent doubles with at most 19 significant digits (Eisel-Lemire's
    round-to-even branch, q in [-4, 23]) -- and their neighbours one unit in the last digit away."""
    out = []
    while len(out) < n:
        s = rng.randint(-4, 60)
        if s >= 0:
            k = rng.randint(0, 26)
            low, high = (2**53) // 5**k + 1, (2**54 - 1) // 5**k
            if low > high:
                continue
            r = rng.randint(low, high) | 1
            if 5**k * r >= 2**54:
                continue
            value = 5**k * r * 2**s
            digits = str(value)
            stripped = digits.rstrip("0")
            if len(stripped) > 19:
                continue
            text = f"{stripped}e{len(digits) - len(stripped)}"
        else:
            o = rng.randint(2**53 + 1, 2**54 - 1) | 1
            digits = str(o * 5 ** (-s))
            if len(digits.rstrip("0")) > 19:
                continue
            text = digits[:s] + "." + digits[s:]
        out += [text, "-" + text]
        sci = exact_decimal(Fraction(text))
        out += [bump_last_digit(sci, 1), bump_last_digit(sci, -1)]
    return out


def hard_corpus() -> list[str]:
    rng = random.Random(20240601)
    corpus = [
        # zeros and signs: json gives int 0 for "-0" (-> +0.0) but float -0.0 for "-0.0"
        "0",
        "-0",
        "0.0",
        "-0.0",
        "0e0",
        "-0e-5",
        "0E+0",
        "-0.000e+00",
        "0.000000000000000000000000000000",
        # exponent spellings
        "1",
        "-1",
        "1.5",
        "1e-7",
        "1e-07",
        "1E-7",
        "1e+5",
        "1E+5",
        "1e+05",
        "1E05",
        "1e-0",
        "12e-0003",
        "1.2345678741455078e-7",
        "1.2345678741455078e-07",
        "0.0012345678918063641",
        "0.1",
        "0.30000000000000004",
        "1e0000000000000000000005",
        "1e-0000000000000000000005",
        "1e99999999999999999999",
        "1e-99999999999999999999",
        "0e99999999999999999999",
        "-0e-99999999999999999999",
        "1" + "0" * 400 + "e-400",
        "0." + "0" * 400 + "1e401",
        "-0." + "0" * 400 + "1e400",
        "0.0000000000000000000000000000001e31",
        "123456789012345678901234567890e-29",
        # float32 subnormals, their edges, the normal boundary
        "1.4e-45",
        "-1.4e-45",
        "1.401298464324817e-45",
        "7e-46",
        "7.006492321624085e-46",
        "7.006492321624086e-46",
        "-7.006492321624086e-46",
        "2.1019476964872256e-45",
        "1.1754942106924411e-38",
        "1.1754943508222875e-38",
        "1.1754942807573643e-38",
        "1.1754942807573644e-38",
        # float64 subnormal edges (all become a signed float32 zero, after double rounding)
        "2.4703282292062327e-324",
        "2.4703282292062328e-324",
        "-2.4703282292062327e-324",
        "4.9406564584124654e-324",
        "5e-324",
        "-5e-324",
        "2.2250738585072011e-308",
        "2.2250738585072012e-308",
        "2.2250738585072014e-308",
        "1e-400",
        "-1e-400",
        "1e-320",
        # float32 overflow boundary and float64 overflow
        "3.4028234663852886e38",
        "3.4028235e38",
        "3.4028235677973362e38",
        "3.4028235677973366e38",
        "3.4028235677973366e+38",
        "-3.4028235677973366e38",
        "3.402823567797337e38",
        "1e39",
        "-1e39",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        "1e308",
        "1e309",
        "1e400",
        "-1e400",
        # integers: exact, just past 2**53, past uint64, 19/20 digits
        "16777217",
        "16777216",
        "33554433",
        "999999999999999",
        "9007199254740992",
        "9007199254740993",
        "-9007199254740993",
        "9007199254740993.0",
        "9007199254740993e0",
        "9007199254740995",
        str(2**53 + 1),
        str(10**20),
        str(2**64),
        str(2**64 + 1),
        str(-(2**63)),
        str(2**63 - 1),
        "1152921573326323713",
        "1234567890123456789",
        "12345678901234567890",
        "99999999999999999999",
        str(10**38),
        str(2**128 - 2**103),
        str(2**128),
        str(10**300),
        # 19 vs 20 significant digits
        "0.1234567890123456789",
        "0.12345678901234567891",
        "1.000000000000000000",
        "1.0000000000000000001",
        "7.3177701707893310e+15",
        "1.00000005960464477550",
        "1.0000000596046448",
        "1.000000059604644775390625",
        "1.000000059604644775390626",
        "1.000000059604644775390624",
        "1.00000017881393432617187499",
        # long numbers: 800 digits and more
        "0." + "".join(rng.choice("0123456789") for _ in range(800)),
        "1." + "0" * 798 + "1",
        "9" * 400 + "." + "9" * 400 + "e-400",
        "-3.14159" + "".join(rng.choice("0123456789") for _ in range(800)) + "e-20",
        "0." + "0" * 800 + "1e790",
        "1" + "0" * 300 + "." + "0" * 500 + "1",
    ]
    float32_points = [
        np.float32(1.0),
        np.float32(1.5),
        np.float32(0.1),
        np.float32(1e-3),
        np.float32(123456.7),
        np.float32(1.4e-45),
        np.float32(2.8e-45),
        np.float32(1e-40),
        np.float32(1.1754942e-38),
        np.float32(1.1754944e-38),
        np.float32(3.4028233e38),
        np.float32(3.4028235e38),
        np.float32(16777216.0),
    ] + [np.float32(rng.uniform(-30, 30)) * np.float32(10.0) ** rng.randint(-40, 38) for _ in range(8)]
    for x in float32_points:
        if not np.isfinite(x) or x == 0:
            continue
        low, high = _f32_neighbours(abs(x))
        texts = _midpoint_texts(low, high)
        corpus += texts + ["-" + t for t in texts[:3]]
    float64_points = [
        1.0,
        0.1,
        1e300,
        5e-324,
        1e-310,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        9007199254740992.0,
        1e23,
        8.98846567431158e307,
    ] + [rng.uniform(1, 10) * 10.0 ** rng.randint(-300, 300) for _ in range(6)]
    for x in float64_points:
        low, high = _f64_neighbours(x)
        corpus += _midpoint_texts(low, high)
    corpus += _round_to_even_texts(rng, 120)
    return corpus


CORPUS = hard_corpus()
# numbers whose json value has no float32 (integers beyond float64): the reference raises
NO_FLOAT = ["1" + "0" * 400, "-" + "9" * 309, str(2**1024)]


def test_corpus_is_sane():
    assert len(CORPUS) > 400
    for text in CORPUS:
        json.loads(text)  # all valid JSON
        assert not isinstance(reference_number(text), Exception), text
    # the corpus really holds the cases it claims: ties that double rounding settles, both overflows
    assert bits(expected_number("1.000000059604644775390626")) == bits(np.float32(1.0))
    assert np.isinf(expected_number("3.4028235677973366e38"))
    assert expected_number("3.4028235677973362e38") == np.finfo(np.float32).max
    assert bits(expected_number("-0")) == 0 and bits(expected_number("-0.0")) == 0x80000000


@pytest.mark.parametrize("text", CORPUS, ids=[t if len(t) < 40 else t[:30] + f"..{len(t)}" for t in CORPUS])
def test_corpus_parse_value(text):
    assert_same(text, kernel_number(text), expected_number(text))
    assert_same(text, kernel_number(text, trailer="]"), expected_number(text))
    if not text.startswith("-"):
        assert_same("-" + text, kernel_number("-" + text), expected_number("-" + text))


def test_corpus_decode_array():
    got = kernel_array(CORPUS)
    expected = reference_array(json.loads("[" + ",".join(CORPUS) + "]"))
    for text, g, e in zip(CORPUS, got, expected):
        assert_same(text, g, e)


@pytest.mark.parametrize("window", [None, 7, 4096])
@pytest.mark.parametrize("per_token", [1, 9, 50, len(CORPUS)])
def test_corpus_through_load(scratch, window, per_token):
    """Whole files: many hard numbers per token (more than the kernel's hard-number slots) and few."""
    chunks = [CORPUS[i : i + per_token] for i in range(0, len(CORPUS), per_token)]
    doc = capture_doc([[Num(t) for t in chunk] for chunk in chunks])
    path = scratch(doc, "python")
    cap = halo_fast.load(path) if window is None else load_json(path, window_bytes=window)
    with open(path, "rb") as f:
        text = f.read()
    reference = json.loads(text)
    for i, token in enumerate(reference["generated_tokens"]):
        expected = reference_array(token["attention"]["data"])
        got = cap.attention(i).ravel()
        for t, g, e in zip(chunks[i], got, expected):
            assert_same(t, g, e)


def _digit_block_texts() -> list[str]:
    """Numbers around the parser's eight-byte digit blocks: integer and fraction lengths either side of
    8, 16, 19 and 20 digits, leading zeros, exponents right after the digits."""
    rng = random.Random(20261128)

    def digits(n: int, first: str = "123456789") -> str:
        return "".join(rng.choice(first if i == 0 else "0123456789") for i in range(n))

    lengths = [1, 2, 3, 7, 8, 9, 10, 11, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 31]
    out = []
    for n in lengths:
        for whole in ["0", "7", digits(3), digits(8), digits(11), digits(12), digits(17), digits(19)]:
            fraction = digits(n, "0123456789")
            out += [f"{whole}.{fraction}{exponent}" for exponent in ["", "e-5", "E+2", "e0", "e-300"]]
        out += [
            digits(n),
            "9" * n,
            "1" + "0" * (n - 1),
            "0." + "9" * n,
            "0." + "0" * n + "1",
            "0." + "0" * n,
            "0." + "0" * n + digits(17),
            "-0." + "0" * n + digits(16) + "e3",
        ]
    return out + [
        "-0.0",
        "-0.00000000",
        "-0.000000000000000000000",
        "0.0000000000000000",
        "-0.0e5",
        "0.0012345678901234567",
        "0.00123456789012345678",
        "0.001234567890123456",
        "999999999999999999.9",
        "1844674407370955161.5",
        "1000000000000000000.5",
        "99999999999.99999999",
        "0.125",
        "1e-5",
    ]


DIGIT_BLOCK_TEXTS = _digit_block_texts()


def test_digit_blocks():
    """Each number alone in its buffer (ending exactly at the end), before ']' or ',', before a non-ASCII
    byte, and all of them in one array."""
    for text in DIGIT_BLOCK_TEXTS:
        expected = expected_number(text)
        for trailer in ["", "]", ",0.5]", " é", "é"]:
            assert_same(text + repr(trailer), kernel_number(text, trailer=trailer), expected)
    got = kernel_array(DIGIT_BLOCK_TEXTS)
    expected = reference_array(json.loads("[" + ",".join(DIGIT_BLOCK_TEXTS) + "]"))
    for text, g, e in zip(DIGIT_BLOCK_TEXTS, got, expected):
        assert_same(text, g, e)


def test_power_of_five_table():
    """Entry q holds the 128 leading bits of 5**q (for q < 0 rounded up by at most one unit), top bit set."""
    from halo_fast.kernels.pow5 import LARGEST_POWER, SMALLEST_POWER, build_table

    high, low = build_table()
    for i, q in enumerate(range(SMALLEST_POWER, LARGEST_POWER + 1)):
        entry = (int(high[i]) << 64) | int(low[i])
        power = Fraction(5) ** q
        shift = 127 - (power.numerator.bit_length() - power.denominator.bit_length())  # within one of the answer
        while power * Fraction(2) ** shift < 2**127:
            shift += 1
        while power * Fraction(2) ** shift >= 2**128:
            shift -= 1
        leading = int(power * Fraction(2) ** shift)  # floor
        assert entry >> 127 == 1, q
        if q >= 0:
            assert entry == leading, q
        else:
            assert leading <= entry <= leading + 1, q


def test_literals():
    for text, expected in [("null", np.nan), ("NaN", np.nan), ("Infinity", np.inf), ("-Infinity", -np.inf)]:
        assert_same(text, kernel_number(text), expected_number(text))
        assert_same(text, kernel_number(text), np.float32(expected))
    assert same_bits(
        kernel_array(["null", "NaN", "Infinity", "-Infinity", "1"]),
        reference_array([None, float("nan"), float("inf"), float("-inf"), 1]),
    )


def test_negative_zero_follows_json():
    # json.loads("-0") is the int 0 (-> +0.0); "-0.0", "-0e0", "-0E-5" are floats (-> -0.0)
    assert bits(kernel_number("-0")) == 0
    for text in ["-0.0", "-0e0", "-0E-5", "-0.000", "-0e+99", "-1e-400", "-2.4703282292062327e-324"]:
        assert bits(kernel_number(text)) == 0x80000000, text


@pytest.mark.parametrize("text", NO_FLOAT)
def test_integer_beyond_float64_is_capture_error(scratch, text):
    """np.asarray(json.loads(t), float32) raises for such integers, so the decoder must refuse (CaptureError)."""
    assert isinstance(reference_number(text), Exception)
    doc = capture_doc([[Num("0.5"), Num(text), Num("0.25")]], first_step=11)
    path = scratch(doc, "compact")
    raw = Path(path).read_bytes()
    with pytest.raises(halo_fast.CaptureError) as info:
        halo_fast.load(path)
    assert info.value.step == 11
    at = raw.index(text.encode())
    assert info.value.offset is not None and abs(info.value.offset - at) <= 8


# --------------------------------------------------------------------------- property tests


@settings(max_examples=examples(300))
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_round_trip(x):
    """A float32 written as Python or JS writes its double comes back as the same float32."""
    for text in (repr(float(x)), js_number(float(x))):
        got = kernel_number(text)
        assert_same(text, got, expected_number(text))
        assert_same(text, got, np.float32(abs(x)) if text == "0" else np.float32(x))  # JS writes -0 as 0


@settings(max_examples=examples(300))
@given(float32_texts)
def test_float32_texts(text):
    assert_same(text, kernel_number(text), expected_number(text))


@settings(max_examples=examples(300))
@given(float64_texts)
def test_float64_texts(text):
    assert_same(text, kernel_number(text), expected_number(text))


@settings(max_examples=examples(500))
@given(decimal_texts())
def test_decimal_grammar(text):
    assert_same(text, kernel_number(text), expected_number(text))


@st.composite
def float64_midpoints(draw):
    """Exact halfway points between adjacent doubles (and float32s), exact or cut, nudged one digit."""
    if draw(st.booleans()):
        x = draw(st.floats(min_value=5e-324, max_value=1.7976931348623157e308))
        low, high = _f64_neighbours(x)
    else:
        x = draw(st.floats(min_value=float(np.float32(1.4e-45)), max_value=3.4028234663852886e38, width=32))
        low, high = _f32_neighbours(np.float32(x))
    mid = (low + high) / 2
    cut = draw(st.one_of(st.none(), st.integers(16, 50)))
    text = exact_decimal(mid, cut)
    delta = draw(st.sampled_from([0, 1, -1]))
    return bump_last_digit(text, delta) if delta else text


@settings(max_examples=examples(200))
@given(float64_midpoints())
def test_midpoints(text):
    assert_same(text, kernel_number(text), expected_number(text))


@settings(max_examples=examples(100))
@given(st.lists(number_texts, min_size=1, max_size=40), st.sampled_from([",", ", ", " ,\n", ",\r\n\t"]))
def test_decode_array_matches_reference(texts, sep):
    got = kernel_array(texts, sep)
    expected = reference_array(json.loads("[" + ",".join(texts) + "]"))
    assert same_bits(got, expected), texts


@settings(max_examples=examples(100))
@given(
    st.lists(st.lists(number_texts, max_size=30), min_size=1, max_size=4),
    st.sampled_from(["compact", "python", "indent2", "random"]),
    st.integers(0, 2**32),
)
def test_numbers_through_load(scratch, chunks, style, seed):
    doc = capture_doc([[Num(t) for t in chunk] for chunk in chunks])
    path = scratch(doc, style, random.Random(seed))
    cap = halo_fast.load(path)
    for i, chunk in enumerate(chunks):
        expected = reference_array(json.loads("[" + ",".join(chunk) + "]"))
        assert same_bits(cap.attention(i).ravel(), expected), chunk


# --------------------------------------------------------------------------- float32_shortcut: one multiply, checked


def shortcut_twin(w: int, q: int) -> tuple[bool, float]:
    """float32_shortcut in plain Python: the same multiply and the same checks on the product's bits."""
    import struct

    from halo_fast.kernels import floats

    if q < floats.SHORTCUT_MIN_Q or q > floats.SHORTCUT_MAX_Q or w >= 2**63:
        return False, float("nan")
    value = float(w) * float(floats.POW10_NEAREST[q - floats.SHORTCUT_MIN_Q])
    (pattern,) = struct.unpack("<Q", struct.pack("<d", value))
    exponent = pattern >> 52
    if not floats.SHORTCUT_MIN_EXPONENT <= exponent <= floats.SHORTCUT_MAX_EXPONENT:
        return False, float("nan")
    if abs((pattern & (2**29 - 1)) - 2**28) <= floats.SHORTCUT_MARGIN:
        return False, float("nan")
    return True, float(np.float32(value))


def exact_float32(w: int, q: int) -> np.float32:
    """What json.loads + float32 give for w * 10**q: Python's float() of a Fraction is correctly rounded."""
    return np.float32(float(Fraction(w) * Fraction(10) ** q))


def assert_shortcut(w: int, q: int) -> bool:
    """The kernel equals its twin (decision and bits), and where it answers, the exact float32; returns ok."""
    from halo_fast.kernels.floats import float32_shortcut

    ok, value = float32_shortcut(np.uint64(w), q)
    twin_ok, twin_value = shortcut_twin(w, q)
    assert ok == twin_ok, (w, q)
    if ok:
        assert bits(value) == bits(np.float32(twin_value)), (w, q)
        assert bits(value) == bits(exact_float32(w, q)), (w, q)
    return ok


def test_pow10_nearest_is_correctly_rounded():
    from halo_fast.kernels import floats

    for i, q in enumerate(range(floats.SHORTCUT_MIN_Q, floats.SHORTCUT_MAX_Q + 1)):
        table = Fraction(float(floats.POW10_NEAREST[i]))
        exact = Fraction(10) ** q
        assert abs(table - exact) <= abs(Fraction(float(np.nextafter(float(table), np.inf))) - table) / 2, q


def _doubles_around_float32_midpoints(rng: random.Random, n: int, spread: int) -> list[float]:
    """Doubles at and within ``spread`` ulps of the midpoint between two float32 neighbours."""
    out = []
    for _ in range(n):
        x = np.float32(rng.uniform(1, 2)) * np.float32(2.0) ** rng.randint(-120, 120)
        low, high = _f32_neighbours(x)
        middle = float((low + high) / 2)  # exact: 25 significant bits
        out.append(middle)
        for k in range(1, spread + 1):
            out += [middle + k * np.spacing(middle), middle - k * np.spacing(middle)]
    return out


def test_shortcut_declines_next_to_float32_midpoints_and_is_exact_elsewhere():
    """19-, 18- and 17-digit decimals of doubles at and around float32 midpoints: the kernel declines
    where the product may lie on the other side of one, and every number parses to the reference."""
    rng = random.Random(7)
    declined = answered = 0
    for double in _doubles_around_float32_midpoints(rng, 150, 40):
        for digits in (19, 18, 17):
            text = f"{double:.{digits - 1}e}"
            mantissa, exponent = text.split("e")
            w = int(mantissa.replace(".", ""))
            q = int(exponent) - (digits - 1)
            if assert_shortcut(w, q):
                answered += 1
            else:
                declined += 1
            assert_same(text, kernel_number(text), expected_number(text))
    assert declined > 1000 and answered > 1000, (declined, answered)


def test_shortcut_bounds():
    """Outside its table, at or past 2**63, and outside the float32 normals it declines; just inside, it answers."""
    from halo_fast.kernels import floats

    for w, q in [(1, floats.SHORTCUT_MIN_Q - 1), (1, floats.SHORTCUT_MAX_Q + 1), (2**63, -20), (2**64 - 1, -30)]:
        assert not assert_shortcut(w, q)
    assert not assert_shortcut(1234567890123456789, -18 - 38 - 1)  # 1.2e-38: at the float32 normal boundary
    assert not assert_shortcut(3402823466385288598, 38 - 18)  # 3.4e38: past the exponent kept
    assert assert_shortcut(1234567890123456789, -18 - 30)  # 1.2e-30
    assert assert_shortcut(2**63 - 1, -18)


@settings(max_examples=examples(2000))
@given(st.integers(1, 2**64 - 1), st.integers(-90, 30))
def test_shortcut_matches_twin_and_exact(w, q):
    assert_shortcut(w, q)


@settings(max_examples=examples(500))
@given(st.floats(min_value=1e-37, max_value=1e37), st.integers(16, 19))
def test_shortcut_on_js_like_numbers(x, digits):
    """Doubles written with 16-19 significant digits, as JS and Python write attention values."""
    text = f"{x:.{digits - 1}e}"
    mantissa, exponent = text.split("e")
    assert_shortcut(int(mantissa.replace(".", "")), int(exponent) - (digits - 1))
    assert_same(text, kernel_number(text), expected_number(text))


@settings(max_examples=examples(2000))
@given(st.integers(1, 2**64 - 1), st.integers(-360, 320))
def test_eisel_lemire_alone_is_exact(w, q):
    """Eisel-Lemire, which now sees only what float32_shortcut declines, on its own: the correctly
    rounded double of w * 10**q whenever it answers, over its whole range of powers."""
    from halo_fast.kernels.floats import eisel_lemire

    ok, value = eisel_lemire(np.uint64(w), q)
    if ok:
        exact = Fraction(w) * Fraction(10) ** q
        try:
            expected = float(exact)
        except OverflowError:  # beyond the largest double's rounding range
            expected = float("inf")
        assert value == expected, (w, q, value, expected)
