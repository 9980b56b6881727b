"""``convert --format dir-bin|dir-json``: every input form -> a capture directory that loads back the same.

Same means bit for bit the same float32 values, the same shapes and offsets, the same token and
prompt tables (dtype and values; NaN where NaN) and the same metadata, for every input format the
suite builds and for random capture documents with odd texts, literals and missing fields.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

import halo_fast
from formats_common import SYNTH
from halo_fast import open_capture
from halo_fast.cli.main import main
from halo_fast.formats.token_list import split_metadata
from halo_fast.store import capture_dir
from halo_fast.store.capture_dir import convert_directory, json_floats, metadata_document
from halo_fast.store.capture_h5 import convert as convert_h5
from halo_fast.synth import write_capture
from halo_fast.synth.writers import gzip_file, write_directory, write_jsonlines
from reference import capture_documents, examples, json_identical

KINDS = ("bin", "json")


def assert_same_column(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype, what
    if want.dtype.kind == "f":
        assert np.array_equal(got, want, equal_nan=True), what
    else:
        assert np.array_equal(got, want), what


def assert_same_tables(got, want, what: str) -> None:
    assert got.columns == want.columns, what
    for name in want.columns:
        assert_same_column(np.asarray(got[name]), np.asarray(want[name]), f"{what}/{name}")


def assert_round_trip(cap, ref) -> None:
    """``cap`` (the converted directory, loaded) holds exactly what ``ref`` (the input, loaded) does."""
    assert np.array_equal(cap.offsets, ref.offsets)
    assert np.array_equal(cap.shapes, ref.shapes)
    assert cap.values.dtype == np.float32
    assert np.array_equal(cap.values.view(np.uint32), ref.values.view(np.uint32))
    assert_same_tables(cap.tokens, ref.tokens, "tokens")
    assert_same_tables(cap.prompt_tokens, ref.prompt_tokens, "prompt")
    assert json_identical(cap.metadata, ref.metadata)


def converted(path, target, kind: str, **options) -> str:
    with open_capture(path) as source:
        convert_directory(source, str(target), kind=kind, **options)
    return str(target)


# ----------------------------------------------------------------- every input format the suite builds


def _json(folder, name="c.json", style="js"):
    path = os.path.join(folder, name)
    write_capture(path, style=style, workers=0, **INPUT)
    return path


def _h5(folder, compression):
    json_path = _json(folder, "src.json")
    target = os.path.join(folder, "capture.h5")
    with open_capture(json_path) as source:
        convert_h5(source, target, compression=compression)
    return target


INPUT = dict(SYNTH, logits=True)  # logits: negative values too
BUILDERS = {
    "json-js": lambda d: _json(d, style="js"),
    "json-py": lambda d: _json(d, style="py"),
    "json-indent": lambda d: _json(d, style="indent"),
    "json.gz": lambda d: gzip_file(_json(d), os.path.join(d, "c.json.gz")),
    "dir-json": lambda d: write_directory(os.path.join(d, "capture_1"), kind="json", **INPUT),
    "dir-bin": lambda d: write_directory(os.path.join(d, "capture_1"), kind="bin", **INPUT),
    "jsonl": lambda d: write_jsonlines(os.path.join(d, "c.jsonl"), **INPUT),
    "jsonl-sibling-metadata": lambda d: write_jsonlines(os.path.join(d, "c.jsonl"), metadata="sibling", **INPUT),
    "jsonl-base64": lambda d: write_jsonlines(os.path.join(d, "c.jsonl"), encoding="base64", **INPUT),
    "jsonl-kobold-events": lambda d: write_jsonlines(
        os.path.join(d, "c.jsonl"), encoding="base64", events=True, **INPUT
    ),
    "jsonl.gz": lambda d: write_jsonlines(os.path.join(d, "c.jsonl.gz"), compress=True, **INPUT),
    "jsonl.gz-base64": lambda d: write_jsonlines(
        os.path.join(d, "c.jsonl.gz"), compress=True, encoding="base64", **INPUT
    ),
    "h5": lambda d: _h5(d, "none"),
    "h5-gzip": lambda d: _h5(d, "gzip"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Each input form built once: name -> (path, its loaded capture)."""
    built = {}
    for name, build in BUILDERS.items():
        path = build(str(tmp_path_factory.mktemp(name.replace(".", "_"))))
        built[name] = (path, halo_fast.load(path))
    return built


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_input_form_converts_bit_exact(tmp_path, inputs, name, kind):
    path, ref = inputs[name]
    out = converted(path, tmp_path / "out", kind)
    cap = halo_fast.load(out)  # filterwarnings=error: a clean directory, no gap or stray reported
    assert_round_trip(cap, ref)
    with open_capture(out) as source:
        assert source.format_name == "directory"
    names = sorted(os.listdir(out))
    n = len(ref)
    if kind == "bin":
        with_attention = np.flatnonzero(ref.tokens["has_attention"]).tolist()
        assert names == sorted(
            ["metadata.json"]
            + [f"token_{i:05d}_meta.json" for i in range(n)]
            + [f"token_{i:05d}_attn.bin" for i in with_attention]
        )
        i = with_attention[-1]
        raw = np.fromfile(os.path.join(out, f"token_{i:05d}_attn.bin"), dtype="<f4")
        assert np.array_equal(raw.view(np.uint32), ref.attention(i).ravel().view(np.uint32))
    else:
        assert names == sorted(["metadata.json"] + [f"token_{i:05d}.json" for i in range(n)])
        token = json.loads(Path(out, f"token_{n - 1:05d}.json").read_text())
        assert token["step"] == int(ref.tokens["step"][-1])
        assert np.array_equal(np.asarray(token["attention"]["data"], np.float32), ref.attention(n - 1).ravel())


