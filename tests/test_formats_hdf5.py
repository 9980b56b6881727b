"""HDF5 captures (``convert``): bit-exact round trip, plain-h5py slicing, lazy reading, the CLI."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

import halo_fast
from formats_common import SYNTH, assert_same_capture, assert_same_reduced
from halo_fast.formats import open_capture
from halo_fast.formats.hdf5 import convert, open_lazy
from halo_fast.formats.writers import write_directory
from halo_fast.synth import write_capture


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("h5") / "capture.json")
    write_capture(path, logits=True, **SYNTH)
    return path, halo_fast.load(path)


def converted(source_path, target, **options):
    with open_capture(source_path) as source:
        convert(source, str(target), **options)
    return str(target)


@pytest.mark.parametrize("compression", ["gzip", "lzf", "none"])
def test_round_trip_is_bit_exact(tmp_path, original, compression):
    path, ref = original
    h5 = converted(path, tmp_path / "c.h5", compression=compression)
    assert_same_capture(halo_fast.load(h5), ref)
    assert_same_reduced(halo_fast.reduce(h5, over="heads"), halo_fast.reduce(path, over="heads"))
    with open_capture(h5) as source:
        assert source.format_name == "hdf5"


def test_plain_h5py_reads_one_row(tmp_path, original):
    path, ref = original
    h5 = converted(path, tmp_path / "c.h5")
    with h5py.File(h5, "r") as f:
        assert f.attrs["format"] == "halo_fast.capture"
        attention = f["attention"]
        assert attention.chunks[0] == 1 and attention.chunks[2:] == attention.shape[2:]
        ctx = int(f["tokens/context_length"][5])
        assert np.array_equal(attention[5, 2, 1, :ctx], ref.attention(5)[2, 1])
        assert np.isnan(attention[1, 0, 0, ctx:]).all()
        assert f["prompt/text"].asstr()[0] == ref.prompt_tokens["text"][0]
        assert json.loads(f.attrs["metadata_json"]) == ref.metadata


def test_lazy_capture_reads_on_demand(tmp_path, original):
    path, ref = original
    h5 = converted(path, tmp_path / "c.h5")
    with open_lazy(h5) as cap:
        assert cap._values is None
        assert cap.attention(0) is None
        assert np.array_equal(cap.attention(-1), ref.attention(-1))
        assert_same_reduced(cap.reduce(), ref.reduce())
        assert cap._values is None  # nothing read in full so far
        assert np.array_equal(cap.values.view(np.uint32), ref.values.view(np.uint32))


def test_convert_a_directory_and_token_selection(tmp_path, original):
    path, ref = original
    directory = write_directory(tmp_path / "capture_1", kind="bin", logits=True, **SYNTH)
    h5 = converted(directory, tmp_path / "d.h5", every=2, tokens="1:6")
    cap = halo_fast.load(h5)
    assert cap.tokens["step"].tolist() == [1, 3, 5]
    for row, step in enumerate([1, 3, 5]):
        assert np.array_equal(cap.attention(row), ref.attention(step))


def test_hdf5_that_is_not_a_capture(tmp_path, original):
    path, _ = original
    reduced = str(tmp_path / "r.h5")
    halo_fast.reduce(path)
    from halo_fast.store import save_reduced

    save_reduced(halo_fast.reduce(path), reduced)
    with pytest.raises(halo_fast.CaptureError, match="not a halo_fast capture"):
        halo_fast.load(reduced)


@pytest.fixture
def cli(monkeypatch):
    from halo_fast.cli import main as cli_main

    return cli_main.main


def test_cli_convert(tmp_path, original, cli, capsys):
    path, ref = original
    target = str(tmp_path / "out.h5")
    assert cli(["convert", path, "-o", target, "--compression", "gzip", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tokens"] == SYNTH["tokens"] and summary["compression"] == "gzip"
    assert_same_capture(halo_fast.load(target), ref)
    assert cli(["convert", path, "-o", target]) == 2  # exists: needs --force
    assert "--force" in capsys.readouterr().err
    assert cli(["convert", path, "-o", target, "--force", "--tokens", "2:4"]) == 0
    assert halo_fast.load(target).tokens["step"].tolist() == [2, 3]
    assert cli(["convert", path, "-o", str(tmp_path / "x.h5"), "--every", "0"]) == 2
    assert not os.path.exists(tmp_path / "x.h5")
    broken = tmp_path / "broken.json"
    broken.write_text('{"generated_tokens": [')
    assert cli(["convert", str(broken), "-o", str(tmp_path / "y.h5")]) == 1
    assert not os.path.exists(tmp_path / "y.h5")
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []
