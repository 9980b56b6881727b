"""HDF5 captures (``convert``): bit-exact round trip, plain-h5py slicing, lazy reading, the CLI."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

import halo_fast
from formats_common import SYNTH, assert_same_capture, assert_same_reduced
from halo_fast import open_capture
from halo_fast.formats.hdf5 import open_lazy
from halo_fast.store.capture_h5 import convert
from halo_fast.synth import write_capture
from halo_fast.synth.writers import write_directory


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
        assert (source.flat is not None) == (compression == "none")  # compressed: padded copy only


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


def test_flat_values_and_padded_attention_hold_the_same_numbers(tmp_path, original):
    path, ref = original
    h5 = converted(path, tmp_path / "c.h5")
    with h5py.File(h5, "r") as f:
        assert f.attrs["format_version"] == 2
        assert f["values"].chunks is None  # contiguous: one read fills the output
        assert np.array_equal(f["values"][()].view(np.uint32), ref.values.view(np.uint32))
        assert np.array_equal(f["offsets"][()], ref.offsets)
        attention, offsets = f["attention"], f["offsets"][()]
        for t in np.flatnonzero(ref.tokens["has_attention"]).tolist():
            flat = f["values"][offsets[t] : offsets[t + 1]].reshape(ref.shapes[t])
            assert np.array_equal(flat.view(np.uint32), attention[t, :, :, : ref.shapes[t, 2]].view(np.uint32))


@pytest.mark.parametrize(
    "layers, heads, width, k",
    [
        (28, 28, 395, 14),
        (3, 2, 26, 3),
        (31, 32, 2048, 4),
        (32, 32, 512, 16),
        (31, 4, 2048, 31),
        (7, 1, 70000, 3),
        (2, 64, 8192, 1),
    ],
)
def test_chunks_split_layers_evenly(layers, heads, width, k):
    from halo_fast.store.capture_h5 import CHUNK_BYTES, chunk_layers

    assert chunk_layers(layers, heads, width) == k
    assert k * heads * width * 4 <= CHUNK_BYTES or k == 1


def _as_version_1(h5: str, target, chunk_layers: int, compression=None, drop=()) -> str:
    """The file a version-1 convert wrote: no values/offsets, attention chunked (1, chunk_layers, ...);
    the tokens in ``drop`` are not written (a damaged file)."""
    with h5py.File(h5, "r") as src, h5py.File(target, "w") as dst:
        for name, value in src.attrs.items():
            dst.attrs[name] = value
        dst.attrs["format_version"] = 1
        for name in ("shapes", "tokens", "prompt"):
            src.copy(src[name], dst, name)
        attention = src["attention"]
        chunks = (1, chunk_layers, *attention.shape[2:])
        out = dst.create_dataset(
            "attention", shape=attention.shape, dtype="<f4", chunks=chunks, fillvalue=np.nan, compression=compression
        )
        for t in np.flatnonzero(src["tokens/has_attention"][()]).tolist():
            if t not in drop:
                out[t] = attention[t]
    return str(target)


@pytest.mark.parametrize("chunk_layers, compression", [(3, None), (2, None), (1, None), (2, "gzip")])
def test_version_1_files_are_still_read(tmp_path, original, chunk_layers, compression):
    path, ref = original
    v1 = _as_version_1(converted(path, tmp_path / "c.h5"), tmp_path / "v1.h5", chunk_layers, compression)
    assert_same_capture(halo_fast.load(v1), ref)
    assert_same_reduced(halo_fast.reduce(v1, over="heads"), halo_fast.reduce(path, over="heads"))
    with open_lazy(v1) as cap:
        assert cap._source.flat is None
        assert np.array_equal(cap.attention(-1), ref.attention(-1))


def test_a_missing_chunk_is_an_error(tmp_path, original):
    path, ref = original
    v1 = _as_version_1(converted(path, tmp_path / "c.h5"), tmp_path / "v1.h5", 3, drop=(3,))
    with pytest.raises(halo_fast.CaptureError, match="damaged HDF5 capture: chunk of token 3") as error:
        halo_fast.load(v1)
    assert error.value.step == ref.tokens["step"][3]


def test_offsets_that_disagree_with_shapes_are_an_error(tmp_path, original):
    path, _ = original
    h5 = converted(path, tmp_path / "c.h5")
    with h5py.File(h5, "r+") as f:
        f["offsets"][-1] -= 1
    with pytest.raises(halo_fast.CaptureError, match="disagree with 'shapes'"):
        halo_fast.load(h5)


def test_converting_a_json_capture_releases_its_pages(tmp_path, original, monkeypatch):
    """The single-JSON reader's token_values parses through the file map and hands each token's pages back."""
    from halo_fast.formats.mapped import MappedFile

    path, ref = original
    released = []
    monkeypatch.setattr(MappedFile, "release", lambda self, start, stop: released.append((start, stop)))
    with open_capture(path) as source:
        assert source.format_name == "json"
        released.clear()  # the scan releases its windows too
        for i in np.flatnonzero(source.has_attention).tolist():
            source.token_values(i)
            start, stop = released[-1]
            assert start == source.layout.data_open[i] and stop == source.layout.data_close[i] + 1
    converted(path, tmp_path / "c.h5")
    assert len(released) >= 2 * int(ref.tokens["has_attention"].sum())
