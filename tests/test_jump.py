"""Pass 1 jumping over most of each attention array (formats.json_brackets) against pass 1 searching
every byte: the same values bit for bit, the same errors (message, byte, step), whatever the file holds.

Jumps are only taken past ``ClosingBrackets.MIN_JUMP`` bytes, and only in arrays longer than pass 1's
probe (``json_scan.PROBE_BYTES``); here those are 1 and 8 bytes, so the small documents of these
tests jump wherever a shape and a last array predict a length. The reference is the same
call with ``MIN_JUMP`` out of reach (no jump: the plain route). ``opens`` counts how often ``api``
opened the file: twice when the jumps were refuted and the file read again the plain way.
"""

from __future__ import annotations

import gc
import json
import random
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import halo_fast
import halo_fast.api as api
from halo_fast.errors import SelectionError
from halo_fast.formats import json_scan, json_values
from halo_fast.formats.json_brackets import ClosingBrackets, confirm_jumps, jumped_from
from halo_fast.formats.json_single import ScannedJson
from reference import assert_capture_matches, capture_doc, capture_documents, capture_problem, dumps
from test_fuzz import base_texts, mutate

NEVER = 1 << 62


@pytest.fixture
def scans(monkeypatch):
    """Every pass 1 of a single JSON since the fixture was made: (jump asked, layout.jumped) each."""
    seen = []
    real = json_scan.scan_structure

    def spy(*args, **kwargs):
        layout = real(*args, **kwargs)
        seen.append((kwargs.get("jump", False), None if layout.jumped is None else layout.jumped.copy()))
        return layout

    monkeypatch.setattr("halo_fast.formats.json_single.scan_structure", spy)
    return seen


def outcome(call):
    """A call's arrays, or its error: a CaptureError as (message, offset, step), a SelectionError (no token
    selected) by its message; any other exception escapes."""
    try:
        result = call()
    except halo_fast.CaptureError as error:
        return ("error", str(error), error.offset, error.step)
    except SelectionError as error:
        return ("selection", str(error))
    if isinstance(result, halo_fast.Reduced):
        return ("reduced", result.data.tobytes(), result.steps.tolist())
    return ("capture", result.values.tobytes(), result.offsets.tolist())


def both_routes(monkeypatch, call, share=0.9):
    """``call()``'s outcome with jumps (of ``share`` of the predicted length) and without (no plan
    given to the source, as before jumps were made: no shape is read); pass 1 indexes 8 bytes at a
    time after each array, so even short arrays are searched for their ']'."""
    monkeypatch.setattr(json_scan, "PROBE_BYTES", 8)
    monkeypatch.setattr(ClosingBrackets, "JUMP_SHARE", share)
    monkeypatch.setattr(ClosingBrackets, "MIN_JUMP", 1)
    jumping = outcome(call)
    with monkeypatch.context() as plain_route:
        plain_route.setattr(ScannedJson, "plan_decode", lambda self: None)
        plain_route.setattr(ScannedJson, "plan_reduce", lambda self, request: None)
        plain = outcome(call)
    return jumping, plain


def entry_points(path):
    return {
        "load": lambda: halo_fast.load(path),
        "reduce": lambda: halo_fast.reduce(path),
        "reduce max every 2": lambda: halo_fast.reduce(path, op="max", every=2),
        "reduce layer 0": lambda: halo_fast.reduce(path, layers=[0]),
        "reduce from step 2": lambda: halo_fast.reduce(path, tokens=(2, None)),
    }


def values_text(values) -> list:
    return [json.loads(v) if isinstance(v, str) else v for v in values]


def write(tmp_path, text, name="c.json") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def long_numbers(rng, n):
    return [float(np.float32(x)) for x in rng.random(n)]


# --------------------------------------------------------------------------- hand-picked


def test_a_jump_is_confirmed_by_the_parse(tmp_path, monkeypatch, scans):
    """Numbers of about one length: every array after the first is jumped, the parse confirms, one read."""
    rng = np.random.default_rng(3)
    doc = capture_doc([long_numbers(rng, 2 * 3 * (40 + i)) for i in range(6)], layers=2, heads=3)
    path = write(tmp_path, json.dumps(doc))
    with ScannedJson(path) as scan:
        plain = scan.layout
    for name, call in entry_points(path).items():
        scans.clear()
        jumping, reference = both_routes(monkeypatch, call)
        assert jumping == reference, name
        assert len(scans) == 2, name  # one for each route: no second read
        asked, jumped = scans[0]
        assert asked and jumped is not None and jumped[0] == -1, name
        assert np.all(jumped[1:] > plain.data_open[1:] + 1), name
        assert np.all(jumped[1:] < plain.data_close[1:]), name  # the jump stayed inside the array


