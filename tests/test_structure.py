"""The structural walk: any whitespace, key order, extra keys, decoys and string contents.

Every test compares the whole Capture with json.loads of the same text
(reference.assert_capture_matches), and small windows must change nothing.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import halo_fast
from halo_fast.formats.json_single import load_json
from reference import (
    DECOYS,
    STYLES,
    Num,
    RawKey,
    assert_capture_matches,
    capture_doc,
    capture_documents,
    decimal_texts,
    dumps,
    examples,
    float64_texts,
)

WINDOWS = [1, 2, 3, 7, 13, 64, 4096]


def load(path, window=None):
    return halo_fast.load(path) if window is None else load_json(path, window_bytes=window)


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def check(path, window=None, context=""):
    cap = load(path, window)
    assert_capture_matches(cap, read(path), f"{context} window={window}")
    return cap


def tricky_doc() -> dict:
    """Small capture with every awkward thing at once (keys shuffled by hand, decoys everywhere)."""
    data0 = [
        Num(t)
        for t in [
            "0.5",
            "-0",
            "-0.0",
            "1e-07",
            "1.2345678741455078e-7",
            "NaN",
            "null",
            "Infinity",
            "-Infinity",
            "3.4028235677973366e38",
            "1E+5",
            "0.00123456789180636410000000000001",
        ]
    ]
    return {
        "generated_tokens": [
            {"attention": None, "step": 0, "text": '"data":[1,2]', "token_id": 1, "position": 3, "timestamp": 5},
            {
                "text": 'close ] } \\" \\\\" brace { [ quote "',
                "attention": {
                    "extra": {"data": [9, 9, 9], "shape": [1]},
                    RawKey("data", '"d\\u0061ta"'): data0,
                    "context_length": 3,
                    "shape": [2, 2, 3],
                    "note": '"data":[',
                },
                "step": 1,
                "token_id": 2,
                "position": 4,
                "timestamp": 6,
                "debug": {"attention": {"shape": [1, 1, 1], "data": [7]}},
            },
            {
                "step": 2,
                "token_id": 3,
                "text": "é😀\u2028\t\n\\/",
                "position": 5,
                "timestamp": 7,
                RawKey("attention", '"\\u0061ttention"'): {
                    "shape": [2, 2, 1],
                    "data": [Num("1"), Num("2"), Num("3"), Num("4")],
                    "context_length": 1,
                },
            },
        ],
        "prompt_tokens": [
            {
                "text": 'a"b\\c',
                "token_id": 9,
                "position": 0,
                "turn_id": 0,
                "role": "system",
                "sentence_id": 0,
                "data": [1, 2],
            },
            {
                "token_id": 10,
                "text": "\ud83d\ude00 \ud800",
                "position": 1,
                "turn_id": 1,
                "message_role": "user",
                "sentence_id": 0,
            },
        ],
        "metadata": {
            "timestamp": 1763681849744,
            "model": 'Qwen "data":[',
            "generation_config": {"temperature": 0.7, "top_p": 0.9, "nan": float("nan"), "inf": float("-inf")},
            "data": [1, 2, 3],
            "big": 2**70,
            "negzero": -0.0,
            "nested": [{"attention": {"data": [1]}}],
        },
        "extra_root": DECOYS,
    }


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("window", [None] + WINDOWS)
def test_tricky_document_every_style_and_window(scratch, style, window):
    path = scratch(tricky_doc(), style, random.Random(7))
    cap = check(path, window, style)
    assert len(cap) == 3
    assert cap.attention(0) is None and not cap.tokens["has_attention"][0]
    assert cap.attention(1).shape == (2, 2, 3)
    assert cap.attention(2).shape == (2, 2, 1)
    assert cap.prompt_tokens["message_role"].tolist() == ["system", "user"]


def test_json_module_styles(scratch):
    """Files exactly as Python's json module writes them (indent=2 puts every number on its own line)."""
    doc = capture_doc([None, [0.5, 0.25, 1e-07], [0.1, 0.2, 0.3, 0.4]], metadata={"x": [1, {"y": None}]})
    for kwargs in [{}, {"indent": 2}, {"indent": "\t"}, {"separators": (",", ":")}, {"ensure_ascii": False}]:
        text = json.dumps(doc, **kwargs)
        for window in (None, 1, 5):
            check(scratch(text), window, repr(kwargs))
        crlf = text.replace("\n", "\r\n")
        check(scratch(crlf), None, repr(kwargs) + " crlf")


