"""Naive twins and writers for the decoder tests.

* The reference decoder is ``json.loads`` + ``np.asarray(..., dtype=np.float32)``:
  whatever it says about a capture text is, by definition, right.
* ``dumps`` writes a capture (any JSON value) in the styles real writers use --
  ``JSON.stringify`` (compact), Python's ``json.dump`` (``", "``/``": "``,
  ``indent=2``), CRLF and tab indents -- plus a ``random`` style that puts any
  JSON whitespace between any two tokens and escapes string characters at random.
  Numbers can be given as :class:`Num` to be written verbatim (``1.2345e-7``,
  ``-0``, ``1E+05``, 800-digit decimals ...).
* Number text generators (hypothesis strategies) shared by the test modules.

Nothing here imports halo_fast: the twins must not share code with the thing tested.
"""

from __future__ import annotations

import json
import math
import os
import random
import warnings
from decimal import Decimal
from fractions import Fraction

import numpy as np
from hypothesis import strategies as st

EXAMPLES_SCALE = float(os.environ.get("HALO_TEST_EXAMPLES_SCALE", "1"))


def examples(n: int) -> int:
    """Hypothesis example budget for one test; HALO_TEST_EXAMPLES_SCALE=20 for a long fuzzing run."""
    return max(1, int(n * EXAMPLES_SCALE))


# --------------------------------------------------------------------------- writing


class Num(str):
    """A JSON number (or NaN/Infinity/null literal) written exactly as given."""


JSON_WHITESPACE = (" ", "\n", "\r\n", "\t", "\r", "  ", "\n  ", " \t\r\n ")
SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
STYLES = ("compact", "python", "indent2", "indent2_crlf", "tabs", "spaced", "random")


