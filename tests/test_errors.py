"""Bad input raises halo_fast.CaptureError -- never another exception, never a hang -- naming the file,
the byte offset of the problem and, when a generated token is involved, its step."""

from __future__ import annotations

import json
import os
import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import halo_fast
from halo_fast import CaptureError
from halo_fast.formats.json_single import load_json
from reference import Num, assert_capture_matches, capture_doc, capture_problem, dumps, examples

NEAR = 4  # bytes: how far .offset may be from the offending byte
STEP = 7  # the step of the token that carries the problem in these tests


def load(path, window=None):
    return halo_fast.load(path) if window is None else load_json(path, window_bytes=window)


def expect_error(path, *, at=None, step=None, window=None, near=NEAR) -> CaptureError:
    """load(path) must raise CaptureError naming path, offset within `near` of `at`, and `step`."""
    try:
        load(path, window)
    except CaptureError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001 - the point of the test
        raise AssertionError(f"{type(exc).__name__} instead of CaptureError: {exc}") from exc
    else:
        raise AssertionError("decoded without error")
    assert error.path is not None and os.path.basename(str(path)) in error.path
    assert os.path.basename(str(path)) in str(error)
    if at is not None:
        assert error.offset is not None, f"no byte offset: {error}"
        assert abs(error.offset - at) <= near, f"offset {error.offset}, the problem is at byte {at}: {error}"
        assert f"byte {error.offset}" in str(error)
    if step is not None:
        assert error.step == step, f"step {error.step}, expected {step}: {error}"
        assert f"step {step}" in str(error)
    return error


def two_token_text(data_text: str, *, shape=(1, 1, 3), context=None, pad_values: int = 0) -> str:
    """Compact capture: token 0 (step 0, ok, optionally `pad_values` long), token 1 (step STEP, data_text)."""
    pad = ",".join(["0.125"] * max(pad_values, 1))
    first = (
        f'{{"step":0,"token_id":1,"text":"a","attention":{{"shape":[1,1,{max(pad_values, 1)}],'
        f'"context_length":{max(pad_values, 1)},"data":[{pad}]}}}}'
    )
    ctx = shape[2] if context is None else context
    second = (
        f'{{"step":{STEP},"token_id":2,"text":"b","attention":{{"shape":[{shape[0]},{shape[1]},{shape[2]}],'
        f'"context_length":{ctx},"data":{data_text}}}}}'
    )
    return f'{{"metadata":{{"model":"m"}},"prompt_tokens":[],"generated_tokens":[{first},{second}]}}'


def data_start(text: str) -> int:
    """Byte offset of the '[' of token STEP's data array in a two_token_text."""
    return text.index('"data":', text.index(f'"step":{STEP}')) + len('"data":')


# --------------------------------------------------------------------------- contents of data arrays

BAD_ELEMENTS = ['"x"', '"]"', '"\\"]"', "[2]", "[]", "{}", '{"a":[2]}', "true", "false", "tru", "nul"]


@pytest.mark.parametrize("element", BAD_ELEMENTS)
@pytest.mark.parametrize("deep", [False, True], ids=["small", "deep"])
def test_non_number_inside_data(write_capture, element, deep):
    """A string, bool or nested array/object among the numbers: the error names its byte and the step.

    `deep`: the bad element sits far inside a long array of a token that starts past the first 64 KiB."""
    if deep:
        values = ["0.5"] * 40000
        values[35000] = element
        text = two_token_text("[" + ",".join(values) + "]", shape=(1, 1, 40000), pad_values=15000)
        at = data_start(text) + 1 + len(",".join(values[:35000])) + 1
        assert at > 3 * 65536
    else:
        text = two_token_text(f"[0.5,{element},0.25]")
        at = data_start(text) + len("[0.5,")
    assert text[at:].startswith(element)
    path = write_capture(text)
    for window in (None, 7):
        expect_error(path, at=at, step=STEP, window=window)


