"""``batch`` on a real Dask cluster (LocalCluster, two worker processes): outputs equal to single runs
bit for bit, failed rows, resume, a killed worker, the summary table, Ctrl-C, and the command line."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from halo_fast.cli.main import main
from halo_fast.study import batch
from halo_fast.study.engine import locked
from halo_fast.study.plan import unique_names
from halo_fast.synth import write_capture

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.decodes


def _cluster(n: int = 2):
    return distributed.LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # no fixed port: two clusters on one machine do not clash
        silence_logs=logging.ERROR,
    )


@pytest.fixture(scope="module")
def scheduler():
    """One cluster for the module (the way a user's cluster outlives each batch): its address."""
    with _cluster() as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    paths = []
    for seed in range(3):
        path = folder / f"cap{seed}.json"
        write_capture(str(path), layers=3, heads=2, prompt=60, tokens=12, seed=seed)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def corrupt(captures):
    path = Path(captures[0]).with_name("corrupt.json")
    text = Path(captures[0]).read_bytes()
    path.write_bytes(text[: len(text) // 2])
    return str(path)


def single(tmp_path, job, capture, *options):
    """The single command's result on ``capture``: its --json output and its files (in ``tmp_path``)."""
    out = {
        "reduce": ["-o", str(tmp_path / "single.reduced.h5")],
        "evict": ["-o", str(tmp_path / "single.evict.csv")],
        "sentences": ["--csv", str(tmp_path / "single.sentences.csv")],
        "report": ["-o", str(tmp_path / "single.report.md")],
        "convert": ["-o", str(tmp_path / ("single_dir_bin" if "dir-bin" in options else "single.h5"))],
    }.get(job, [])
    code = subprocess.run(
        [sys.executable, "-m", "halo_fast", job, capture, *options, *out, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert code.returncode == 0, code.stderr
    return json.loads(code.stdout)


def same(x, y) -> bool:
    """Equal bit for bit (floats, NaN payloads too), else equal as values (strings, tables)."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
    if isinstance(x, np.ndarray):
        return x.dtype == y.dtype and x.tolist() == y.tolist()
    return type(x) is type(y) and x == y


def h5_equal(a, b) -> None:
    with h5py.File(a) as fa, h5py.File(b) as fb:
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        assert names_a == names_b
        for name in ["/", *names_a]:
            if isinstance(fa[name], h5py.Dataset):
                assert same(fa[name][()], fb[name][()]), name
            attrs_a, attrs_b = dict(fa[name].attrs), dict(fb[name].attrs)
            assert sorted(attrs_a) == sorted(attrs_b), name
            assert all(same(attrs_a[k], attrs_b[k]) for k in attrs_a), name


VOLATILE = ("seconds", "mb_per_s", "output", "capture", "csv", "written", "source", "report", "heatmap", "evict_plot")


def stable(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in VOLATILE}


JOB_OPTIONS = [
    ("reduce", ["--op", "max", "--every", "2"]),
    ("sentences", ["--layers", "1:"]),
    ("decay", ["--rule", "hw_frontend"]),
    ("score", ["--rule", "hw_frontend", "--heads", "0"]),
    ("evict", ["--policies", "h2o,streaming,oracle_future", "--budgets", "16,25%"]),
    ("report", ["--evict-budgets", "16"]),
    ("convert", ["--every", "3"]),
    ("convert", ["--format", "dir-bin"]),
]


def files_equal(a: Path, b: Path) -> None:
    """Two folders' files equal byte for byte, by name."""
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


@pytest.mark.parametrize("job, options", JOB_OPTIONS)
def test_each_job_gives_what_the_single_command_gives_bit_for_bit(job, options, captures, scheduler, tmp_path):
    out = tmp_path / "out"
    assert main(["batch", job, *captures[:2], *options, "-o", str(out), "--scheduler", scheduler]) == 0
    for capture in captures[:2]:
        name = Path(capture).stem
        reference = tmp_path / name
        reference.mkdir()
        expected = single(reference, job, capture, *options)
        record = json.loads((out / f"{name}.{job}.json").read_text())
        assert record["capture"] == os.path.abspath(capture) and record["job"] == job
        assert stable(record["result"]) == stable(expected)
        if job == "convert" and "dir-bin" in options:
            files_equal(out / f"{name}_dir_bin", reference / "single_dir_bin")
        elif job in ("reduce", "convert"):
            h5_equal(
                out / (f"{name}.reduced.h5" if job == "reduce" else f"{name}.h5"), next(reference.glob("single*.h5"))
            )
        if job in ("evict", "sentences"):
            assert (out / f"{name}.{job}.csv").read_bytes() == next(reference.glob("single*.csv")).read_bytes()
        if job == "report":  # the same report, but for the pictures' names beside it
            text = (out / f"{name}.report.md").read_text().replace(f"{name}.report.", "REPORT.")
            assert text == (reference / "single.report.md").read_text().replace("single.report.", "REPORT.")
            for picture in ("heatmap", "evict"):
                assert (out / f"{name}.report.{picture}.png").read_bytes() == (
                    reference / f"single.report.{picture}.png"
                ).read_bytes()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["status"]) == ["ok", "ok"] and list(summary["name"]) == ["cap0", "cap1"]


def test_a_corrupt_capture_is_a_failed_row_and_the_rest_completes(captures, corrupt, scheduler, tmp_path):
    missing = str(tmp_path / "gone.json")
    table = batch("reduce", [captures[0], corrupt, captures[1], missing], tmp_path, scheduler=scheduler)
    assert list(table["status"]) == ["ok", "failed", "ok", "failed"]
    error = table["error"][1]
    assert "corrupt.json" in error and "byte" in error  # the CaptureError's text: file and offset
    assert "gone.json" in table["error"][3]
    assert not (tmp_path / "corrupt.reduce.json").exists() and not (tmp_path / "corrupt.reduced.h5").exists()
    assert table["tokens"][0] > 0 and np.isnan(table["tokens"][1])
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_the_command_exits_1_when_a_capture_failed_and_json_says_which(captures, corrupt, scheduler, tmp_path, capsys):
    code = main(["batch", "decay", corrupt, captures[2], "-o", str(tmp_path), "--scheduler", scheduler, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["counts"] == {"ok": 1, "failed": 1, "skipped": 0}
    assert [r["status"] for r in out["summary"]] == ["failed", "ok"]
    assert out["summary"][1]["recommended_decay_rate"] is not None


def test_a_rerun_skips_complete_captures_and_redoes_changed_ones(captures, corrupt, scheduler, tmp_path):
    first = batch("evict", captures + [corrupt], tmp_path, scheduler=scheduler, policies="h2o", budgets="16")
    assert list(first["status"]) == ["ok", "ok", "ok", "failed"]
    second = batch("evict", captures + [corrupt], tmp_path, scheduler=scheduler, policies=["h2o"], budgets=16)
    assert list(second["status"]) == ["skipped", "skipped", "skipped", "failed"]  # a failed one runs again
    figures = [c for c in first.columns if c.startswith("mass_")]
    pd.testing.assert_frame_equal(first[figures], second[figures])
    os.utime(captures[2], ns=(time.time_ns(), time.time_ns()))  # the capture changed since: run again
    third = batch("evict", captures, tmp_path, scheduler=scheduler, policies="h2o", budgets="16")
    assert list(third["status"]) == ["skipped", "skipped", "ok"]
    with pytest.raises(ValueError, match="other options.*budgets"):
        batch("evict", captures, tmp_path, scheduler=scheduler, policies="h2o", budgets="32")
    forced = batch("evict", captures, tmp_path, scheduler=scheduler, policies="h2o", budgets="32", force=True)
    assert list(forced["status"]) == ["ok", "ok", "ok"]
    other = tmp_path / "elsewhere" / "cap1.json"  # another capture of the same name: not its results
    other.parent.mkdir()
    other.write_bytes(Path(captures[1]).read_bytes())
    with pytest.raises(ValueError, match="result of another capture"):
        batch("evict", [str(other)], tmp_path, scheduler=scheduler, policies="h2o", budgets="32")


def test_an_interrupted_attempt_leaves_no_skip(captures, scheduler, tmp_path):
    """Outputs without their record (a worker killed before writing it) are redone, not skipped; what it left
    half-written goes once the local cluster's workers are gone."""
    batch("reduce", captures[:1], tmp_path, scheduler=scheduler)
    (tmp_path / "cap0.reduce.json").unlink()
    (tmp_path / ".cap0.reduced.h5.abc.tmp").write_bytes(b"half")  # an atomic write cut short
    again = batch("reduce", captures[:1], tmp_path, workers=1)
    assert list(again["status"]) == ["ok"]
    assert not (tmp_path / ".cap0.reduced.h5.abc.tmp").exists()


class KillOnce(distributed.WorkerPlugin):
    """Kill the worker process the first time a halo_fast task starts executing on it (marker file:
    once across every worker, restarted ones too)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish == "executing" and str(key).startswith("halo_fast-"):
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os._exit(1)


class KillAlways(distributed.WorkerPlugin):
    """Kill the worker process whenever the task of a capture named ``killer`` starts (out of memory, say)."""

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish == "executing" and str(key).endswith("-killer"):
            os._exit(1)


def test_a_capture_that_kills_its_worker_each_time_is_a_failed_row(captures, tmp_path):
    """One worker, the killer first: the batch hands out one capture per worker thread, so the other
    capture was not held by the dying worker and is not counted against (it would fail too otherwise)."""
    killer = tmp_path / "killer.json"
    killer.write_bytes(Path(captures[0]).read_bytes())
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):  # the scheduler runs in this process
        with _cluster(1) as cluster, distributed.Client(cluster) as client:
            client.register_plugin(KillAlways())
            table = batch("reduce", [str(killer), captures[1]], tmp_path / "out", scheduler=cluster.scheduler_address)
    assert list(table["status"]) == ["failed", "ok"]
    assert "died each time it held this capture" in table["error"][0]


def test_a_killed_worker_loses_nothing(captures, tmp_path):
    marker = str(tmp_path / "killed")
    with _cluster() as cluster, distributed.Client(cluster) as client:
        client.register_plugin(KillOnce(marker))
        table = batch("reduce", captures, tmp_path / "out", scheduler=cluster.scheduler_address)
    assert os.path.exists(marker)  # a worker did die
    assert list(table["status"]) == ["ok", "ok", "ok"]
    for capture in captures:  # and every output is the one a healthy run gives
        name = Path(capture).stem
        reference = tmp_path / name
        reference.mkdir()
        single(reference, "reduce", capture)
        h5_equal(tmp_path / "out" / f"{name}.reduced.h5", reference / "single.reduced.h5")


def test_the_summary_table_csv_parquet_and_dataframe_agree(captures, scheduler, tmp_path):
    table = batch("sentences", captures, tmp_path, scheduler=scheduler)
    assert list(table.columns[:7]) == ["capture", "name", "status", "error", "seconds", "bytes", "worker"]
    assert "mean[critical]" in table.columns and "final[irrelevant]" in table.columns
    assert (table["bytes"] == [os.path.getsize(c) for c in captures]).all()
    assert (table["seconds"] > 0).all()
    back = pd.read_csv(tmp_path / "summary.csv", dtype={"error": str}, keep_default_na=False)  # "" stays ""
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    pytest.importorskip("pyarrow")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "summary.parquet"), table)


def test_a_local_cluster_from_the_command_line(captures, tmp_path, capsys):
    """Without --scheduler: a local cluster of --workers processes, started and stopped by the batch."""
    code = main(["batch", "reduce", *captures, "-o", str(tmp_path), "--workers", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["counts"]["ok"] == 3
    assert len({r["worker"] for r in out["summary"]}) == 1


def test_relative_paths_are_the_clients(captures, scheduler, tmp_path, monkeypatch):
    """The workers' folder is not this one: relative captures and OUT_DIR are made absolute first."""
    monkeypatch.chdir(Path(captures[0]).parent)
    table = batch("reduce", ["cap0.json"], os.path.relpath(tmp_path / "rel"), scheduler=scheduler)
    assert list(table["status"]) == ["ok"] and table["capture"][0] == "cap0.json"
    assert (tmp_path / "rel" / "cap0.reduced.h5").exists()
    again = batch("reduce", ["cap0.json"], os.path.relpath(tmp_path / "rel"), scheduler=scheduler)
    assert list(again["status"]) == ["skipped"]


def test_a_capture_folder_is_a_capture(captures, scheduler, tmp_path):
    folder = tmp_path / "cap0_bin"
    assert main(["convert", captures[0], "--format", "dir-bin", "-o", str(folder)]) == 0
    table = batch("reduce", [str(folder)], tmp_path / "out", scheduler=scheduler)
    assert list(table["status"]) == ["ok"] and table["name"][0] == "cap0_bin"
    single(tmp_path, "reduce", str(folder))
    h5_equal(tmp_path / "out" / "cap0_bin.reduced.h5", tmp_path / "single.reduced.h5")
    later = time.time_ns() + 10**9  # a file rewritten in place: the folder's own time stays
    os.utime(folder / "metadata.json", ns=(later, later))
    assert list(batch("reduce", [str(folder)], tmp_path / "out", scheduler=scheduler)["status"]) == ["ok"]


def test_an_output_may_not_replace_a_capture(captures, scheduler, tmp_path):
    h5 = tmp_path / "cap0.h5"
    assert main(["convert", captures[0], "-o", str(h5)]) == 0
    with pytest.raises(ValueError, match="would replace a capture"):
        batch("convert", [str(h5)], tmp_path, scheduler=scheduler)


def test_a_result_without_its_figures_leaves_no_record(captures, tmp_path, monkeypatch):
    """``run_one`` itself (as a worker runs it): key figures that fail make a failed row and no record, so the
    capture runs again next time instead of breaking the plan."""
    from halo_fast.study import jobs

    ns = jobs.job_parser("decay").parse_intermixed_args([captures[0]])

    def broken(data):
        raise KeyError("rate")

    monkeypatch.setitem(jobs.JOBS, "decay", jobs.Job(jobs.JOBS["decay"].module, jobs.JOBS["decay"].outputs, broken))
    row = jobs.run_one("decay", ns, captures[0], str(tmp_path), "cap0", None)
    assert row["status"] == "failed" and "KeyError" in row["error"]
    assert not (tmp_path / "cap0.decay.json").exists()


def test_help_shows_the_batch_and_the_jobs_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["batch", "evict", "--help"])
    text = capsys.readouterr().out
    assert info.value.code == 0 and "--scheduler" in text and "--policies" in text


def test_captures_may_stand_among_the_job_options(captures, scheduler, tmp_path, capsys):
    argv = ["batch", "evict", captures[0], "--policies", "h2o", captures[1], "--budgets", "16", "-o", str(tmp_path)]
    assert main([*argv, "--scheduler", scheduler, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in out["summary"]] == ["cap0", "cap1"]
    assert [c for c in out["summary"][0] if c.startswith("mass_mean")] == ["mass_mean[h2o@16]"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["batch", "evict", "{c}"], "needs -o OUT_DIR"),
        (["batch", "evict", "{c}", "-o", "{d}", "--plot", "x.png"], "--plot"),
        (["batch", "sentences", "{c}", "-o", "{d}", "--csv", "x.csv"], "--csv"),
        (["batch", "evict", "{c}", "-o", "{d}", "--no-such-option"], "unrecognized"),
        (["batch", "nojob", "{c}", "-o", "{d}"], "invalid choice"),
        (["batch", "reduce", "{c}", "{c}", "-o", "{d}"], "given twice"),
        (["batch", "reduce", "{c}", "-o", "{d}", "--workers", "0"], "at least 1"),
        (["batch", "reduce", "{c}", "-o", "{d}", "--forc"], "unrecognized"),  # no abbreviation reaches the job
        (["batch", "reduce", "{c}", "-o", "{d}", "--workers", "2", "--scheduler", "tcp://x:1"], "local cluster"),
    ],
)
def test_bad_command_lines_are_usage_errors(argv, message, captures, tmp_path, capsys):
    argv = [a.format(c=captures[0], d=tmp_path / "out") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "summary.csv").exists()


def test_two_batches_cannot_write_to_one_folder_at_once(captures, scheduler, tmp_path):
    with locked(str(tmp_path)):
        with pytest.raises(ValueError, match="another batch"):
            batch("reduce", captures[:1], tmp_path, scheduler=scheduler)
    assert list(batch("reduce", captures[:1], tmp_path, scheduler=scheduler)["status"]) == ["ok"]  # free again


def test_the_command_line_offers_every_job():
    from halo_fast.cli.batch_cmd import JOB_NAMES
    from halo_fast.study.jobs import JOBS

    assert JOB_NAMES == tuple(JOBS)


def test_names_are_unique_when_file_names_repeat(tmp_path):
    a, b = tmp_path / "m1" / "p" / "capture.json", tmp_path / "m2" / "p" / "capture.json"
    c = tmp_path / "other.jsonl.gz"
    assert unique_names([str(c)]) == {str(c): "other"}
    assert unique_names([str(a), str(b)]) == {str(a): "m1__p__capture", str(b): "m2__p__capture"}
    assert unique_names([str(a), str(b), str(c)])[str(c)] == "other"  # only the names that collide change
    with pytest.raises(ValueError, match="would both be named x"):
        unique_names([str(tmp_path / "x.json"), str(tmp_path / "x.jsonl")])
    with pytest.raises(ValueError, match="given twice"):
        unique_names([str(a), str(tmp_path / "m1" / ".." / "m1" / "p" / "capture.json")])


def test_without_dask_the_message_says_what_to_install(monkeypatch, captures, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    assert main(["batch", "reduce", captures[0], "-o", str(tmp_path)]) == 1
    assert "pip install 'halo_fast[dask]'" in capsys.readouterr().err


def test_ctrl_c_cancels_and_writes_no_summary(captures, tmp_path):
    """A capture that never ends (a named pipe nobody writes) keeps its task running; Ctrl-C to the
    process group, as a terminal sends it: exit 130, the finished capture complete, no summary, no
    temporary file, no worker left behind."""
    fifo = tmp_path / "stuck.json"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "halo_fast",
            "batch",
            "reduce",
            captures[0],
            str(fifo),
            "-o",
            str(out),
            "--workers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "cap0.reduce.json").exists():  # the first capture done: the pipe's task is running
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr and stdout == ""
    assert sorted(p for p in os.listdir(out) if not p.startswith(".halo_fast")) == [
        "cap0.reduce.json",
        "cap0.reduced.h5",
    ]
    assert _group_gone(proc.pid, within=10), subprocess.run(
        ["ps", "-o", "pid,cmd", "-g", str(proc.pid)], capture_output=True, text=True
    ).stdout


def _group_gone(group: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