def float_text(x: float) -> str:
    """A Python float as Python's json writes it (NaN, Infinity, repr)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


def js_number(x: float) -> str:
    """``String(x)`` in JavaScript for a finite double: shortest digits, JS exponent rules.

    JS uses plain notation for 1e-7 < |x| < 1e21 and ``d.ddde-7`` / ``de+21`` otherwise,
    with no leading zeros in the exponent. ``-0`` is written ``0`` (as JSON.stringify does).
    """
    if x == 0:
        return "0"
    if x < 0:
        return "-" + js_number(-x)
    _sign, digit_tuple, exponent = Decimal(repr(x)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    exponent += len("".join(map(str, digit_tuple))) - len(digits)
    k = len(digits)
    n = exponent + k  # value = 0.DIGITS * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"


def _escape_char(ch: str, mode: str, rng: random.Random | None) -> str:
    code = ord(ch)
    must = ch in '"\\' or code < 0x20 or 0xD800 <= code <= 0xDFFF
    if mode == "ascii":
        choice = "short" if ch in SHORT_ESCAPES else ("u" if (must or code > 0x7E) else "raw")
    elif mode == "raw":
        choice = "short" if ch in SHORT_ESCAPES else ("u" if must else "raw")
    else:  # random
        options = ["u"]
        if not must:
            options += ["raw", "raw", "raw"]
        if ch in SHORT_ESCAPES:
            options += ["short", "short"]
        if ch == "/":
            options.append("slash")
        choice = rng.choice(options)
    if choice == "raw":
        return ch
    if choice == "short":
        return SHORT_ESCAPES[ch]
    if choice == "slash":
        return "\\/"
    if code > 0xFFFF:  # surrogate pair
        v = code - 0x10000
        hi, lo = 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF)
        return _u(hi, rng) + _u(lo, rng)
    return _u(code, rng)


def _u(code: int, rng: random.Random | None) -> str:
    text = f"\\u{code:04x}"
    if rng is not None and rng.random() < 0.5:
        text = f"\\u{code:04X}"
    return text


def encode_string(s: str, mode: str = "ascii", rng: random.Random | None = None) -> str:
    """A JSON string literal for s: ``ascii`` (json.dumps), ``raw`` (ensure_ascii=False) or ``random``."""
    return '"' + "".join(_escape_char(ch, mode, rng) for ch in s) + '"'


class _Writer:
    def __init__(self, style: str, rng: random.Random | None):
        if style not in STYLES:
            raise ValueError(style)
        self.style = style
        self.rng = rng if rng is not None else random.Random(0)
        self.parts: list[str] = []
        self.newline = "\r\n" if style == "indent2_crlf" else "\n"
        self.unit = {"indent2": "  ", "indent2_crlf": "  ", "tabs": "\t"}.get(style)

    def ws(self) -> str:
        if self.style != "random" or self.rng.random() < 0.5:
            return ""
        return self.rng.choice(JSON_WHITESPACE)

    def string(self, s: str) -> str:
        if self.style == "random":
            return encode_string(s, "random", self.rng)
        if self.style in ("python", "indent2", "tabs"):
            return encode_string(s, "ascii")
        return encode_string(s, "raw")

    def scalar(self, value) -> str:
        if isinstance(value, Num):
            return str(value)
        if value is None:
            return "null"
        if value is True:
            return "true"
        if value is False:
            return "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return float_text(value)
        if isinstance(value, str):
            return self.string(value)
        raise TypeError(type(value))

    def item_sep(self, depth: int) -> str:
        if self.unit is not None:
            return "," + self.newline + self.unit * depth
        if self.style in ("python", "spaced"):
            return ", "
        return self.ws() + "," + self.ws()

    def key_sep(self) -> str:
        if self.style in ("python", "indent2", "indent2_crlf", "tabs", "spaced"):
            return ": " if self.style != "spaced" else " : "
        return self.ws() + ":" + self.ws()

    def open(self, bracket: str, depth: int) -> str:
        if self.unit is not None:
            return bracket + self.newline + self.unit * depth
        if self.style == "spaced":
            return bracket + " "
        return bracket + self.ws()

    def close(self, bracket: str, depth: int) -> str:
        if self.unit is not None:
            return self.newline + self.unit * depth + bracket
        if self.style == "spaced":
            return " " + bracket
        return self.ws() + bracket

    def write(self, value, depth: int = 0) -> None:
        out = self.parts
        if isinstance(value, dict):
            if not value:
                out.append("{" + self.ws() + "}")
                return
            out.append(self.open("{", depth + 1))
            for i, (key, item) in enumerate(value.items()):
                if i:
                    out.append(self.item_sep(depth + 1))
                out.append(key.text if isinstance(key, RawKey) else self.string(key))
                out.append(self.key_sep())
                self.write(item, depth + 1)
            out.append(self.close("}", depth))
        elif isinstance(value, (list, tuple)):
            if not value:
                out.append("[" + self.ws() + "]")
                return
            out.append(self.open("[", depth + 1))
            for i, item in enumerate(value):
                if i:
                    out.append(self.item_sep(depth + 1))
                self.write(item, depth + 1)
            out.append(self.close("]", depth))
        else:
            out.append(self.scalar(value))


class RawKey(str):
    """A key whose JSON spelling is given (``RawKey("data", '"d\\u0061ta"')``); equal to the plain key."""

    def __new__(cls, key: str, text: str):
        obj = super().__new__(cls, key)
        obj.text = text
        return obj


def dumps(value, style: str = "compact", rng: random.Random | None = None) -> str:
    """Serialise value in a writer's style (see module docstring); Num written verbatim."""
    writer = _Writer(style, rng)
    if style == "random":
        writer.parts.append(writer.ws())
    writer.write(value)
    if style == "random":
        writer.parts.append(writer.ws())
    return "".join(writer.parts)