@pytest.mark.parametrize("tokens", [(2, 3), (2, None), (5, None)])
def test_a_token_swallowed_by_a_jump_before_any_is_read(tmp_path, monkeypatch, tokens):
    """Zeros after long numbers: the jump over token 1 lands in token 2's array, the last, and pass 1
    reads tokens 1 and 2 as one, without an error. A selection naming step 2 fails on that layout
    before pass 2 reads a token; the jumps are checked then, and the plain route gives its result
    (or its own error)."""
    rng = np.random.default_rng(6)
    values = [long_numbers(rng, 300) for _ in range(3)]
    values[1] = [0] * 300
    path = write(tmp_path, json.dumps(capture_doc(values)))
    jumping, plain = both_routes(monkeypatch, lambda: halo_fast.reduce(path, tokens=tokens))
    assert jumping == plain
    assert plain[0] == ("selection" if tokens[0] == 5 else "reduced")


def test_a_shape_too_large_for_a_float(tmp_path, monkeypatch):
    """A shape whose count has 310 digits: no prediction from it, and the plain route's error."""
    rng = np.random.default_rng(7)
    text = json.dumps(capture_doc([long_numbers(rng, 300) for _ in range(3)]))
    second = text.index('"shape": [1, 1, 300]', text.index('"step": 1'))
    text = text[:second] + '"shape": [1, 1, 1' + "0" * 310 + "]" + text[second + len('"shape": [1, 1, 300]') :]
    path = write(tmp_path, text)
    for name, call in entry_points(path).items():
        jumping, plain = both_routes(monkeypatch, call)
        assert plain[0] in ("error", "selection") and jumping == plain, name


def test_the_refuted_attempt_is_gone_before_the_plain_one(tmp_path, monkeypatch):
    """When the jumps are refuted after pass 2 made its output, the second read does not begin while
    that output is still reachable (through the exception that refuted it): memory stays at one."""
    rng = np.random.default_rng(8)
    values = [long_numbers(rng, 300) for _ in range(4)]
    values[2] = [0] * 300
    path = write(tmp_path, json.dumps(capture_doc(values)))
    monkeypatch.setattr(json_scan, "PROBE_BYTES", 8)
    monkeypatch.setattr(ClosingBrackets, "MIN_JUMP", 1)
    buffers, alive = [], []
    real_buffer, real_open = json_values.output_buffer, api.open_capture

    def output_buffer(*args, **kwargs):
        buffer = real_buffer(*args, **kwargs)
        buffers.append(weakref.ref(buffer))
        return buffer

    def open_capture(*args, **kwargs):
        gc.collect()
        alive.append(sum(ref() is not None for ref in buffers))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(json_values, "output_buffer", output_buffer)
    monkeypatch.setattr(api, "open_capture", open_capture)
    halo_fast.load(path)
    assert len(buffers) == 2 and alive == [0, 0]  # a refuted attempt's output, then the plain one's


def test_an_array_shorter_per_number_is_read_again(tmp_path, monkeypatch, scans):
    """Long numbers, then an array of zeros: the jump lands past its end; pass 1 runs again without
    jumping, and the values are the plain route's."""
    rng = np.random.default_rng(4)
    values = [long_numbers(rng, 60 + i) for i in range(4)]
    values[2] = [0] * 62
    text = json.dumps(capture_doc(values))
    path = write(tmp_path, text)
    for name, call in entry_points(path).items():
        scans.clear()
        jumping, plain = both_routes(monkeypatch, call)
        assert jumping == plain, name
        # jumped; read again without asking to; the reference route (asks, never jumps)
        assert len(scans) == 3 and scans[0][1] is not None and not scans[1][0] and scans[2][1] is None, name
    monkeypatch.setattr(ClosingBrackets, "MIN_JUMP", 1)
    assert_capture_matches(halo_fast.load(path), text)


@pytest.mark.parametrize("token", [1, 2, 3])
@pytest.mark.parametrize("where", [5, 45])
@pytest.mark.parametrize("name", ["load", "reduce", "reduce max every 2", "reduce layer 0"])
def test_a_bracket_in_a_jumped_over_span(tmp_path, monkeypatch, scans, token, where, name):
    """A ']' early in an array of two layers (then more numbers and the real ']'), jumped over: the
    plain route's error, whether the token is parsed (it meets the bracket: in layer 0 at 5, in layer
    1 at 45, whose numbers "reduce layer 0" steps over unparsed) or not (every 2: its span is searched)."""
    rng = np.random.default_rng(5)
    texts = [[json.dumps(x) for x in long_numbers(rng, 80)] for _ in range(5)]
    text = json.dumps(capture_doc([[0.5] * 80 for _ in range(5)], layers=2))
    parts = text.split("0.5, " * 79 + "0.5")
    assert len(parts) == 6
    arrays = [", ".join(t) for t in texts]
    arrays[token] = ", ".join(texts[token][:where]) + "], " + ", ".join(texts[token][where:])
    text = parts[0] + "".join(arrays[k] + parts[k + 1] for k in range(5))
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    path = write(tmp_path, text)
    jumping, plain = both_routes(monkeypatch, entry_points(path)[name])
    assert plain[0] == "error"
    assert jumping == plain
    jumped = scans[0][1]
    assert jumped is not None and jumped[token] > text.index("], ")  # the bracket was stepped over


