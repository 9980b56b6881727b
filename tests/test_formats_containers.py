"""Capture directories and JSON lines (plain and gzip) decode identically to the single-JSON file."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import halo_fast
from formats_common import SYNTH, assert_same_capture, assert_same_reduced
from halo_fast import open_capture
from halo_fast.synth import write_capture
from halo_fast.synth.writers import write_directory, write_jsonlines


@pytest.fixture(scope="module", params=[False, True], ids=["probabilities", "logits"])
def reference(request, tmp_path_factory):
    kwargs = dict(SYNTH, logits=request.param)
    path = str(tmp_path_factory.mktemp("ref") / "capture.json")
    write_capture(path, **kwargs)
    return kwargs, halo_fast.load(path), halo_fast.reduce(path, over="layers")


def check(path, reference, format_name):
    kwargs, ref, reduced = reference
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean capture reports no problem
        assert_same_capture(halo_fast.load(path), ref)
        assert_same_reduced(halo_fast.reduce(path, over="layers"), reduced)
        with open_capture(path) as source:
            assert source.format_name == format_name
            i = int(np.flatnonzero(source.has_attention)[-1])
            assert np.array_equal(source.token_values(i), ref.attention(i).ravel())


@pytest.mark.parametrize("style", ["js", "py", "indent"])
def test_directory_of_token_json_files(tmp_path, reference, style):
    check(write_directory(tmp_path / "capture_1", kind="json", style=style, **reference[0]), reference, "directory")


def test_directory_of_bin_files(tmp_path, reference):
    check(write_directory(tmp_path / "capture_1", kind="bin", **reference[0]), reference, "directory")


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("metadata", ["line", "sibling"])
@pytest.mark.parametrize(
    "encoding,events",
    [("json", False), ("base64", False), ("base64", True)],
    ids=["numbers", "base64", "kobold-events"],
)
def test_json_lines(tmp_path, reference, compress, metadata, encoding, events):
    name = "capture.jsonl" + (".gz" if compress else "")
    path = write_jsonlines(
        tmp_path / name, compress=compress, metadata=metadata, encoding=encoding, events=events, **reference[0]
    )
    check(path, reference, "jsonl.gz" if compress else "jsonl")


def test_json_lines_detected_by_content(tmp_path, reference):
    path = write_jsonlines(tmp_path / "capture.json", **reference[0])  # JSON lines under a .json name
    check(path, reference, "jsonl")


def test_gzip_reads_in_small_chunks(tmp_path, reference, monkeypatch):
    from halo_fast.formats import jsonlines

    path = write_jsonlines(tmp_path / "capture.jsonl.gz", compress=True, **reference[0])
    original = jsonlines.gz_lines
    monkeypatch.setattr(jsonlines, "gz_lines", lambda p, chunk=0: original(p, 7))  # lines split across chunks
    check(path, reference, "jsonl.gz")


# ---- damaged directories: reported, or an error with strict=True


def test_gap_is_reported(tmp_path):
    path = write_directory(tmp_path / "capture_1", kind="bin", skip={2, 3}, **SYNTH)
    with pytest.warns(UserWarning, match="missing token indices 2-3"):
        cap = halo_fast.load(path)
    assert cap.tokens["step"].tolist() == [0, 1, 4, 5, 6]
    with pytest.raises(halo_fast.CaptureError, match="missing token indices 2-3"):
        with open_capture(path, strict=True):
            pass


def test_short_and_missing_bin(tmp_path):
    """A short .bin is a token cut short (truncation: recover drops it); a missing .bin is only reported."""
    path = write_directory(tmp_path / "capture_1", kind="bin", **SYNTH)
    short = os.path.join(path, "token_00003_attn.bin")
    with open(short, "r+b") as f:
        f.truncate(os.path.getsize(short) - 4)
    os.unlink(os.path.join(path, "token_00005_attn.bin"))
    with pytest.raises(halo_fast.CaptureError, match=r"truncated: token_00003_attn.bin holds \d+ of \d+ bytes"):
        halo_fast.load(path)
    with pytest.warns(UserWarning) as caught:
        cap = halo_fast.load(path, recover=True)
    assert "token 5 (step 5) has an attention shape but no .bin" in str(caught[0].message)
    assert cap.tokens["step"].tolist() == [0, 1, 2, 4, 5, 6]
    assert cap.tokens["has_attention"].tolist() == [False, True, True, True, False, True]
    assert cap.recovery["lost_steps"] == [3]
    with pytest.raises(halo_fast.CaptureError, match="1 problem"):
        with open_capture(path, strict=True, recover=True):
            pass


def test_stray_bin_and_missing_metadata(tmp_path):
    path = write_directory(tmp_path / "capture_1", kind="bin", **SYNTH)
    os.unlink(os.path.join(path, "token_00006_meta.json"))
    with pytest.warns(UserWarning, match="token_00006_attn.bin has no _meta.json"):
        assert len(halo_fast.load(path)) == 6
    os.unlink(os.path.join(path, "metadata.json"))
    with pytest.raises(halo_fast.CaptureError, match="without metadata.json"):
        halo_fast.load(path)


def test_broken_token_file_names_its_file(tmp_path):
    path = write_directory(tmp_path / "capture_1", kind="json", **SYNTH)
    broken = os.path.join(path, "token_00004.json")
    text = Path(broken).read_bytes()
    Path(broken).write_bytes(text.replace(b",", b",,", 30)[: len(text)])
    with pytest.raises(halo_fast.CaptureError) as error:
        halo_fast.load(path)
    assert error.value.path == broken and error.value.offset is not None and error.value.offset <= len(text)


def test_layers_must_agree_across_files(tmp_path):
    path = write_directory(tmp_path / "capture_1", kind="bin", **SYNTH)
    meta_path = os.path.join(path, "token_00004_meta.json")
    meta = json.loads(Path(meta_path).read_text())
    meta["attention_shape"] = [2, 3, meta["attention_shape"][2]]
    Path(meta_path).write_text(json.dumps(meta))
    with pytest.raises(halo_fast.CaptureError, match="layers x"):
        halo_fast.load(path)


def test_describe_and_check_work_on_a_directory(tmp_path):
    from halo_fast.describe import describe
    from halo_fast.quality import check as quality_check

    path = write_directory(tmp_path / "capture_1", kind="bin", **SYNTH)
    assert describe(path)["format"] == "directory"
    assert quality_check(path)["tokens"] == SYNTH["tokens"]
