"""The command line: subcommands, outputs, exit codes, atomic writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import halo_fast
from builders import capture_doc, write
from halo_fast.cli.main import main


@pytest.fixture
def capture(tmp_path):
    rng = np.random.default_rng(3)
    tensors = [rng.dirichlet(np.ones(6 + i), (2, 3)).astype(np.float32) for i in range(6)]
    return write(tmp_path / "cap.json", capture_doc(tensors, null_first=True, texts={2: 'say "hi"\n'}))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "halo_fast", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in ("reduce", "info", "decode", "synth", "demo"):
        assert name in result.stdout


def test_reduce_writes_documented_h5(capture, capsys):
    assert main(["reduce", capture]) == 0
    output = capture.replace(".json", ".reduced.h5")
    assert "5 tokens" in capsys.readouterr().out
    expected = halo_fast.reduce(capture)
    with h5py.File(output) as f:
        np.testing.assert_array_equal(f["reduced"][:], expected.data)
        assert f["steps"][:].tolist() == [1, 2, 3, 4, 5]
        assert f["context_length"][:].tolist() == [7, 8, 9, 10, 11]
        assert f["text"].asstr()[1] == 'say "hi"\n'
        assert f["prompt/text"].asstr()[0] == " p0"
        assert f.attrs["op"] == "mean" and f.attrs["over"] == "layers,heads"
        assert f.attrs["layers"].tolist() == [0, 1] and f.attrs["heads"].tolist() == [0, 1, 2]
        assert f.attrs["source"] == "cap.json"
        assert json.loads(f.attrs["metadata_json"]) == {"model": "test"}


def test_reduce_npz_json_and_selections(capture, tmp_path, capsys):
    out = str(tmp_path / "r.npz")
    code = main(["reduce", capture, "-o", out, "--over", "layers", "--heads", "0,2", "--every", "2", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == [2, 2, 10] and summary["tokens"] == 2
    assert summary["top_attended"] and set(summary["top_attended"][0]) == {"position", "text", "score"}
    with np.load(out) as z:
        expected = halo_fast.reduce(capture, over="layers", heads=[0, 2], every=2)
        np.testing.assert_array_equal(z["reduced"], expected.data)
        assert json.loads(str(z["attributes_json"]))["heads"] == [0, 2]
        assert z["prompt_text"][0] == " p0"


def test_reduce_refuses_to_overwrite(capture, capsys):
    output = capture.replace(".json", ".reduced.h5")
    with open(output, "w") as f:
        f.write("precious")
    assert main(["reduce", capture]) == 2
    assert "--force" in capsys.readouterr().err
    assert Path(output).read_text() == "precious"
    assert main(["reduce", capture, "--force"]) == 0
    assert h5py.is_hdf5(output)


def test_outputs_get_the_usual_file_mode(capture, tmp_path):
    """The temporary file is created owner-only; the renamed output follows the umask like any file."""
    out = tmp_path / "r.h5"
    mask = os.umask(0o022)
    try:
        assert main(["reduce", capture, "-o", str(out)]) == 0
    finally:
        os.umask(mask)
    assert os.stat(out).st_mode & 0o777 == 0o644


def test_failed_write_leaves_previous_output(capture, monkeypatch):
    output = capture.replace(".json", ".reduced.h5")
    with open(output, "w") as f:
        f.write("precious")
    import halo_fast.store.reduced as store

    def explode(path, arrays, attributes):
        with open(path, "w") as f:
            f.write("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "write_h5", explode)
    with pytest.raises(KeyboardInterrupt):
        store.save_reduced(halo_fast.reduce(capture), output, "h5", force=True)
    assert Path(output).read_text() == "precious"
    assert sorted(os.listdir(os.path.dirname(output))) == ["cap.json", "cap.reduced.h5"]


def test_exit_codes(capture, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"generated_tokens": [{"step": 0, "attention": {"shape": [1, 1, 2], "data": [1, 2, 3]}}]}')
    assert main(["reduce", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "byte" in err and "step 0" in err
    assert main(["reduce", capture, "--layers", "9"]) == 2
    assert run_cli("reduce").returncode == 2
    assert run_cli("reduce", str(tmp_path / "missing.json")).returncode == 1


def test_info_and_decode(capture, capsys):
    assert main(["info", capture, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tokens"] == 6 and info["tokens_with_attention"] == 5
    assert (info["layers"], info["heads"]) == (2, 3)
    assert (info["context_min"], info["context_max"]) == (7, 11)
    assert info["values"] == "probabilities"
    assert main(["info", capture]) == 0
    assert "probabilities" in capsys.readouterr().out
    assert main(["decode", capture, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["values"] == sum(2 * 3 * (6 + i) for i in range(1, 6))


def test_info_detects_logits(tmp_path, capsys):
    rng = np.random.default_rng(0)
    tensors = [(rng.standard_normal((2, 2, 5)) * 20).astype(np.float32) for _ in range(3)]
    path = write(tmp_path / "logits.json", capture_doc(tensors))
    assert main(["info", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["values"] == "logits"
