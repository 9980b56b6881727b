"""The benchmark suite still runs end to end and its correctness checks pass (no speed asserted)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
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


@pytest.mark.slow
def test_bench_format_sections_smoke(tmp_path):
    """The .bin directory, HDF5, gzip, convert, evict and batch sections run, and every reader agrees with the
    JSON decode."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "halo_fast",
            "bench",
            "--json",
            "--sections",
            "directory,hdf5,gzip,convert,evict,batch",
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
    rows = report["directory"]["rows"] + report["hdf5"]["rows"] + report["convert"]["rows"] + report["evict"]["rows"]
    assert [row["command"] for row in report["evict"]["rows"]] == ["reduce", "evict"]
    assert report["evict"]["rows"][0]["ratio"] == 1.0 and report["evict"]["rows"][1]["ratio"] > 0
    batch = report["batch"]["rows"]
    if importlib.util.find_spec("distributed") is None:  # the [dask] extra is not installed: said, not failed
        assert all(r["status"] == "skipped" and "dask" in r["note"] for r in batch)
        batch = []
    else:
        assert [(r["job"], r["how"]) for r in batch][:3] == [
            ("reduce", "loop of single commands"),
            ("reduce", "batch, 1 worker(s)"),
            ("reduce", "batch, 2 worker(s)"),
        ]
        assert all(r["speedup"] > 0 and r["captures"] == 8 for r in batch) and batch[0]["speedup"] == 1.0
    rows += batch + [row for part in report["gzip"]["inputs"] for row in part["rows"]]
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


def test_rows_write_the_json_keys_read_them_back_and_render():
    """The typed rows give `bench --json`'s keys in its order; the report renders them or that JSON alike."""
    from halo_fast.benchmark import report
    from halo_fast.benchmark.rows import (
        Brief,
        ColdStart,
        ContenderRow,
        ConvertRow,
        FormatRow,
        FormatSection,
        Results,
        ScalingRow,
        ThreadRow,
        Timing,
    )

    timed = Timing("ok", median_s=0.5, min_s=0.4, runs_s=[0.5], peak_rss_mb=150.0, result={"crc32": "0"})
    child = Timing(**{**vars(timed), "inner_s": 0.2, "import_s": 0.1, "check_s": 0.01})
    halo = ContenderRow("load", "halo_fast", child, predicted_mb=180, check="reference", mb_per_s=40.0, ratio=1.0)
    orjson = ContenderRow("load", "orjson", Timing("skipped", "orjson is not installed"))
    floor = FormatRow("load", "np.fromfile (floor)", child, check="same bits as JSON", vs_floor=1.0, vs_floor_work=1.0)
    cap = {"path": "x.json", "bytes": 20_000_000, "tokens": 3, "with_attention": 2, "context": [201, 202]}
    results = Results(
        capture=cap,
        tasks={"load": [halo, orjson]},
        scaling=[ScalingRow("20MB", 20.0, 3, {"load": Brief.of(child, cap["bytes"]), "reduce": Brief("failed", "x")})],
        threads=[ThreadRow("load", {1: Brief.of(child, cap["bytes"]), 2: Brief.of(timed, cap["bytes"])})],
        cold_start=ColdStart("skipped", "no numba cache dir"),
        directory=FormatSection({**cap, "bin_files": 2}, 1.3, [floor]),
        convert=[ConvertRow("20MB", 20.0, 3, None, timed)],
        rss_floor_mb=7.0,
    )
    out = results.to_json()
    assert list(out) == ["capture", "tasks", "scaling", "threads", "cold_start", "directory", "convert"] + [
        "rss_floor_mb",
        "notes",
        "ok",
    ]
    assert list(out["tasks"]["load"][0]) == [
        "task",
        "contender",
        "status",
        "median_s",
        "min_s",
        "runs_s",
        "peak_rss_mb",
        "result",
        "inner_s",
        "import_s",
        "check_s",
        "predicted_mb",
        "check",
        "mb_per_s",
        "ratio",
    ]
    assert out["tasks"]["load"][1] == {
        "task": "load",
        "contender": "orjson",
        "status": "skipped",
        "note": "orjson is not installed",
    }
    assert list(out["directory"]["rows"][0])[:2] == ["contender", "task"]
    assert list(out["threads"][0]) == ["task", "1", "2"] and out["threads"][0]["2"]["inner_s"] is None
    assert out["scaling"][0]["reduce"] == {"status": "failed", "note": "x"}
    assert list(out["convert"]["rows"][0])[:5] == ["size", "mb", "tokens", "output_mb", "status"]
    assert out["ok"] is False  # the failed scaling run
    assert json.loads(json.dumps(Results.from_json(out).to_json())) == json.loads(json.dumps(out))

    result = {**out, "machine": report.machine_info(), "command": "python -m halo_fast bench", "config": {"repeat": 1}}
    assert report.sections(results) == report.sections(result)
    titles = [table.title.split(":")[0] for table in report.sections(result)]
    assert titles == ["load", "scaling", "threads", "cold start", "directory", "convert"]
    markdown = report.markdown(result)
    assert "| orjson | skipped |  |  |  |  |  |  | orjson is not installed |" in markdown
    assert "| task | 1 thread | 2 threads | speedup |" in markdown and "**Some checks failed**" in markdown
    assert report.text(result).endswith("SOME CHECKS FAILED (see the check column)")

    results.scaling = []
    assert results.ok
    halo.check = "MISMATCH (crc32 differs)"
    assert not results.ok


