"""Detection (one entry point for every format) and base64 / aggregated attention in any container."""

from __future__ import annotations

import base64
import gzip
import json

import numpy as np
import pytest

import halo_fast
from formats_common import SYNTH, assert_same_capture
from halo_fast.formats.detect import detect
from halo_fast.synth import write_capture
from halo_fast.synth.writers import _event, _synth, gzip_file


def b64(values: np.ndarray) -> str:
    return base64.b64encode(values.astype("<f4").tobytes()).decode()


@pytest.mark.parametrize("content", [b"\x00\x01binary", b"PK\x03\x04zip"])
def test_unknown_file_lists_supported_formats(tmp_path, content):
    path = tmp_path / "capture.bin"
    path.write_bytes(content)
    with pytest.raises(halo_fast.CaptureError, match="supported"):
        halo_fast.load(path)


def test_empty_directory_lists_supported_formats(tmp_path):
    with pytest.raises(halo_fast.CaptureError, match="supported: a single-JSON capture"):
        halo_fast.load(tmp_path)


def test_gzipped_single_json_is_detected(tmp_path):
    path = str(tmp_path / "capture.json")
    write_capture(path, **SYNTH)
    gz = gzip_file(path, path + ".gz")
    assert detect(gz) == "json.gz"
    assert_same_capture(halo_fast.load(gz), halo_fast.load(path))


def test_pretty_printed_json_is_not_json_lines(tmp_path):
    path = str(tmp_path / "capture.json")
    write_capture(path, style="indent", **SYNTH)
    assert detect(path) == "json"


@pytest.mark.parametrize(
    "first",
    [
        {"padding": "x" * 70000, "": {"attention": None}},  # an object holding "attention" deeper down
        {"description": "attention " * 9000, "notes": {"type": "attention study"}},
        {"prompt_tokens": [{"text": "attention"}] * 9000},  # a long prompt about attention, before the tokens
    ],
)
def test_one_line_capture_with_attention_words_in_its_first_64_kib_is_single_json(tmp_path, first):
    """A compact capture whose first 64 KiB hold "attention" or "type" but not "generated_tokens"."""
    doc = {**first, "generated_tokens": [{"step": 0, "token_id": 1, "text": "", "position": 1, "attention": None}]}
    doc.setdefault("prompt_tokens", [{"token_id": 0, "text": "a", "position": 0}])
    path = tmp_path / "capture.json"
    path.write_text(json.dumps(doc, separators=(",", ":")))
    assert detect(str(path)) == "json"


def test_one_huge_token_line_is_json_lines(tmp_path):
    line = {"step": 0, "token_id": 1, "text": "", "position": 1}
    line["attention"] = {"shape": [1, 1, 20000], "context_length": 20000, "data": [0.5] * 20000}
    path = tmp_path / "capture.json"
    path.write_text(json.dumps(line, separators=(",", ":")) + "\n" + json.dumps(line, separators=(",", ":")))
    assert detect(str(path)) == "jsonl"


@pytest.mark.parametrize("name", ["capture.jsonl", "capture.ndjson", "capture.jsonl.gz"])
def test_a_single_json_named_as_json_lines_is_read_as_one(tmp_path, name):
    """The name says JSON lines, the first line is a whole capture: it is read as the capture, not as
    JSON lines holding only a metadata line (which gave no tokens at all)."""
    path = str(tmp_path / "capture.json")
    write_capture(path, **SYNTH)
    named = str(tmp_path / name)
    if name.endswith(".gz"):
        gzip_file(path, named)
    else:
        with open(path, "rb") as src, open(named, "wb") as dst:
            dst.write(src.read())
    assert detect(named) == ("json.gz" if name.endswith(".gz") else "json")
    assert_same_capture(halo_fast.load(named), halo_fast.load(path))
    np.testing.assert_array_equal(halo_fast.reduce(named).data, halo_fast.reduce(path).data)


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_whole_capture_line_past_the_peek_is_refused(tmp_path, gzipped):
    """Its 'generated_tokens' key beyond the first 64 KiB (a long prompt first): the JSON-lines reader
    says what the file is instead of reading no token."""
    prompt = [{"token_id": i, "text": "a long prompt", "position": i} for i in range(3000)]
    token = {"step": 0, "token_id": 1, "text": "", "position": 3000}
    token["attention"] = {"shape": [1, 1, 2], "context_length": 2, "data": [0.5, 0.25]}
    text = json.dumps({"metadata": {}, "prompt_tokens": prompt, "generated_tokens": [token]}, separators=(",", ":"))
    assert text.index("generated_tokens") > 1 << 16
    path = tmp_path / ("capture.jsonl.gz" if gzipped else "capture.jsonl")
    path.write_bytes(gzip.compress(text.encode()) if gzipped else text.encode())
    assert detect(str(path)) == ("jsonl.gz" if gzipped else "jsonl")
    for call in (halo_fast.load, halo_fast.reduce):
        with pytest.raises(halo_fast.CaptureError, match="whole single-JSON capture"):
            call(str(path))