MALFORMED = [
    "1.2.3",
    "01",
    "00",
    "-01",
    "1.",
    "1.e5",
    ".5",
    "+1",
    "1e",
    "1e+",
    "1E-",
    "--1",
    "-",
    "0x10",
    "1_000",
    "Inf",
    "-Inf",
    "inf",
    "nan",
    "NULL",
    "-NaN",
    "-null",
    "infinity",
    "0.5f",
    "1e5.5",
    "١",
    "1 2",
    "--",
    "e5",
]


@pytest.mark.parametrize("number", MALFORMED)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_malformed_number(write_capture, number, where):
    values = {"first": [number, "0.5", "0.25"], "middle": ["0.5", number, "0.25"], "last": ["0.5", "0.25", number]}
    text = two_token_text("[" + ",".join(values[where]) + "]")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    i = values[where].index(number)
    at = data_start(text) + 1 + len(",".join(values[where][:i])) + (1 if i else 0)
    assert text[at:].startswith(number)
    expect_error(write_capture(text), at=at, step=STEP, near=len(number.encode()) + NEAR)


@pytest.mark.parametrize(
    "data, problem",
    [
        ("[0.5,0.25,0.125,1]", "1]"),
        ("[0.5,0.25,0.125,1,2,3,4,5,6]", "1,2"),
        ("[0.5,0.25]", "]"),
        ("[0.5]", "]"),
        ("[0.5,     0.25       ]", "]"),
        ("[]", "]"),
        ("[0.5,0.25,0.125,]", ",]"),
        ("[,0.5,0.25,0.125]", ",0.5"),
        ("[0.5,,0.25,0.125]", ",0.25"),
        ("[0.5 0.25 0.125]", "0.25"),
        ("[0.5;0.25;0.125]", ";"),
        ("[0.5,0.25:0.125]", ":"),
    ],
)
def test_wrong_count_and_separators(write_capture, data, problem):
    """More or fewer values than the shape says, trailing/missing commas: offset at or around the problem."""
    text = two_token_text(data)
    at = data_start(text) + data.index(problem)
    # "fewer values" may be reported at either end of the (short) array
    near = max(NEAR, len(data) + 1) if problem == "]" else NEAR
    expect_error(write_capture(text), at=at, step=STEP, near=near)


@pytest.mark.parametrize("space", ["\f", "\v", "\u00a0", "\u3000", "\u2028", "\x00"])
def test_non_json_whitespace_in_data(write_capture, space):
    data = f"[0.5,{space}0.25,0.125]"
    text = two_token_text(data)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    expect_error(write_capture(text), at=data_start(text) + len("[0.5,"), step=STEP)


def test_unterminated_data_array(write_capture):
    text = two_token_text("[0.5,0.25,0.125")
    at = text.index("0.125}}") + len("0.125")
    for window in (None, 3):
        expect_error(write_capture(text), at=at, step=STEP, window=window)


def test_unterminated_string(write_capture):
    good = two_token_text("[0.5,0.25,0.125]")
    cut = good.index('"b"') + 2  # "text":"b  -> the string never closes
    path = write_capture(good[:cut])
    expect_error(path, at=cut, near=NEAR)
    path = write_capture(good[: good.index('"model"') + 3])
    expect_error(path, at=os.path.getsize(path))


# --------------------------------------------------------------------------- truncation


def _truncation_doc():
    doc = capture_doc(
        [None, [Num("0.5"), Num("-1e-07"), Num("null")], [Num("1E+5"), Num("-0.0")]],
        metadata={"m": 'q"u\\ote', "data": [1, 2]},
    )
    doc["generated_tokens"][1]["text"] = '"data":[ ] } \\u00e9 \\'
    doc["generated_tokens"][2]["attention"]["extra"] = {"data": [3]}
    return doc


@pytest.mark.parametrize("style", ["compact", "indent2"])
def test_every_truncation_is_capture_error(write_capture, style):
    text = dumps(_truncation_doc(), style).encode()
    for cut in range(0, len(text)):
        path = write_capture(text[:cut], name=f"cut_{style}.json")
        error = expect_error(path)
        if cut:
            assert error.offset is not None and 0 <= error.offset <= cut, (cut, error)


def test_truncations_with_small_windows(write_capture):
    text = dumps(_truncation_doc(), "random", random.Random(5)).strip().encode()
    for cut in range(1, len(text), 3):
        expect_error(write_capture(text[:cut], name="cut_window.json"), window=1 + cut % 9)


