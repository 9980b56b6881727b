"""The benchmark suite still runs end to end and its correctness checks pass (no speed asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np


def test_bench_quick_smoke(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "halo_fast",
            "bench",
            "--quick",
            "--json",
            "--sections",
            "main",
            "--contenders",
            "halo_fast,json,simdjson,read",
            "--repeat",
            "1",
            "--size",
            "5MB",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"]
    for task in ("load", "reduce"):
        rows = {row["contender"]: row for row in report["tasks"][task]}
        assert rows["halo_fast"]["status"] == "ok"
        assert rows["json"]["status"] == "ok" and rows["simdjson"]["status"] == "ok"


def test_large_adds_a_5gb_scaling_size():
    from halo_fast.cli.bench_cmd import config_from
    from halo_fast.cli.main import build_parser

    args = build_parser().parse_args(["bench", "--large"])
    assert config_from(args).sizes[-1] == 5_000_000_000
    assert 5_000_000_000 not in config_from(build_parser().parse_args(["bench"])).sizes


def test_bench_format_sections_smoke(tmp_path):
    """The .bin directory, HDF5, gzip and convert sections run, and every reader agrees with the JSON decode."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "halo_fast",
            "bench",
            "--json",
            "--sections",
            "directory,hdf5,gzip,convert",
            "--repeat",
            "1",
            "--size",
            "5MB",
            "--sizes",
            "5MB",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"]
    rows = report["directory"]["rows"] + report["hdf5"]["rows"] + report["convert"]["rows"]
    rows += [row for part in report["gzip"]["inputs"] for row in part["rows"]]
    assert all(row["status"] == "ok" for row in rows), [(r.get("contender"), r.get("note")) for r in rows]
    assert {row["contender"] for row in report["directory"]["rows"]} == {
        "np.fromfile (floor)",
        "halo_fast load",
        "halo_fast reduce",
    }
    checks = [row["check"] for row in report["directory"]["rows"] + report["hdf5"]["rows"][1:] if "check" in row]
    assert checks and all(c.startswith(("same bits", "allclose")) for c in checks)
    assert report["hdf5"]["input"]["params"]["format_version"] == 2
    assert [part["input"]["form"] for part in report["gzip"]["inputs"]] == ["jsonl.gz", "json.gz"]


def test_format_inputs_are_cached_and_remade_when_stale(tmp_path):
    from halo_fast.benchmark.data import ensure_forms

    cap, forms = ensure_forms(str(tmp_path), 2_000_000, ("bin", "h5"))
    assert sorted(forms) == ["bin", "h5"] and forms["bin"]["bin_files"] == cap["with_attention"]
    again, cached = ensure_forms(str(tmp_path), 2_000_000, ("bin", "h5"))
    assert cached["h5"]["write_seconds"] == forms["h5"]["write_seconds"]  # reused, not rewritten
    with open(cap["path"], "r+b") as f:  # a capture from another synth: its numbers differ
        text = f.read()
        at = text.rindex(b'"data":[') + len(b'"data":[')  # the last token: the one compared with synth
        f.seek(at)
        f.write(b"0.5" + b" " * (text.index(b",", at) - at - 3))
    import halo_fast

    assert halo_fast.load(cap["path"]).attention(-1).flat[0] == np.float32(0.5)
    remade, _ = ensure_forms(str(tmp_path), 2_000_000, ("bin", "h5"))
    assert halo_fast.load(remade["path"]).attention(-1).flat[0] != np.float32(0.5)