def test_confirm_jumps_searches_only_what_was_not_parsed():
    text = b"[1,2,3,4]  [5,6],7,8]  [9,9,9]"
    buf = np.frombuffer(text + b" " * 8, dtype=np.uint8)
    data_open = np.array([0, 11, 23], dtype=np.int64)
    jumped = np.array([5, 19, -1], dtype=np.int64)  # token 1's jump went past its first ']' (byte 15)
    assert not confirm_jumps(buf, data_open, jumped, np.array([True, False, False]))
    assert confirm_jumps(buf, data_open, jumped, np.array([False, True, False]))  # parsed: taken as read
    assert confirm_jumps(buf, data_open, None, np.zeros(3, bool))
    jumped[1] = 15  # the search began at the ']' itself: nothing before it was stepped over
    assert confirm_jumps(buf, data_open, jumped, np.zeros(3, bool))


def test_every_jump_belongs_to_a_token():
    data_open = np.array([10, -1, 500], dtype=np.int64)
    assert jumped_from([], data_open) is None
    assert jumped_from([(500, 900)], data_open).tolist() == [-1, -1, 900]
    with pytest.raises(ValueError, match="no token's"):
        jumped_from([(500, 900), (300, 400)], data_open)


def test_closing_brackets_jump_only_with_a_shape_and_a_last_array():
    body = lambda n: (b"0.25," * n)[:-1]  # noqa: E731 - 5 bytes a number
    text = bytearray(b'{"t":[')
    opens, closes, token_opens = [], [], []
    for i, n in enumerate([10, 400, 420, 30]):
        token_opens.append(len(text))
        fields = b'{"attention":{"shape":[1,1,%d],"data":' % n if i != 3 else b'{"attention":{"data":'
        text += fields
        opens.append(len(text))
        text += b"[" + body(n) + b"]"
        closes.append(len(text) - 1)
        text += b"}},"
    buf = np.frombuffer(bytes(text) + b" " * 8, dtype=np.uint8)
    brackets = ClosingBrackets(buf, lambda a, b: bytes(buf[a:b]))
    brackets.MIN_JUMP = 64
    for opened, close, token_open in zip(opens, closes, token_opens):
        assert brackets.find(opened + 1, opened, token_open) == close
    # the first array has no last array, the fourth no shape: jumps over the second and third, 90% in
    assert brackets.jumps == [(opens[1], opens[1] + int(400 * 5 * 0.9)), (opens[2], opens[2] + int(420 * 5 * 0.9))]
    plain = ClosingBrackets(buf)
    assert [plain.find(o + 1, o, t) for o, t in zip(opens, token_opens)] == closes and plain.jumps == []


# --------------------------------------------------------------------------- random documents


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    doc=capture_documents(max_tokens=5, max_ctx=8),
    style=st.sampled_from(["compact", "indent2", "random"]),
    share=st.sampled_from([0.5, 0.9, 3.0]),
    seed=st.integers(0, 2**16),
)
def test_random_captures_jumping_or_not(tmp_path_factory, monkeypatch, doc, style, share, seed):
    """Valid captures (shuffled keys, decoys, shapes after data, ragged contexts), jumps short or long
    past every array's end (share 3.0): json.loads' values, and the plain route's for every entry point."""
    text = dumps(doc, style, random.Random(seed))
    path = write(tmp_path_factory.mktemp("jump"), text)
    for name, call in entry_points(path).items():
        jumping, plain = both_routes(monkeypatch, call, share)
        assert jumping == plain, name
    if capture_problem(text) is None:
        monkeypatch.setattr(ClosingBrackets, "MIN_JUMP", 1)
        assert_capture_matches(halo_fast.load(path), text)


@pytest.mark.parametrize("base", range(3))
def test_mutated_captures_jumping_or_not(tmp_path, monkeypatch, base):
    """The fuzz suite's mutations (brackets inserted, runs deleted, numbers replaced, cuts...): the same
    values or the same error with jumps as without."""
    rng = random.Random(base)
    text = base_texts()[base]
    for case in range(40):
        path = write(tmp_path, mutate(text, rng), name=f"m{case}.json")
        for name, call in entry_points(path).items():
            jumping, plain = both_routes(monkeypatch, call, rng.choice([0.5, 0.9, 3.0]))
            assert jumping == plain, (case, name)