def test_repeated_capture_is_the_source_tokens_again_with_steps_running_on(tmp_path):
    import halo_fast
    from halo_fast.benchmark.data import ensure_capture
    from halo_fast.benchmark.repeated import ensure_repeated

    source = ensure_capture(str(tmp_path), 2_000_000)
    big = ensure_repeated(source, 5_000_000)
    copies = -(-5_000_000 // source["bytes"])
    assert big["tokens"] == copies * source["tokens"] and big["bytes"] >= 5_000_000
    assert ensure_repeated(source, 5_000_000) == big  # cached: not written again
    one, many = halo_fast.reduce(source["path"]), halo_fast.reduce(big["path"])
    assert many.steps.tolist() == [s for s in range(big["tokens"]) if s % source["tokens"]]  # each copy's step 0: null
    assert many.data.tobytes() == np.concatenate([one.data] * copies).tobytes()


@pytest.mark.slow
def test_large_section_on_a_small_stand_in(tmp_path):
    """The large section's rows and checks, on a capture of a few MB instead of one larger than memory (so
    every halo_fast row takes the two passes here: the section is under test, not the route)."""
    from halo_fast.benchmark.runner import Config, Suite

    cfg = Config(size=2_000_000, sizes=[], repeat=1, data_dir=str(tmp_path), sections=("large",), large_bytes=5_000_000)
    large = Suite(cfg, log=lambda message: None).results().large
    names = ["cat (floor)", "halo_fast reduce", "halo_fast reduce, mapped", "halo_fast reduce, two passes"]
    assert [row.contender for row in large.rows] == names
    assert all(row.ok for row in large.rows), [row.timing.note for row in large.rows]
    assert [row.check for row in large.rows[1:]] == ["reference", "same bits", "same bits"]
    assert large.rows[0].vs_floor == 1.0 and large.input["bytes"] >= 5_000_000


def test_scaling_rows_carry_the_memory_scan_floor(tmp_path):
    """The scan floor's child counts bytes of a real file; the scaling table shows it and reduce's ratio to it."""
    from halo_fast.benchmark import contenders, report
    from halo_fast.benchmark.rows import Brief, Results, ScalingRow, Timing

    path = tmp_path / "bytes.json"
    path.write_bytes(b"[1,2,3]" * 100_000)
    child = subprocess.run(
        [sys.executable, "-m", "halo_fast.benchmark.contenders", "scan", "read", str(path), "--expect", "700000"],
        capture_output=True,
        text=True,
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout)["count"] == 700_000
    assert contenders.scan_floor(path, window=1 << 16) == 700_000  # windows not dividing the file

    reduce = Timing("ok", median_s=3.0, min_s=2.9, runs_s=[3.0], peak_rss_mb=160.0)
    scan = Timing("ok", median_s=1.5, min_s=1.4, runs_s=[1.5], peak_rss_mb=150.0)
    row = ScalingRow("5GB", 5000.0, 1000, {"reduce": Brief.of(reduce, 5 * 10**9), "scan": Brief.of(scan, 5 * 10**9)})
    cap = {"path": "x.json", "bytes": 5 * 10**9, "tokens": 1000, "with_attention": 999, "context": [201, 1200]}
    results = Results(capture=cap, tasks={}, scaling=[row])
    assert Results.from_json(results.to_json()).scaling[0].tasks["scan"].median_s == 1.5
    markdown = report.markdown(
        {**results.to_json(), "machine": report.machine_info(), "command": "x", "config": {"repeat": 3}}
    )
    assert "| scan floor s | reduce / scan floor |" in markdown
    assert "| 1.500 | 2.00x |" in markdown