def test_truncated_big_file(write_capture):
    """Cuts inside long arrays past the first 64 KiB (where pass 1 jumps over array bodies)."""
    rng = random.Random(11)
    values = [[Num(repr(rng.random())) for _ in range(3000)] for _ in range(6)]
    text = dumps(capture_doc(values, layers=2, heads=3), "python").encode()
    assert len(text) > 200_000
    cuts = sorted(rng.sample(range(1, len(text)), 60)) + [len(text) - 1, len(text) - 2, 70000]
    for cut in cuts:
        error = expect_error(write_capture(text[:cut], name="cut_big.json"), window=rng.choice([None, 64, 4096]))
        assert error.offset is not None and error.offset <= cut


# --------------------------------------------------------------------------- not a capture / not JSON


def test_empty_file(write_capture):
    expect_error(write_capture(b"", name="empty.json"), at=0)


def test_whitespace_only_file(write_capture):
    expect_error(write_capture(b" \n\t\r\n ", name="blank.json"))


def test_missing_file(tmp_path):
    path = tmp_path / "does_not_exist.json"
    error = expect_error(path)
    assert error.step is None


def test_directory_instead_of_file(tmp_path):
    expect_error(tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        '[{"generated_tokens":[]}]',
        "[]",
        "1",
        '"generated_tokens"',
        "null",
        "true",
        "{}",
        '{"metadata":{}}',
        '{"generated_tokens":{}}',
        '{"generated_tokens":"[]"}',
        '{"generated_tokens":null}',
    ],
)
def test_not_a_capture(write_capture, text):
    expect_error(write_capture(text), at=0, near=len(text))


@pytest.mark.parametrize("token", ["5", '"tok"', "null", "[1,2]", "true"])
def test_generated_token_not_an_object(write_capture, token):
    text = '{"generated_tokens":[{"step":0,"attention":null},' + token + ',{"step":2,"attention":null}]}'
    at = text.index(token, text.index("null}") + 5)
    expect_error(write_capture(text), at=at, near=len(token) + NEAR)


@pytest.mark.parametrize(
    "text",
    [
        '{"generated_tokens":[{"step":0,"attention":null}],"generated_tokens":[{"step":1,"attention":null},{}]}',
        '{"generated_tokens":[{"step":0,"attention":{"shape":[1,1,1],"data":[1],"data":[2]}}]}',
        '{"generated_tokens":[{"step":0,"attention":{"shape":[1,1,1],"data":[1]},"attention":null}]}',
    ],
)
def test_duplicate_keys(write_capture, text):
    """json.loads keeps the last of duplicate keys; the decoder may do the same or refuse, saying where."""
    path = write_capture(text)
    try:
        cap = load(path)
    except CaptureError as exc:
        assert exc.offset is not None and 0 <= exc.offset < len(text), f"no usable offset: {exc}"
        return
    assert_capture_matches(cap, text)


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"generated_tokens":[{"step":0,"attention":null},]}', ",]"),
        ('{"generated_tokens":[{"step":0,"attention":null,}]}', ",}"),
        ('{"metadata":{"a":1,},"generated_tokens":[]}', ",}"),
        ('{"generated_tokens":[],}', ",}"),
        ('{"generated_tokens":[{"step":0,"attention":{"shape":[1,1,1,],"context_length":1,"data":[1]}}]}', ",]"),
        ('{"generated_tokens":[{"step":0,"attention":{"shape":[1,1,1],"context_length":1,"data":[1],}}]}', ",}"),
    ],
)
def test_trailing_commas(write_capture, text, problem):
    at = text.index(problem)
    expect_error(write_capture(text), at=at, near=NEAR)


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"generated_tokens":[]} {}', "{}"),
        ('{"generated_tokens":[]}]', "]"),
        ('{"generated_tokens":[]}x', "x"),
        ('{"generated_tokens":[]} 1', "1"),
        ('x{"generated_tokens":[]}', "x"),
        ('{"generated_tokens":[]', None),
        ('{"generated_tokens":[}', "}"),
        ("{'generated_tokens':[]}", "'"),
        ('{"generated_tokens":[{"step":0,"text":"\\q","attention":null}]}', "\\q"),
        ('{"generated_tokens":[{"step":0,"text":"\\u12","attention":null}]}', "\\u12"),
        ('{"generated_tokens":[{"step":0,"text":"a\nb","attention":null}]}', "\n"),
        ('{"generated_tokens":[{"step":0 "attention":null}]}', '"attention"'),
        ('{"generated_tokens":[{"step":0,"attention":nul}]}', "nul"),
        ('{"generated_tokens":[{"step":0,"attention":null}]\\}', "\\"),
        ('{"generated_tokens":[{"step":0,"attention":null}],"n":01}', "01"),
        ('{"generated_tokens":[{"step":0,"attention":null}],"n":NaNa}', "a}"),
    ],
)
def test_invalid_json_outside_data(write_capture, text, problem):
    at = len(text) if problem is None else text.index(problem)
    expect_error(write_capture(text), at=at, near=NEAR)