@pytest.mark.parametrize(
    "order",
    [
        ("generated_tokens", "prompt_tokens", "metadata"),
        ("metadata", "generated_tokens", "prompt_tokens"),
        ("prompt_tokens", "generated_tokens", "metadata"),
    ],
)
def test_key_orders(scratch, order):
    doc = capture_doc([None, [0.5, 0.25], [1, 2, 3]], layers=1, heads=1)
    root = {k: doc[k] for k in order}
    for token in root["generated_tokens"]:
        att = token.pop("attention")
        if att is not None:
            att = {"data": att["data"], "context_length": att["context_length"], "shape": att["shape"]}
        rest = dict(token)
        token.clear()
        token["attention"] = att
        token.update(reversed(list(rest.items())))
    check(scratch(root, "python"))


def test_decoy_data_keys_are_not_attention(scratch):
    """A `data` array in an unrelated object (in attention, metadata, a token, the root) is never attention."""
    doc = capture_doc([[0.5, 0.25]])
    doc["metadata"]["data"] = [1, 2, 3]
    doc["metadata"]["attention"] = {"shape": [1, 1, 2], "data": [5, 6]}
    doc["prompt_tokens"][0]["attention"] = {"shape": [1, 1, 1], "data": [8]}
    doc["generated_tokens"][0]["data"] = [7, 7, 7]
    doc["generated_tokens"][0]["extra"] = {"attention": {"shape": [1, 1, 2], "data": [4, 4]}}
    doc["generated_tokens"][0]["attention"]["inner"] = {"data": [3, 3, 3, 3]}
    doc["generated_tokens"][0]["attention"]["list"] = [{"data": [2]}, [[1]]]
    doc["data"] = [1]
    doc["other_tokens"] = [{"attention": {"shape": [1, 1, 1], "data": [1]}}]
    for style in ("compact", "indent2"):
        cap = check(scratch(doc, style))
        assert cap.attention(0).ravel().tolist() == [0.5, 0.25]


def test_escaped_key_spellings(scratch):
    """json.loads decodes escapes in keys, so "d\\u0061ta" is the data key (and so on up the path)."""
    text = (
        '{"generated\\u005ftokens":[{"step":0,"\\u0061ttention":{"\\u0073hape":[1,1,2],"context_length":2,'
        '"\\u0064\\u0061\\u0074\\u0061":[0.5,0.75]}}],"metadata":{"k\\u00e9y":"v\\"al"}}'
    )
    cap = check(scratch(text))
    assert cap.attention(0).ravel().tolist() == [0.5, 0.75]
    assert cap.metadata == {"kéy": 'v"al'}


def test_near_miss_keys_are_not_data(scratch):
    """Keys that are not 'data' once decoded -- 'Data', 'data ', 'dat', 'd\\\\ata' -- are extra keys."""
    for near in ["Data", "data ", "dat", "d\\\\ata", "\\u0044ata", "datadata", "d\\u0061t"]:
        text = (
            '{"generated_tokens":[{"step":0,"attention":{"shape":[1,1,1],"context_length":1,'
            f'"{near}":[[1],"x",{{}}],"data":[0.5]}}}}]}}'
        )
        cap = check(scratch(text), None, near)
        assert cap.attention(0).ravel().tolist() == [0.5]


def test_strings_that_look_like_structure(scratch):
    texts = ['"data":[', "]", "}", "]}]}", '\\"', "\\", '\\"data\\":[1,', "[[[[", "{{{{", ":", '"}', "\u0000"]
    doc = capture_doc(
        [[0.5], [0.25, 0.125]],
        prompt=[
            {"token_id": i, "text": t, "position": i, "turn_id": 0, "message_role": t, "sentence_id": 0}
            for i, t in enumerate(texts)
        ],
    )
    for i, token in enumerate(doc["generated_tokens"]):
        token["text"] = texts[i]
        token["attention"]["note"] = texts
    doc["metadata"]["notes"] = {t: t for t in texts}
    for style in ("compact", "random"):
        for window in (None, 1, 3):
            check(scratch(doc, style, random.Random(3)), window, style)