@pytest.mark.parametrize("kind", KINDS)
def test_tokens_are_streamed_not_decoded_whole(tmp_path, inputs, kind):
    path, ref = inputs["json-js"]
    with open_capture(path) as source:

        def whole(*args):
            raise AssertionError("convert decoded the whole capture")

        source.decode = whole
        convert_directory(source, str(tmp_path / "out"), kind=kind)
    assert_round_trip(halo_fast.load(str(tmp_path / "out")), ref)


# ----------------------------------------------------------------- odd values, texts and fields


@settings(max_examples=examples(40))
@given(capture_documents(max_tokens=4, max_ctx=4))
def test_random_captures_round_trip(scratch, tmp_path_factory, doc):
    """NaN/Infinity/null literals, -0.0, subnormals, lone surrogates, tricky texts, missing fields."""
    path = scratch(doc, "random", random.Random(len(doc)))
    ref = halo_fast.load(path)
    folder = tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())
    try:
        for kind in KINDS:
            assert_round_trip(halo_fast.load(converted(path, os.path.join(folder, kind), kind)), ref)
    finally:
        shutil.rmtree(folder)


def test_special_floats_are_exact_in_json(tmp_path):
    values = np.array(
        [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45, 1.17549435e-38, 3.4028235e38, 1.0, -2.0, 1e-5, 1e-7, 0.1],
        dtype=np.float32,
    )
    only_negative_zero = np.array([1.0, -0.0, 0.5], dtype=np.float32)  # finite, yet not the synth writer's case
    back = np.asarray(json.loads(json_floats(only_negative_zero)), dtype=np.float32)
    assert np.array_equal(back.view(np.uint32), only_negative_zero.view(np.uint32))
    text = json_floats(values)
    assert "-0.0" in text and "NaN" in text and "-Infinity" in text and "nan" not in text
    back = np.asarray(json.loads(text), dtype=np.float32)
    assert np.array_equal(back.view(np.uint32), values.view(np.uint32))
    finite = values[np.isfinite(values) & ~((values == 0) & np.signbit(values))]
    assert json_floats(finite) == "[" + ",".join(_js(v) for v in finite) + "]"  # the synth writer's digits


def _js(value) -> str:
    from halo_fast.synth.numbers import js_number

    return js_number(float(value))


def test_missing_fields_and_odd_metadata_round_trip(tmp_path):
    """Missing ints (-1) and floats (NaN) in the tables are written as null; a lone "metadata" object nests."""
    rng = np.random.default_rng(1)
    tokens = []
    for i in range(4):
        ctx = 3 + i
        data = rng.random(2 * ctx).astype(np.float32)
        token = {"step": i, "text": "\ud800" if i == 1 else f" t{i}", "timestamp": 1.5 + i if i != 2 else None}
        if i != 3:
            token["token_id"] = 2**70 if i == 0 else i  # beyond int64: an object column
        token["attention"] = None if i == 0 else {"shape": [1, 2, ctx], "data": [float(v) for v in data]}
        tokens.append(token)
    doc = {
        "metadata": {"metadata": {"model": "nested"}},
        "prompt_tokens": [{"token_id": 1, "text": "a", "position": 0}, {"text": "b", "role": "user"}],
        "generated_tokens": tokens,
    }
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(doc))
    ref = halo_fast.load(str(path))
    assert ref.tokens["timestamp"].dtype.kind == "f" and np.isnan(ref.tokens["timestamp"][2])
    assert ref.tokens["token_id"].dtype == object
    for kind in KINDS:
        out = converted(path, tmp_path / kind, kind)
        assert_round_trip(halo_fast.load(out), ref)
    meta = json.loads((tmp_path / "bin" / "token_00002_meta.json").read_text())
    assert meta["timestamp"] is None and meta["attention_shape"] == [1, 2, 5]
    prompt = json.loads((tmp_path / "bin" / "metadata.json").read_text())["prompt_tokens"]
    assert prompt[1]["token_id"] is None and prompt[1]["message_role"] == "user"


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"model": "m", "timestamp": 1},
        {"metadata": {"model": "m"}},
        {"metadata": 5},
        {"prompt_tokens": "mine", "model": "m"},
        {"generated_tokens": [], "x": 1},
    ],
)
def test_metadata_document_reads_back_as_the_metadata(metadata):
    prompt = [{"token_id": 1, "text": "a"}]
    document = metadata_document(metadata, prompt)
    assert split_metadata(json.loads(json.dumps(document)), "metadata.json") == (metadata, prompt)
    if metadata.keys() <= {"model", "timestamp"}:
        assert document == {**metadata, "prompt_tokens": prompt}  # the stream-to-disk writer's flat form


