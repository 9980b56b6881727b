"""The Capture object: lengths, views into one float32 buffer, offsets, token tables."""

from __future__ import annotations

import json
import pathlib
import random

import numpy as np
import pytest
from hypothesis import given, settings

import halo_fast
from reference import (
    Num,
    assert_capture_matches,
    capture_doc,
    capture_documents,
    dumps,
    examples,
    reference_array,
)

INT_TOKEN_COLUMNS = ("step", "token_id", "position", "timestamp", "context_length")
INT_PROMPT_COLUMNS = ("token_id", "position", "turn_id", "sentence_id")


def sample_doc() -> dict:
    prompt = [
        {"token_id": 9707, "text": "Hello", "position": 0, "turn_id": 0, "message_role": "system", "sentence_id": 0},
        {"token_id": 11, "text": ",", "position": 1, "turn_id": 0, "role": "system", "sentence_id": 0},
        {"token_id": 1879, "text": " world\n", "position": 2, "turn_id": 1, "message_role": "user", "sentence_id": 0},
    ]
    rng = np.random.default_rng(3)
    values = [None]
    for step in range(1, 4):
        ctx = 3 + step
        values.append([Num(repr(float(v))) for v in rng.random(2 * 3 * ctx).astype(np.float32)])
    doc = capture_doc(
        values,
        layers=2,
        heads=3,
        prompt=prompt,
        metadata={
            "timestamp": 1763681849744,
            "model": "Qwen2.5-VL-7B-Instruct-Q8_0",
            "config": {"max_length": 512, "temperature": 0.7, "top_p": 0.9},
        },
    )
    return doc


@pytest.fixture
def sample(write_capture):
    path = write_capture(sample_doc(), "indent2")
    return path, halo_fast.load(path)


def test_lengths_and_shapes(sample):
    _path, cap = sample
    assert len(cap) == 4
    assert cap.n_layers == 2 and cap.n_heads == 3  # the first token (no attention) does not count
    assert cap.attention(0) is None
    for i in range(1, 4):
        a = cap.attention(i)
        assert a.shape == (2, 3, 3 + i)
        assert a.dtype == np.float32
    assert cap.attention(-1).shape == (2, 3, 6)
    with pytest.raises(IndexError):
        cap.attention(4)
    with pytest.raises(IndexError):
        cap.attention(-5)


def test_attention_is_a_view_of_values(sample):
    _path, cap = sample
    assert isinstance(cap.values, np.ndarray) and cap.values.dtype == np.float32 and cap.values.ndim == 1
    for i in range(1, len(cap)):
        a = cap.attention(i)
        assert np.shares_memory(a, cap.values)
        start, stop = int(cap.offsets[i]), int(cap.offsets[i + 1])
        assert np.array_equal(a.ravel().view(np.uint32), cap.values[start:stop].view(np.uint32))


def test_offsets(sample):
    _path, cap = sample
    offsets = cap.offsets
    assert isinstance(offsets, np.ndarray) and offsets.dtype == np.int64
    assert len(offsets) == len(cap) + 1
    assert offsets[0] == 0 and offsets[-1] == len(cap.values)
    sizes = np.diff(offsets)
    assert sizes[0] == 0  # the token without attention takes no room
    assert sizes[1:].tolist() == [2 * 3 * (3 + i) for i in range(1, 4)]


def test_values_match_reference(sample):
    path, cap = sample
    with open(path, "rb") as f:
        text = f.read()
    assert_capture_matches(cap, text)
    doc = json.loads(text)
    # data[l*H*C + h*C + i] = attention(l, h, i): row-major, as the guide says
    data = doc["generated_tokens"][2]["attention"]["data"]
    a = cap.attention(2)
    L, H, C = a.shape
    for layer in range(L):
        for head in range(H):
            for i in range(C):
                assert a[layer, head, i] == reference_array([data[layer * H * C + head * C + i]])[0]


def test_token_table(sample):
    _path, cap = sample
    tokens = cap.tokens
    assert len(tokens) == len(cap)
    for name in INT_TOKEN_COLUMNS:
        assert isinstance(tokens[name], np.ndarray) and np.issubdtype(tokens[name].dtype, np.integer), name
    assert tokens["step"].tolist() == [0, 1, 2, 3]
    assert tokens["token_id"].tolist() == [1000, 1001, 1002, 1003]
    assert tokens["position"].tolist() == [3, 4, 5, 6]
    assert tokens["timestamp"].tolist() == [1763681850123 + i for i in range(4)]
    assert tokens["context_length"].tolist()[1:] == [4, 5, 6]
    assert tokens["text"].tolist() == [" t0", " t1", " t2", " t3"]
    assert tokens["has_attention"].dtype == np.bool_
    assert tokens["has_attention"].tolist() == [False, True, True, True]