def test_raw_utf8_and_escapes_decode_like_json(scratch):
    text = (
        '{"metadata":{"s":"caf\u00e9 \\u00e9 \\ud83d\\ude00 \U0001f600 \\/ \\b\\f\\n\\r\\t \\\\ \\"",'
        '"lone":"\\udc00","n":[-0,-0.0,1E400,1e-400,12345678901234567890123,NaN,-Infinity]},'
        '"prompt_tokens":[],"generated_tokens":[{"step":0,"text":"\\u2028\u2029","attention":null}]}'
    )
    cap = check(scratch(text.encode("utf-8")))
    assert cap.attention(0) is None
    assert cap.tokens["text"][0] == "\u2028\u2029"


def test_whitespace_everywhere(scratch):
    ws = " \t\r\n"
    text = (
        f'{ws}{{{ws}"generated_tokens"{ws}:{ws}[{ws}{{{ws}"step"{ws}:{ws}4{ws},{ws}"attention"{ws}:{ws}{{'
        f'{ws}"shape"{ws}:{ws}[{ws}1{ws},{ws}1{ws},{ws}3{ws}]{ws},{ws}"context_length"{ws}:{ws}3{ws},'
        f'{ws}"data"{ws}:{ws}[{ws}0.5{ws},{ws}-1e-7{ws},{ws}null{ws}]{ws}}}{ws}}}{ws}]{ws}}}{ws}'
    )
    cap = check(scratch(text))
    assert cap.tokens["step"].tolist() == [4]
    for window in (1, 2, 5):
        check(scratch(text), window)


def test_empty_and_null_attention(scratch):
    """Tokens without attention: null, missing, data null; ctx 0 gives an empty [l, h, 0] block."""
    text = (
        '{"generated_tokens":['
        '{"step":0,"attention":null},'
        '{"step":1},'
        '{"step":2,"attention":{"shape":[2,1,0],"context_length":0,"data":[]}},'
        '{"step":3,"attention":{"shape":[2,1,1],"context_length":1,"data":[ ]}}'
        "]}"
    )
    with pytest.raises(halo_fast.CaptureError):  # the last one has 2 values by shape, none in data
        halo_fast.load(scratch(text))
    text = text.replace('"data":[ ]', '"data":[1.5, 2.5]')
    cap = check(scratch(text))
    assert cap.tokens["has_attention"].tolist() == [False, False, True, True]
    assert cap.attention(2).shape == (2, 1, 0)
    assert cap.attention(3).ravel().tolist() == [1.5, 2.5]


def big_doc(n_tokens=12, layers=2, heads=3, start_ctx=900, seed=0) -> dict:
    """A few hundred KB: several probes / windows of the structural walk, arrays crossing every boundary."""
    rng = np.random.default_rng(seed)
    values = []
    for i in range(n_tokens):
        ctx = start_ctx + i
        x = rng.standard_normal(layers * heads * ctx).astype(np.float32) * np.float32(10.0) ** rng.integers(
            -9, 3, layers * heads * ctx
        ).astype(np.float32)
        texts = [Num(repr(float(v))) for v in x]
        texts[::97] = [Num("null")] * len(texts[::97])
        values.append(texts)
    values[0] = None
    doc = capture_doc(values, layers=layers, heads=heads)
    for i, token in enumerate(doc["generated_tokens"]):
        token["text"] = '"data":[ ] } \\' * (i % 3)
        if token["attention"] is not None:
            token["attention"]["decoy"] = {"data": [1, 2, 3]}
    return doc


@pytest.mark.parametrize("style", ["compact", "indent2", "random"])
@pytest.mark.parametrize("window", [None, 1, 7, 64, 1000, 65536])
def test_big_file_small_windows(scratch, style, window):
    doc = big_doc(seed=len(style))
    path = scratch(doc, style, random.Random(1))
    assert len(read(path)) > 3 * 65536
    check(path, window, style)