def test_json_lines_whose_metadata_line_counts_generated_tokens(tmp_path):
    """A 'generated_tokens' key that is not a list on the first line: JSON lines, as the name says."""
    first = {"metadata": {"model": "m"}, "prompt_tokens": [{"token_id": 1, "text": "a", "position": 0}]}
    first["generated_tokens"] = 2
    token = {"step": 0, "token_id": 5, "text": "x", "position": 1}
    token["attention"] = {"shape": [1, 1, 2], "context_length": 2, "data": [0.5, 0.25]}
    path = tmp_path / "capture.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in (first, token, {**token, "step": 1})) + "\n")
    assert detect(str(path)) == "jsonl"
    assert halo_fast.load(str(path)).values.tolist() == [0.5, 0.25, 0.5, 0.25]


def test_base64_in_a_single_json_file(tmp_path):
    reference = str(tmp_path / "capture.json")
    write_capture(reference, **SYNTH)
    synth = _synth(SYNTH)
    doc = {
        "metadata": synth.metadata("js"),
        "prompt_tokens": synth.prompt_tokens,
        "generated_tokens": [_event(synth, s, False) for s in range(synth.tokens)],
    }
    path = tmp_path / "b64.json"
    path.write_text(json.dumps(doc))
    ref = halo_fast.load(reference)
    assert_same_capture(halo_fast.load(path), ref)
    for op in ("mean", "max"):
        a, b = halo_fast.reduce(path, op=op), halo_fast.reduce(reference, op=op)
        assert np.array_equal(a.data.view(np.uint32), b.data.view(np.uint32))


def one_token(attention) -> dict:
    return {
        "metadata": {},
        "prompt_tokens": [],
        "generated_tokens": [{"step": 0, "token_id": 1, "text": "x", "position": 3, "attention": attention}],
    }


def test_aggregated_rows(tmp_path):
    row = np.array([0.5, 0.25, 0.25, 1e-30], dtype=np.float32)
    path = tmp_path / "agg.json"
    path.write_text(
        json.dumps(
            one_token(
                {
                    "format": "aggregated",
                    "shape": [4],
                    "context_length": 4,
                    "encoding": "base64",
                    "dtype": "float32",
                    "data": b64(row),
                }
            )
        )
    )
    cap = halo_fast.load(path)
    assert cap.attention(0).shape == (1, 1, 4)
    assert np.array_equal(cap.attention(0)[0, 0], row)


@pytest.mark.parametrize(
    "attention,message",
    [
        ({"shape": [1, 1, 4], "encoding": "base64", "dtype": "float32", "data": "AAAA"}, "characters"),
        ({"shape": [1, 1, 1], "encoding": "base64", "dtype": "float32", "data": "AAA*AA=="}, "invalid base64"),
        ({"shape": [1, 1, 1], "encoding": "base64", "dtype": "float16", "data": "AAAA"}, "float32 only"),
        ({"shape": [1, 1, 1], "data": "AAAAAA=="}, "without"),
    ],
)
def test_bad_base64_is_a_capture_error(tmp_path, attention, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(one_token(attention)))
    with pytest.raises(halo_fast.CaptureError, match=message) as error:
        halo_fast.load(path)
    assert error.value.step == 0


def test_gzip_damage_is_a_capture_error(tmp_path):
    path = tmp_path / "capture.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b'{"prompt_tokens": []}\n' + b'{"step": 0, "attention": null}\n' * 1000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(halo_fast.CaptureError, match="gzip"):
        halo_fast.load(path)