def test_prompt_table_and_role_alias(sample):
    _path, cap = sample
    prompt = cap.prompt_tokens
    assert len(prompt) == 3
    for name in INT_PROMPT_COLUMNS:
        assert isinstance(prompt[name], np.ndarray) and np.issubdtype(prompt[name].dtype, np.integer), name
    assert prompt["text"].tolist() == ["Hello", ",", " world\n"]
    assert prompt["position"].tolist() == [0, 1, 2]
    assert prompt["turn_id"].tolist() == [0, 0, 1]
    assert prompt["sentence_id"].tolist() == [0, 0, 0]
    # older exports call it "role": read as message_role
    assert prompt["message_role"].tolist() == ["system", "system", "user"]
    assert prompt["role"].tolist() == ["system", "system", "user"]


def test_only_old_role_key(write_capture):
    prompt = [{"token_id": 1, "text": "x", "position": 0, "turn_id": 0, "role": "assistant", "sentence_id": 0}]
    cap = halo_fast.load(write_capture(capture_doc([[0.5]], prompt=prompt)))
    assert cap.prompt_tokens["message_role"].tolist() == ["assistant"]


def test_metadata(sample):
    path, cap = sample
    with open(path) as f:
        assert cap.metadata == json.load(f)["metadata"]
    assert cap.metadata["config"]["temperature"] == 0.7


def test_path_types_and_independence_from_the_file(write_capture):
    path = write_capture(capture_doc([[0.5, 0.25]]))
    a = halo_fast.load(path)
    b = halo_fast.load(pathlib.Path(path))
    assert np.array_equal(a.values, b.values)
    snapshot = a.values.copy()
    pathlib.Path(path).write_text(dumps(capture_doc([[9.0, 9.0]])))  # the capture does not read the file later
    assert np.array_equal(a.values, snapshot)
    assert np.array_equal(b.attention(0).ravel(), [0.5, 0.25])


def test_no_generated_tokens(write_capture):
    cap = halo_fast.load(write_capture('{"metadata":{"a":1},"prompt_tokens":[],"generated_tokens":[]}'))
    assert len(cap) == 0
    assert cap.offsets.tolist() == [0] and cap.offsets.dtype == np.int64
    assert len(cap.values) == 0 and cap.values.dtype == np.float32
    assert cap.n_layers == 0 and cap.n_heads == 0
    assert len(cap.tokens) == 0 and len(cap.prompt_tokens) == 0
    assert cap.metadata == {"a": 1}


def test_only_null_attention(write_capture):
    cap = halo_fast.load(write_capture(capture_doc([None, None])))
    assert len(cap) == 2 and cap.attention(0) is None and cap.attention(1) is None
    assert cap.offsets.tolist() == [0, 0, 0]
    assert cap.tokens["has_attention"].tolist() == [False, False]


def test_guide_example_analysis(write_capture):
    """The guide's own analysis recipe gives the same numbers on the Capture as on json.load."""
    doc = capture_doc(
        [[Num(repr(float(v))) for v in np.linspace(0, 1, 2 * 2 * 5, dtype=np.float32)]] * 3, layers=2, heads=2
    )
    path = write_capture(doc, "python")
    cap = halo_fast.load(path)
    with open(path) as f:
        data = json.load(f)
    token = data["generated_tokens"][1]
    expected = np.asarray(token["attention"]["data"], dtype=np.float32).reshape(token["attention"]["shape"])
    assert np.array_equal(cap.attention(1).mean(axis=(0, 1)), expected.mean(axis=(0, 1)))


@settings(max_examples=examples(60))
@given(capture_documents(max_tokens=5, max_ctx=4))
def test_invariants_on_random_captures(scratch, doc):
    path = scratch(doc, "random", random.Random(len(doc)))
    cap = halo_fast.load(path)
    n = len(cap)
    assert cap.offsets.dtype == np.int64 and len(cap.offsets) == n + 1 and cap.offsets[0] == 0
    assert cap.offsets[-1] == len(cap.values) and np.all(np.diff(cap.offsets) >= 0)
    layers = heads = None
    for i in range(n):
        a = cap.attention(i)
        if a is None:
            assert not cap.tokens["has_attention"][i]
            assert cap.offsets[i + 1] == cap.offsets[i]
            continue
        assert a.ndim == 3 and a.size == cap.offsets[i + 1] - cap.offsets[i]
        if a.size:
            assert np.shares_memory(a, cap.values)
        if layers is None:
            layers, heads = a.shape[:2]
        assert a.shape[:2] == (layers, heads)
        assert cap.tokens["context_length"][i] == a.shape[2]
    assert cap.n_layers == (layers or 0) and cap.n_heads == (heads or 0)
    for name in INT_TOKEN_COLUMNS:
        assert isinstance(cap.tokens[name], np.ndarray)