def filler_then_tricky_tokens_doc() -> dict:
    """More than 64 KiB of strings before the first attention array, then tokens full of escapes: the
    walker goes through the tail in window-sized steps, so every string, escape and key gets split."""
    texts = ['\\"', '"data":[', "\u00e9\\", "]}", "\U0001f600", "caf\u00e9", "\\", '{"a":[1]}']
    prompt = [
        {
            "token_id": i,
            "text": texts[i % len(texts)] * (1 + i % 3),
            "position": i,
            "turn_id": i // 500,
            "message_role": "user",
            "sentence_id": i % 7,
        }
        for i in range(1400)
    ]
    values = [
        None,
        [Num("0.5"), Num("-1E-7"), Num("null")],
        None,
        [Num("1.2345678741455078e-7")] * 3,
        [Num("Infinity"), Num("-0.0"), Num("0.1")],
    ]
    doc = capture_doc(values, prompt=prompt, metadata={"notes": texts * 10, "n": -0.0})
    for i, token in enumerate(doc["generated_tokens"]):
        token["text"] = texts[i] + '\\"data\\":['
        token["data"] = [1, 2]
        if token["attention"] is not None:
            token["attention"]["extra"] = {"data": [texts[i]]}
            token["attention"][RawKey("data", '"\\u0064ata"')] = token["attention"].pop("data")
    return doc


@pytest.mark.parametrize("style", ["compact", "random"])
@pytest.mark.parametrize("window", [1, 2, 3, 5, 7, 64])
def test_windows_split_strings_escapes_and_keys(scratch, style, window):
    doc = filler_then_tricky_tokens_doc()
    path = scratch(doc, style, random.Random(window))
    text = read(path)
    first_data = text.index(b"[0.5") if style == "compact" else len(text) // 2
    assert first_data > 65536 + 1000  # the first 64 KiB probe ends well before any attention
    check(path, window, style)


@settings(max_examples=examples(150))
@given(
    capture_documents(),
    st.sampled_from(STYLES),
    st.integers(0, 2**32),
    st.sampled_from([None, 1, 7, 64]),
    st.booleans(),
)
def test_random_documents(scratch, doc, style, seed, window, padded):
    """Random captures vs json.loads. `padded`: a 64 KiB string first, so the document itself is walked
    window by window (the first probe of pass 1 is 64 KiB)."""
    if padded:
        doc = {"padding": "x" * (65536 - 40), **doc}
    path = scratch(doc, style, random.Random(seed))
    check(path, window, style)


@settings(max_examples=examples(40))
@given(capture_documents(max_tokens=3), st.integers(0, 2**32))
def test_windows_give_identical_captures(scratch, doc, seed):
    path = scratch(doc, "random", random.Random(seed))
    base = halo_fast.load(path)
    for window in (1, 2, 7, 64):
        cap = load_json(path, window_bytes=window)
        assert np.array_equal(cap.values.view(np.uint32), base.values.view(np.uint32))
        assert np.array_equal(cap.offsets, base.offsets)
        assert np.array_equal(cap.shapes, base.shapes)
        for name in ("step", "token_id", "text", "position", "timestamp", "context_length", "has_attention"):
            assert cap.tokens[name].tolist() == base.tokens[name].tolist()


def test_dumps_is_valid_json():
    """The writer itself: every style gives the same value back through json.loads."""
    doc = tricky_doc()
    ref = json.loads(dumps(doc, "compact"))
    for style in STYLES:
        for seed in range(5):
            text = dumps(doc, style, random.Random(seed))
            assert json.dumps(json.loads(text), sort_keys=True) == json.dumps(ref, sort_keys=True), style


@settings(max_examples=examples(100))
@given(st.lists(st.one_of(decimal_texts(), float64_texts), max_size=12), st.sampled_from(STYLES))
def test_metadata_numbers_decode_like_json(scratch, numbers, style):
    """Numbers outside attention (metadata, prompt) keep json.loads' exact value and type (int vs float)."""
    doc = capture_doc([[0.5]], metadata={"numbers": [Num(t) for t in numbers], "n": Num(numbers[0]) if numbers else 1})
    doc["prompt_tokens"][0]["extra"] = [Num(t) for t in numbers]
    check(scratch(doc, style, random.Random(0)))