def test_invalid_utf8_in_a_string(write_capture):
    text = b'{"generated_tokens":[{"step":0,"text":"caf\xff\xfe","attention":null}]}'
    expect_error(write_capture(text), at=text.index(b"\xff"), near=NEAR + 6)


def test_deep_nesting(write_capture):
    text = '{"metadata":' + "[" * 100_000 + "]" * 100_000 + ',"generated_tokens":[]}'
    expect_error(write_capture(text))
    text = '{"metadata":' + '{"a":' * 3000 + "1" + "}" * 3000 + ',"generated_tokens":[]}'
    try:
        json.loads(text)
    except RecursionError:
        expect_error(write_capture(text))


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes(scratch, data):
    path = scratch(data)
    try:
        load(path)
    except CaptureError:
        return
    cap_text = data  # accepted: then it must have been a valid capture, decoded like json.loads
    assert_capture_matches(load(path), cap_text)


@settings(max_examples=examples(150))
@given(st.data())
def test_random_edits_of_a_valid_capture(scratch, data):
    """Delete, insert or replace a few bytes of a valid capture: CaptureError, or json.loads agrees."""
    text = bytearray(dumps(_truncation_doc(), data.draw(st.sampled_from(["compact", "indent2"]))).encode())
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text) - 1))
        kind = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        byte = data.draw(st.sampled_from(list(b'"\\[]{}:,0123456789.-+eE ntfaINx\n\xff')))
        if kind == "delete":
            del text[i]
        elif kind == "insert":
            text.insert(i, byte)
        else:
            text[i] = byte
    path = scratch(bytes(text))
    window = data.draw(st.sampled_from([None, 1, 7]))
    try:
        cap = load(path, window)
    except CaptureError as exc:
        problem = capture_problem(bytes(text))
        assert problem is not None, f"a valid capture was refused: {exc}"
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
    assert_capture_matches(cap, bytes(text))  # json.loads must accept it too, with the same values


@settings(max_examples=examples(60))
@given(st.data())
def test_random_edits_of_a_big_capture(scratch, data):
    """The same, with edits deep inside long arrays (past the 64 KiB probe of pass 1)."""
    text = bytearray(BIG_TEXT)
    for _ in range(data.draw(st.integers(1, 2))):
        i = data.draw(st.integers(65536, len(text) - 1))
        byte = data.draw(st.sampled_from(list(b'"\\[]{}:,0123456789.-+eE ntfaINx\n\xff')))
        kind = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        if kind == "delete":
            del text[i]
        elif kind == "insert":
            text.insert(i, byte)
        else:
            text[i] = byte
    path = scratch(bytes(text))
    try:
        cap = load(path, data.draw(st.sampled_from([None, 64])))
    except CaptureError as exc:
        problem = capture_problem(bytes(text))
        assert problem is not None, f"a valid capture was refused: {exc}"
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
    assert_capture_matches(cap, bytes(text))


_rng = random.Random(8)
BIG_TEXT = dumps(
    capture_doc([[Num(repr(_rng.random())) for _ in range(1200)] for i in range(8)], layers=2, heads=2), "python"
).encode()