# ----------------------------------------------------------------- selection, atomicity, refusing to overwrite


@pytest.mark.parametrize("kind", KINDS)
def test_every_and_tokens_select_steps(tmp_path, inputs, kind):
    path, ref = inputs["json-js"]
    out = converted(path, tmp_path / "out", kind, every=2, tokens="1:6")
    cap = halo_fast.load(out)  # files numbered by row: no "missing token indices" warning
    assert cap.tokens["step"].tolist() == [1, 3, 5]
    with pytest.raises(FileExistsError):  # an existing output is never replaced without force
        converted(path, out, kind)
    for row, step in enumerate([1, 3, 5]):
        assert np.array_equal(cap.attention(row).view(np.uint32), ref.attention(step).view(np.uint32))


def test_an_error_midway_leaves_no_folder(tmp_path, inputs, monkeypatch):
    path, _ = inputs["json-js"]
    original = capture_dir.WRITERS["bin"]

    def failing(base, row, *args):
        if row == 3:
            raise RuntimeError("disk on fire")
        original(base, row, *args)

    monkeypatch.setitem(capture_dir.WRITERS, "bin", failing)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(RuntimeError, match="disk on fire"):
        converted(path, tmp_path / "out", "bin")
    assert sorted(os.listdir(tmp_path)) == before  # no target, no temporary folder

    old = tmp_path / "old"
    old.mkdir()
    (old / "keep.txt").write_text("previous output")
    with pytest.raises(RuntimeError, match="disk on fire"):
        converted(path, old, "bin", force=True)
    assert os.listdir(old) == ["keep.txt"]  # the previous output intact
    assert sorted(os.listdir(tmp_path)) == sorted(before + ["old"])


def test_cli_convert_to_directories(tmp_path, inputs, capsys):
    path, ref = inputs["json-js"]
    out = str(tmp_path / "out")
    assert main(["convert", path, "-o", out, "--format", "dir-bin", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "dir-bin" and summary["output"] == out and summary["tokens"] == len(ref)
    assert summary["output_mb"] > 0
    assert_round_trip(halo_fast.load(out), ref)

    assert main(["convert", path, "-o", out, "--format", "dir-json"]) == 2  # exists: needs --force
    assert "--force" in capsys.readouterr().err
    assert os.path.exists(os.path.join(out, "token_00001_attn.bin"))  # untouched
    assert main(["convert", path, "-o", out, "--format", "dir-json", "--force", "--every", "3"]) == 0
    assert "dir-json" in capsys.readouterr().out
    assert halo_fast.load(out).tokens["step"].tolist() == [0, 3, 6]
    assert not any(name.endswith("_attn.bin") for name in os.listdir(out))

    assert main(["convert", path, "--format", "dir-json"]) == 0  # default name beside the input
    capsys.readouterr()
    default = path.removesuffix(".json") + "_dir_json"
    assert_round_trip(halo_fast.load(default), ref)
    assert [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")] == []


def test_cli_format_choice(tmp_path, inputs, capsys):
    path, _ = inputs["json-js"]
    assert main(["convert", path, "-o", str(tmp_path / "a.h5")]) == 0  # default: HDF5
    with open_capture(str(tmp_path / "a.h5")) as source:
        assert source.format_name == "hdf5"
    assert main(["convert", path, "-o", str(tmp_path / "b.h5"), "--format", "dir-bin"]) == 2
    assert "ends in .h5" in capsys.readouterr().err
    assert main(["convert", path, "-o", str(tmp_path / "folder") + os.sep]) == 2  # a folder: say which form
    assert "--format dir-bin or dir-json" in capsys.readouterr().err
    assert main(["convert", path, "-o", str(tmp_path / "c"), "--format", "dir-bin", "--compression", "gzip"]) == 2
    assert main(["convert", path, "-o", str(tmp_path / "d"), "--format", "dir-bin", "--tokens", "100:200"]) == 2
    assert sorted(os.listdir(tmp_path)) == ["a.h5"]  # nothing else written