def write_text(path, text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


# --------------------------------------------------------------------------- the reference


def reference_array(values) -> np.ndarray:
    """np.asarray(values, float32) -- the contract's definition of every attention value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(values, dtype=np.float32)


def reference_number(text: str):
    """float32 of one JSON number text, or the exception the reference raises for it."""
    try:
        return reference_array([json.loads(text)])[0]
    except (OverflowError, ValueError) as exc:  # e.g. a 400-digit integer: no float32 exists
        return exc


def bits(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def same_bits(a, b) -> bool:
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    return a.shape == b.shape and bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))


def json_identical(a, b) -> bool:
    """Equal as json.loads results: same types (int vs float vs bool), floats bit-equal or both NaN,
    dict keys in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(json_identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(json_identical(x, y) for x, y in zip(a, b))
    return a == b


def reference_capture(text: str | bytes) -> dict:
    """Everything a Capture holds, decoded the slow, obvious way from json.loads."""
    doc = json.loads(text)
    tokens = doc["generated_tokens"]
    attention = []
    for token in tokens:
        att = token.get("attention")
        if att is None or att.get("data") is None:
            attention.append(None)
            continue
        attention.append(reference_array(att["data"]).reshape(att["shape"]))
    return {"doc": doc, "attention": attention}


PROMPT_FIELDS = ("token_id", "text", "position", "turn_id", "sentence_id", "message_role")
TOKEN_FIELDS = ("step", "token_id", "text", "position", "timestamp")


def prompt_field(record: dict, name: str):
    if name == "message_role" and name not in record:
        return record.get("role")
    return record.get(name)


def _assert_column(column: np.ndarray, expected: list, what: str) -> None:
    """Column equals the json values where the field is present (how a missing field is filled is not
    part of the contract); numbers stay numbers, text stays text."""
    assert len(column) == len(expected), what
    got = column.tolist()
    for i, (g, e) in enumerate(zip(got, expected)):
        if e is None:
            continue
        same = g == e or (isinstance(g, float) and isinstance(e, float) and math.isnan(g) and math.isnan(e))
        # exact comparison: an int column must hold json's int, a float column json's number (100 == 100.0,
        # but 2**53 + 1 != float(2**53 + 1)); text stays text, numbers stay numbers
        assert same and isinstance(g, str) == isinstance(e, str), f"{what}: row {i} is {g!r}, json says {e!r}"


def assert_capture_matches(cap, text: str | bytes, context: str = "") -> None:
    """Every field of cap equals what the reference reads from text (bit-exact attention)."""
    ref = reference_capture(text)
    doc = ref["doc"]
    where = f" [{context}]" if context else ""
    assert json_identical(cap.metadata, doc.get("metadata", {})), f"metadata differs{where}"
    prompt = doc.get("prompt_tokens", [])
    assert len(cap.prompt_tokens) == len(prompt), where
    for name in PROMPT_FIELDS:
        expected = [prompt_field(r, name) for r in prompt]
        column = cap.prompt_tokens[name]
        assert isinstance(column, np.ndarray), f"prompt column {name} is not an ndarray{where}"
        _assert_column(column, expected, f"prompt column {name}{where}")
    tokens = doc["generated_tokens"]
    assert len(cap) == len(tokens), where
    assert len(cap.tokens) == len(tokens), where
    for name in TOKEN_FIELDS:
        expected = [t.get(name) for t in tokens]
        column = cap.tokens[name]
        assert isinstance(column, np.ndarray), f"token column {name} is not an ndarray{where}"
        _assert_column(column, expected, f"token column {name}{where}")
    has = [a is not None for a in ref["attention"]]
    assert cap.tokens["has_attention"].tolist() == has, f"has_attention{where}"
    for i, expected in enumerate(ref["attention"]):
        got = cap.attention(i)
        if expected is None:
            assert got is None, f"token {i} should have no attention{where}"
            continue
        assert got is not None, f"token {i} lost its attention{where}"
        assert got.dtype == np.float32
        assert got.shape == expected.shape, f"token {i} shape {got.shape} != {expected.shape}{where}"
        if not same_bits(got, expected):
            bad = np.flatnonzero(bits(got).ravel() != bits(expected).ravel())[:5]
            raise AssertionError(
                f"token {i} attention differs at flat indices {bad.tolist()}: got "
                f"{got.ravel()[bad].tolist()} expected {expected.ravel()[bad].tolist()}{where}"
            )
        assert cap.tokens["context_length"][i] == expected.shape[2], f"token {i} context_length{where}"


# --------------------------------------------------------------------------- number texts


def exact_decimal(value: Fraction, digits: int | None = None) -> str:
    """Scientific text of a dyadic fraction: exact (digits None) or cut to `digits` significant digits."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    value = abs(value)
    k = 0
    while value.denominator != 1:
        if k > 5000:
            raise ValueError("not a terminating decimal")
        value *= 10
        k += 1
    text = str(value.numerator)  # value_original = numerator * 10**-k
    exponent = len(text) - 1 - k
    if digits is not None:
        text = text[:digits]
    text = text.rstrip("0") or "0"
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    return f"{sign}{mantissa}e{exponent}"


def bump_last_digit(text: str, delta: int) -> str:
    """Add delta (+1/-1) to the last mantissa digit of a scientific text 'd.ddde±x' (digits stay digits)."""
    mantissa, _, exponent = text.partition("e")
    sign = ""
    if mantissa.startswith("-"):
        sign, mantissa = "-", mantissa[1:]
    digits = mantissa.replace(".", "")
    point = mantissa.find(".")
    n = int(digits) + delta
    if n <= 0:
        return text
    new = str(n).zfill(len(digits))
    if len(new) > len(digits):  # 999 -> 1000: keep the value, shift the exponent
        new = new[:-1]
        exponent = str(int(exponent) + 1)
    mantissa = new if point < 0 else new[:point] + "." + new[point:]
    return f"{sign}{mantissa}e{exponent}"


finite_float32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
finite_float64 = st.floats(allow_nan=False, allow_infinity=False)

float32_texts = st.one_of(
    finite_float32.map(lambda x: repr(float(x))),
    finite_float32.map(lambda x: js_number(float(x))),
    finite_float32.map(lambda x: np.format_float_scientific(np.float32(x), unique=True, trim="-")),
)
float64_texts = st.one_of(finite_float64.map(repr), finite_float64.map(js_number))

_digit_runs = st.one_of(
    st.text(alphabet="0123456789", min_size=1, max_size=40),
    st.text(alphabet="09", min_size=1, max_size=40),
    st.text(alphabet="0", min_size=1, max_size=30).map(lambda s: s + "1"),
    st.text(alphabet="49", min_size=1, max_size=40),
    st.sampled_from(["5", "50000000000000000001", "49999999999999999999", "0000000000000000000000001"]),
)


@st.composite
def decimal_texts(draw) -> str:
    """Any valid JSON number: sign, int part, optional fraction (1-40 digits), optional exponent."""
    sign = draw(st.sampled_from(["", "-"]))
    if draw(st.booleans()):
        integer = "0"
    else:
        integer = draw(st.sampled_from("123456789")) + draw(
            st.one_of(st.just(""), st.text(alphabet="0123456789", max_size=25), st.text(alphabet="0", max_size=25))
        )
    fraction = draw(st.one_of(st.just(""), _digit_runs.map(lambda d: "." + d[:40])))
    exponent = ""
    if draw(st.booleans()):
        exponent = (
            draw(st.sampled_from("eE"))
            + draw(st.sampled_from(["", "+", "-"]))
            + draw(st.one_of(st.text(alphabet="0123456789", min_size=1, max_size=4), st.integers(0, 400).map(str)))
        )
    return sign + integer + fraction + exponent


literal_texts = st.sampled_from(["null", "NaN", "Infinity", "-Infinity"])

number_texts = st.one_of(float32_texts, float32_texts, float64_texts, decimal_texts(), literal_texts)


# --------------------------------------------------------------------------- capture documents


def capture_doc(
    attention_values, *, layers: int = 1, heads: int = 1, first_step: int = 0, metadata=None, prompt=None
) -> dict:
    """A capture dict: one generated token per entry of attention_values (a flat list, or None)."""
    if prompt is None:
        prompt = [
            {
                "token_id": 100 + i,
                "text": f"p{i}",
                "position": i,
                "turn_id": 0,
                "message_role": "user",
                "sentence_id": i // 2,
            }
            for i in range(3)
        ]
    tokens = []
    for i, values in enumerate(attention_values):
        token = {
            "step": first_step + i,
            "token_id": 1000 + i,
            "text": f" t{i}",
            "position": len(prompt) + i,
            "timestamp": 1763681850123 + i,
        }
        if values is None:
            token["attention"] = None
        else:
            ctx = len(values) // (layers * heads)
            token["attention"] = {"shape": [layers, heads, ctx], "context_length": ctx, "data": list(values)}
        tokens.append(token)
    return {
        "metadata": metadata if metadata is not None else {"timestamp": 1763681849744, "model": "test-model"},
        "prompt_tokens": prompt,
        "generated_tokens": tokens,
    }


TRICKY_TEXTS = [
    '"data":[',
    '"data":[1,2]',
    "]",
    "}",
    "[",
    "{",
    '\\"',
    "\\",
    '"',
    "/",
    ":",
    ",",
    "'",
    '{"attention":{"data":[1]}}',
    '"generated_tokens":[{',
    "\\u0041",
    "\\n",
    "é",
    "😀",
    "\u2028",
    "\x00",
    "\x1f",
    "\n",
    "\r\n",
    "\t",
    "\u00e9\u20ac\U0001f600",
    "data",
    "attention",
]
texts = st.one_of(
    st.text(max_size=8),
    st.sampled_from(TRICKY_TEXTS),
    st.lists(st.sampled_from(TRICKY_TEXTS), max_size=4).map("".join),
)
# lone surrogates: json.loads accepts "\ud800"; only usable as \u escapes
texts_with_surrogates = st.one_of(texts, st.sampled_from(["\ud800", "a\udfffb", "\udc00\ud83d"]))

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), texts_with_surrogates)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=8,
)
# values that look like attention in the wrong place
DECOYS = [
    {"data": [1, 2, 3]},
    {"data": [[1], "x"]},
    {"attention": {"shape": [1, 1, 1], "context_length": 1, "data": [9]}},
    {"generated_tokens": [{"attention": {"data": [1]}}]},
    [{"data": [5]}],
    '"data":[1]',
    {RawKey("data", '"d\\u0061ta"'): [1, 2]},
]
extra_values = st.one_of(json_values, st.sampled_from(DECOYS))


def _extras(draw, reserved):
    keys = draw(
        st.lists(
            st.one_of(
                texts,
                st.sampled_from(
                    ["data", "attention", "shape", "step", "dat", "Data", "generated_tokens", "metadata", "role"]
                ),
            ),
            max_size=2,
            unique=True,
        )
    )
    return {k: draw(extra_values) for k in keys if k not in reserved}


def _shuffled(draw, mapping: dict) -> dict:
    keys = draw(st.permutations(list(mapping)))
    return {k: mapping[k] for k in keys}


ROOT_KEYS = {"metadata", "prompt_tokens", "generated_tokens"}
TOKEN_KEYS = {"step", "token_id", "text", "position", "timestamp", "attention"}
ATTENTION_KEYS = {"shape", "context_length", "data"}
PROMPT_KEYS = {"token_id", "text", "position", "turn_id", "message_role", "sentence_id", "role"}


@st.composite
def capture_documents(draw, max_tokens: int = 4, max_ctx: int = 6, numbers=None):
    """A random capture dict: layers/heads 1-3, ragged contexts, shuffled keys, decoys and odd texts."""
    numbers = number_texts if numbers is None else numbers
    layers = draw(st.integers(1, 3))
    heads = draw(st.integers(1, 3))
    extras = draw(st.booleans())
    prompt = []
    for i in range(draw(st.integers(0, 4))):
        record = {
            "token_id": draw(st.integers(0, 200_000)),
            "text": draw(texts_with_surrogates),
            "position": i,
            "turn_id": draw(st.integers(0, 3)),
            draw(st.sampled_from(["message_role", "role"])): draw(st.sampled_from(["system", "user", "assistant"])),
            "sentence_id": draw(st.integers(0, 5)),
        }
        if extras:
            record.update(_extras(draw, PROMPT_KEYS))
        prompt.append(_shuffled(draw, record))
    tokens = []
    first_step = draw(st.integers(0, 3))
    for i in range(draw(st.integers(0, max_tokens))):
        ctx = draw(st.integers(0, max_ctx))
        if (i == 0 and draw(st.booleans())) or draw(st.integers(0, 9)) == 0:
            attention = None
        else:
            n = layers * heads * ctx
            data = [Num(t) for t in draw(st.lists(numbers, min_size=n, max_size=n))]
            data_key = draw(st.sampled_from(["data", "data", RawKey("data", '"d\\u0061ta"')]))
            attention = {"shape": [layers, heads, ctx], "context_length": ctx, data_key: data}
            if extras:
                attention.update(_extras(draw, ATTENTION_KEYS))
            attention = _shuffled(draw, attention)
        token = {
            "step": first_step + i,
            "token_id": draw(st.integers(0, 200_000)),
            "text": draw(texts_with_surrogates),
            "position": len(prompt) + i,
            "timestamp": draw(st.integers(0, 2**53)),
            "attention": attention,
        }
        if extras:
            token.update(_extras(draw, TOKEN_KEYS))
        tokens.append(_shuffled(draw, token))
    metadata = {"timestamp": draw(st.integers(0, 2**53)), "model": draw(texts)}
    metadata.update(draw(st.dictionaries(texts, json_values, max_size=3)))
    root = {"metadata": metadata, "prompt_tokens": prompt, "generated_tokens": tokens}
    if extras:
        root.update(_extras(draw, ROOT_KEYS))
    return _shuffled(draw, root)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _depth(value, limit: int) -> int:
    if limit <= 0:
        return 0
    if isinstance(value, dict):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


def capture_problem(text: bytes | str) -> str | None:
    """Why text is not a plainly valid capture (None: it is one, and a decoder must accept it).

    Deliberately conservative: anything unusual (duplicate keys, deep nesting, numbers beyond int64 in
    token fields, layers/heads changing between tokens) counts as a problem, so the caller only insists
    on decoding for captures nobody could argue about."""
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        return f"json: {exc}"
    if not isinstance(doc, dict) or not isinstance(doc.get("generated_tokens"), list):
        return "no generated_tokens list"
    if _depth(doc, 100) >= 100:
        return "deep"
    if "metadata" in doc and not isinstance(doc["metadata"], dict):
        return "metadata not an object"
    prompt = doc.get("prompt_tokens", [])
    if not isinstance(prompt, list) or not all(isinstance(r, dict) for r in prompt):
        return "prompt_tokens not a list of objects"
    int_fields = [(r, k) for r in prompt for k in PROMPT_FIELDS]
    layers_heads = None
    for token in doc["generated_tokens"]:
        if not isinstance(token, dict):
            return "token not an object"
        int_fields += [(token, k) for k in TOKEN_FIELDS]
        att = token.get("attention")
        if att is None:
            continue
        if not isinstance(att, dict):
            return "attention not an object"
        data = att.get("data")
        if data is None:
            continue
        if not isinstance(data, list) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in data
        ):
            return "data not a list of numbers"
        try:
            reference_array(data)
        except (OverflowError, ValueError):
            return "number without float32"
        shape = att.get("shape")
        if not (
            isinstance(shape, list)
            and len(shape) == 3
            and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape)
        ):
            return "bad shape"
        if shape[0] * shape[1] * shape[2] != len(data):
            return "shape vs data"
        if "context_length" in att and not (type(att["context_length"]) is int and att["context_length"] == shape[2]):
            return "context_length"
        if layers_heads is None:
            layers_heads = shape[:2]
        elif shape[:2] != layers_heads:
            return "layers/heads change"
    for record, key in int_fields:
        value = record.get(key)
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            return "int64 overflow"
        if isinstance(value, float) and key not in ("timestamp",):
            return "float in an integer field"
        if key in ("text", "message_role") and value is not None and not isinstance(value, str):
            return "text not a string"
        if key not in ("text", "message_role") and isinstance(value, (str, bool, list, dict)):
            return "odd type"
    return None