# --------------------------------------------------------------------------- shapes


def test_shape_disagrees_with_context_length(write_capture):
    text = two_token_text("[0.5,0.25,0.125]", shape=(1, 1, 3), context=4)
    at = text.index('"shape"', text.index(f'"step":{STEP}'))
    expect_error(write_capture(text), at=at, step=STEP, near=60)


@pytest.mark.parametrize(
    "shape",
    [
        (100000, 100000, 100000),
        (2**31, 2**31, 2**31),
        (1, 1, 2**40),
        (2**62, 2, 2),
        (10**30, 1, 1),
        (2, 1, 2),
        (1, 1, 4),
    ],
)
def test_shape_larger_than_data(write_capture, shape):
    """Shapes that need more values than the data array can hold fail before allocating anything."""
    text = two_token_text("[0.5,0.25,0.125]", shape=shape)
    start = text.index("[0.5", text.index(f'"step":{STEP}'))
    path = write_capture(text)
    load(write_capture(two_token_text("[0.5,0.25,0.125]")))  # imports and kernels loaded before measuring
    tracemalloc.start()
    try:
        expect_error(path, at=start, step=STEP, near=len("[0.5,0.25,0.125]") + NEAR)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated for a 300-byte file"


@pytest.mark.parametrize(
    "shape",
    [
        "[1,1]",
        "[1,1,1,1]",
        "[1,1,-3]",
        "[1,1,1.0]",
        '[1,1,"3"]',
        "[1,1,true]",
        "3",
        "null",
        "[1,1,null]",
        f"[0,{2**70},3]",
        f"[0,{2**63},3]",
        f"[{2**64},0,3]",
        f"[0,1,{2**80}]",
    ],
)
def test_bad_shapes(write_capture, shape):
    """Any shape that is not three non-negative int64 dimensions -> CaptureError (never OverflowError)."""
    text = two_token_text("[]").replace('"shape":[1,1,3],"context_length":3', f'"shape":{shape}')
    assert f'"shape":{shape}' in text
    expect_error(write_capture(text), step=STEP)


@pytest.mark.parametrize("field", ["token_id", "position", "timestamp", "step"])
@pytest.mark.parametrize("value", [2**64 + 5, -(2**63) - 1])
def test_token_fields_beyond_int64(write_capture, field, value):
    """A token number no int64 holds: a CaptureError, or a column holding exactly json's value -- no crash."""
    doc = capture_doc([None, [0.5, 0.25]])
    doc["generated_tokens"][1][field] = value
    text = dumps(doc)
    try:
        cap = load(write_capture(text))
    except CaptureError:
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{type(exc).__name__} instead of CaptureError or the value: {exc}") from exc
    assert cap.tokens[field].tolist()[1] == value


@pytest.mark.parametrize("field", ["token_id", "position", "turn_id", "sentence_id"])
def test_prompt_fields_beyond_int64(write_capture, field):
    doc = capture_doc([[0.5]])
    doc["prompt_tokens"][1][field] = 2**64
    try:
        cap = load(write_capture(dumps(doc)))
    except CaptureError:
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{type(exc).__name__} instead of CaptureError or the value: {exc}") from exc
    assert cap.prompt_tokens[field].tolist()[1] == 2**64


def test_error_offsets_after_long_arrays(write_capture):
    """Offsets of skeleton errors (found after the arrays were cut out) still point into the real file."""
    values = [[Num("0.5")] * 5000, [Num("0.25")] * 7000]
    text = dumps(capture_doc(values))
    text = text.replace('"timestamp":1763681850124', '"timestamp":1763681850124,', 1)  # token 1: a stray comma
    at = text.index('"timestamp":1763681850124,') + len('"timestamp":1763681850124,')
    expect_error(write_capture(text), at=at)


def test_error_is_a_value_error_with_fields(write_capture):
    error = expect_error(write_capture(two_token_text("[0.5,true,0.25]")))
    assert isinstance(error, ValueError)
    assert error.offset is not None and error.step == STEP
    assert isinstance(error.offset, int) and isinstance(error.step, int)
