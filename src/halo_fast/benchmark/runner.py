"""Runs the contenders, each in its own process, and checks they agree.

Why processes: peak memory (``ru_maxrss`` from ``os.wait4``) is only meaningful per
process, and a fresh process per run also counts what a user pays on every
invocation (interpreter, imports, numba's cache). Every measurement is one
warm-up run (which also fills the page cache and is the one whose output is
checked) followed by ``repeat`` timed runs; we report their median and minimum.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from . import contenders as cs
from .data import ensure_capture, ensure_forms, size_label

CHILD = [sys.executable, "-m", "halo_fast.benchmark.contenders"]
ALL_CONTENDERS = ("halo_fast", "json", "orjson", "msgspec", "simdjson", "read")
SECTIONS = ("main", "scaling", "threads", "cold", "directory", "hdf5", "gzip", "convert")
#: gzip section: input form -> tasks halo_fast runs on it (each input also gets its `gzip -dc` floor).
#: halo_fast.load/reduce take any path, so a new reader is measured by listing its tasks here.
GZIP_FORMS = {"jsonl.gz": ("load", "reduce"), "json.gz": ("load", "reduce")}
#: the forms of the main capture each format section reads
SECTION_FORMS = {"directory": ("bin",), "hdf5": ("h5",), "gzip": tuple(GZIP_FORMS)}
COLD_SIZE = 10_000_000  # the cold-start capture: small, so compiling dominates
REDUCE_RTOL, REDUCE_ATOL = 1e-4, 1e-7  # float32 means summed in other orders differ in the last bits


@dataclass
class Config:
    size: int
    sizes: list
    repeat: int = 5
    contenders: tuple = ALL_CONTENDERS
    data_dir: str = "bench/data"
    seed: int = 0
    style: str = "js"
    sections: tuple = SECTIONS
    threads: tuple = (1, 2)


@dataclass
class Spawned:
    wall: float
    rss_mb: float
    returncode: int
    stdout: str
    stderr: str


# Why a launcher: Linux carries a process's peak RSS across fork and exec, so a child
# started straight from this (large) runner would report at least the runner's peak.
# This tiny interpreter forks, execs the command and reports that grandchild's own
# wait4 rusage; the smallest peak it can show is the launcher's few MB.
LAUNCHER = """
import os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(report, "w") as f:
    f.write("%r %d %d" % (wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status)))
"""


def spawn(argv, env=None, capture=True) -> Spawned:
    """Run ``argv`` to completion: wall time, its own peak RSS, exit code and output."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".rusage") as report,
    ):
        launcher = [sys.executable, "-S", "-c", LAUNCHER, report.name]
        proc = subprocess.run(launcher + list(argv), stdout=out if capture else subprocess.DEVNULL, stderr=err, env=env)
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        fields = report.read().split()
    if len(fields) != 3:
        return Spawned(0.0, 0.0, proc.returncode or 1, text, errors or "the launcher failed")
    wall, max_kib, code = float(fields[0]), int(fields[1]), int(fields[2])
    return Spawned(wall, max_kib * 1024 / 1e6, code, text, errors)  # ru_maxrss is in KiB on Linux


def compile_bytecode() -> None:
    """Write halo_fast's .pyc files where missing or stale, as ``pip install`` does.

    A checkout run with PYTHONDONTWRITEBYTECODE set would otherwise compile every
    module from source in every timed process (about 0.08 s of each).
    """
    import compileall
    import importlib.util

    compileall.compile_dir(os.path.dirname(importlib.util.find_spec("halo_fast").origin), quiet=1)


def child_result(run: Spawned) -> dict:
    import json

    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def measure(argv, repeat: int, env=None, capture=True, warmup_argv=None) -> dict:
    """One warm-up run (its output is the one checked), then ``repeat`` timed runs."""
    warm = spawn(warmup_argv or argv, env, capture)
    if warm.returncode != 0:
        tail = (warm.stderr.strip().splitlines() or [f"exit code {warm.returncode}"])[-1]
        return {"status": "failed", "note": f"exit {warm.returncode}: {tail}"[:300]}
    first = child_result(warm)
    runs = [spawn(argv, env, capture) for _ in range(repeat)]
    bad = [r for r in runs if r.returncode != 0]
    if bad:
        return {"status": "failed", "note": f"a timed run exited {bad[0].returncode}: {bad[0].stderr.strip()[-200:]}"}
    walls = [r.wall for r in runs]
    results = [child_result(r) for r in runs]
    row = {
        "status": "ok",
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "runs_s": [round(w, 4) for w in walls],
        "peak_rss_mb": max(r.rss_mb for r in runs),
        "result": first,
    }
    if first.get("seconds") is not None:
        row["inner_s"] = statistics.median(r["seconds"] for r in results)
        row["import_s"] = statistics.median(r["import_seconds"] for r in results)
    if first.get("check_seconds") is not None:
        row["check_s"] = statistics.median(r["check_seconds"] for r in results)
    if any(r.get("crc32") != first.get("crc32") for r in results):
        row["status"], row["note"] = "failed", "timed runs gave different results than the warm-up run"
    return row


def default_threads() -> int:
    """The thread count numba picks when NUMBA_NUM_THREADS is not set (usable CPUs)."""
    if os.environ.get("NUMBA_NUM_THREADS"):
        return int(os.environ["NUMBA_NUM_THREADS"])
    return max(1, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def mem_available_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("inf")


class Suite:
    """The whole benchmark for one :class:`Config`; ``run()`` returns a JSON-ready dict."""

    def __init__(self, cfg: Config, log=None):
        self.cfg = cfg
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.notes: list[str] = []
        self.scratch = tempfile.mkdtemp(prefix="halo_bench_")
        self.factors: dict = {}

    def capture(self, size: int) -> dict:
        return ensure_capture(self.cfg.data_dir, size, self.cfg.seed, self.cfg.style, self.log)

    def run(self) -> dict:
        compile_bytecode()
        try:
            forms = [f for section in self.cfg.sections for f in SECTION_FORMS.get(section, ())]
            main, self.forms = ensure_forms(
                self.cfg.data_dir, self.cfg.size, forms, self.cfg.seed, self.cfg.style, self.log
            )  # first: a stale main capture is rewritten
            out = {"capture": main, "tasks": {}, "scaling": [], "threads": [], "cold_start": None}
            if "main" in self.cfg.sections:
                out["tasks"] = self.main(main)
            if "scaling" in self.cfg.sections:
                out["scaling"] = self.scaling(out["tasks"], main)
            if "threads" in self.cfg.sections:
                out["threads"] = self.threads(out["tasks"], main)
            if "cold" in self.cfg.sections:
                out["cold_start"] = self.cold_start()
            self.reference_rows = {
                task: next((r for r in out["tasks"].get(task, []) if r["contender"] == "halo_fast"), None)
                for task in cs.TASKS
            }
            for section in ("directory", "hdf5", "gzip"):
                if section in self.cfg.sections:
                    out[section] = getattr(self, f"{section}_section")(main)
            if "convert" in self.cfg.sections:
                out["convert"] = self.convert_section()
            out["rss_floor_mb"] = spawn(["true"]).rss_mb
            self.notes.append(
                f"a peak RSS below ~{out['rss_floor_mb']:.0f} MB cannot be seen: a new process "
                "starts with its launcher's resident pages counted"
            )
            out["notes"] = self.notes
            out["ok"] = _all_ok(out)
            return out
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # ---- the main table

    def main(self, cap: dict) -> dict:
        tasks = {}
        path, mb = cap["path"], cap["bytes"] / 1e6
        for task in cs.TASKS:
            rows = []
            for name in [c for c in self.cfg.contenders if c != "read"]:
                self.log(f"{task}: {name} on {mb:.0f} MB ...")
                row = {"task": task, "contender": name, **self.one(name, task, cap)}
                rows.append(row)
            tasks[task] = rows
            self.check(task, rows)
        if "read" in self.cfg.contenders:
            self.log("read: floors ...")
            floor = measure(CHILD + ["read", "read", path, "--expect", str(cap["bytes"])], self.cfg.repeat)
            cat = measure(["cat", path], self.cfg.repeat, capture=False)
            startup = measure([sys.executable, "-c", "import numpy"], self.cfg.repeat)
            tasks["read"] = [
                {"task": "read", "contender": "read", **floor},
                {"task": "read", "contender": "cat", **cat},
                {"task": "read", "contender": "startup", **startup},
            ]
        for task, rows in tasks.items():
            base = next(
                (r for r in tasks.get("load" if task == "read" else task, []) if r["contender"] == "halo_fast"), None
            )
            for row in rows:
                if row["status"] != "ok":
                    continue
                if row["contender"] == "startup":  # no input: neither a speed nor a contender
                    continue
                row["mb_per_s"] = mb / row["median_s"]
                if base and base["status"] == "ok":
                    row["ratio"] = row["median_s"] / base["median_s"]
        return tasks

    def one(self, name: str, task: str, cap: dict, env=None) -> dict:
        """Measure one contender on one task, unless it is missing or would not fit in memory."""
        if not cs.available(name):
            return {"status": "skipped", "note": f"{cs.REQUIRES[name]} is not installed"}
        if name == "simdjson" and cap["bytes"] > cs.SIMDJSON_LIMIT:
            return {"status": "skipped", "note": "pysimdjson documents are limited to 4 GB"}
        need = self.predicted_mb(name, task, cap)
        if need > 0.85 * mem_available_mb():
            return {
                "status": "skipped",
                "note": f"would need ~{need / 1e3:.1f} GB (MemAvailable {mem_available_mb() / 1e3:.1f} GB)",
                "predicted_mb": round(need),
            }
        argv = CHILD + [name, task, cap["path"], "--expect", str(cap["with_attention"])]
        warmup = argv + ["--out", os.path.join(self.scratch, f"{name}_{task}.npy")] if task == "reduce" else argv
        return {**measure(argv, self.cfg.repeat, env, warmup_argv=warmup), "predicted_mb": round(need)}

    def predicted_mb(self, name: str, task: str, cap: dict) -> float:
        """Start + factor x file size; when that is near the limit, the factor is measured on a small capture."""
        base, factor = cs.MEMORY_MODEL[name]
        mb = cap["bytes"] / 1e6
        small = min(self.cfg.sizes)
        if base + factor * mb > 0.5 * mem_available_mb() and small * 4 <= cap["bytes"]:
            key = (name, task)
            if key not in self.factors:
                calib = self.capture(small)
                self.log(f"  measuring {name} {task}'s memory on {size_label(small)} ...")
                run = spawn(CHILD + [name, task, calib["path"]])
                if run.returncode == 0:
                    self.factors[key] = max(0.0, run.rss_mb - base) / (calib["bytes"] / 1e6)
                    self.notes.append(
                        f"{name} {task}: peak RSS measured at {self.factors[key]:.2f} MB per MB "
                        f"of JSON on {size_label(small)} (default model {factor})"
                    )
            factor = self.factors.get(key, factor)
        return base + factor * mb

    def check(self, task: str, rows: list) -> None:
        """halo_fast must give json's float32 bits (load) or the same means up to rounding (reduce)."""
        ref = next((r for r in rows if r["contender"] == "halo_fast" and r["status"] == "ok"), None)
        if ref is None:
            return
        ref["check"] = "reference"
        for row in rows:
            if row is ref or row["status"] != "ok":
                continue
            if task == "load":
                same = row["result"]["crc32"] == ref["result"]["crc32"]
                row["check"] = "same bits" if same else "MISMATCH (crc32 differs)"
                continue
            row["check"] = _compare_reduced(
                os.path.join(self.scratch, f"halo_fast_{task}.npy"),
                os.path.join(self.scratch, f"{row['contender']}_{task}.npy"),
                "same bits",
            )

    # ---- the same capture in other formats: .bin directory, HDF5, gzip; and convert

    def child(self, label: str, contender: str, task: str, path: str, expect: int, out_npy: str | None = None) -> dict:
        """One contender on one input, in its own processes (warm-up + ``repeat`` runs)."""
        if not cs.available(contender):
            return {
                "contender": label,
                "task": task,
                "status": "skipped",
                "note": f"{cs.REQUIRES[contender]} is not installed",
            }
        self.log(f"{label} ...")
        argv = CHILD + [contender, task, path, "--expect", str(expect)]
        warmup = argv + ["--out", out_npy] if out_npy else argv
        return {"contender": label, "task": task, **measure(argv, self.cfg.repeat, warmup_argv=warmup)}

    def halo_fast_rows(self, form: str, cap: dict, tasks=cs.TASKS) -> list:
        rows = []
        for task in tasks:
            npy = os.path.join(self.scratch, f"{form}_{task}.npy") if task == "reduce" else None
            row = self.child(f"halo_fast {task}", "halo_fast", task, cap["path"], cap["with_attention"], npy)
            rows.append(dict(row, npy=npy) if npy else row)
        return rows

    def reference(self, task: str, cap: dict) -> dict | None:
        """halo_fast on the JSON capture: the main table's row, or one run made for the checks."""
        row = self.reference_rows.get(task)
        if row is not None and row["status"] == "ok":
            return row
        npy = os.path.join(self.scratch, "halo_fast_reduce.npy")
        self.log(f"reference: halo_fast {task} on the JSON capture ...")
        run = spawn(
            CHILD
            + ["halo_fast", task, cap["path"], "--expect", str(cap["with_attention"])]
            + (["--out", npy] if task == "reduce" else [])
        )
        if run.returncode != 0:
            return None
        self.reference_rows[task] = {"status": "ok", "result": child_result(run), "contender": "halo_fast"}
        return self.reference_rows[task]

    def check_rows(self, rows: list, cap: dict) -> None:
        """Every load must give the JSON decode's float32 bits; every reduce its means to rounding."""
        for task in cs.TASKS:
            mine = [r for r in rows if r.get("task") == task and r["status"] == "ok" and "check" not in r]
            ref = self.reference(task, cap) if mine else None
            for row in mine:
                if ref is None:
                    row["check"] = "no reference"
                elif task == "load":
                    same = row["result"]["crc32"] == ref["result"]["crc32"]
                    row["check"] = "same bits as JSON" if same else "MISMATCH (crc32 differs from the JSON decode)"
                else:
                    row["check"] = _compare_reduced(os.path.join(self.scratch, "halo_fast_reduce.npy"), row["npy"])

    def directory_section(self, main: dict) -> dict:
        """A .bin capture directory: halo_fast load/reduce against np.fromfile over its .bin files."""
        cap = self.forms["bin"]
        n = cap["with_attention"]
        rows = [self.child("np.fromfile (floor)", "fromfile", "load", cap["path"], n)]
        rows += self.halo_fast_rows("bin", cap)
        self.check_rows(rows, main)
        _ratios(rows, rows[0], "vs_floor")
        return {"input": cap, "mb": cap["bin_bytes"] / 1e6, "rows": rows}

    def hdf5_section(self, main: dict) -> dict:
        """The converted .h5 read back: halo_fast and plain h5py, against halo_fast decoding the JSON."""
        cap = self.forms["h5"]
        n = cap["with_attention"]
        json_row = self.reference_rows.get("load")
        if json_row is None or "median_s" not in json_row:  # the main table did not run halo_fast
            json_row = self.child("halo_fast load (JSON)", "halo_fast", "load", main["path"], n)
            if json_row["status"] == "ok":
                self.reference_rows["load"] = json_row
        rows = [dict(json_row, contender="halo_fast load (JSON)", task="reference", check="reference")]
        rows += self.halo_fast_rows("h5", cap)
        rows.append(self.child("h5py: attention[t, :, :, :ctx]", "h5py", "load", cap["path"], n))
        rows.append(self.child("h5py: values cut at offsets", "h5py_values", "load", cap["path"], n))
        self.check_rows(rows, main)
        for row in rows:
            if row["status"] == "ok" and json_row["status"] == "ok":
                row["json_over"] = json_row["median_s"] / row["median_s"]
                if row.get("inner_s") and json_row.get("inner_s"):
                    row["json_work_over"] = json_row["inner_s"] / row["inner_s"]
        return {"input": cap, "mb": cap["float32_bytes"] / 1e6, "rows": rows}

    def gzip_section(self, main: dict) -> dict:
        """gzip inputs: halo_fast against `gzip -dc FILE > /dev/null` on the same file."""
        inputs = []
        for form, tasks in GZIP_FORMS.items():
            cap = self.forms[form]
            self.log(f"gzip -dc {os.path.basename(cap['path'])} ...")
            floor = {
                "contender": "gzip -dc (floor)",
                "task": "read",
                **measure(["gzip", "-dc", cap["path"]], self.cfg.repeat, capture=False),
            }
            rows = [floor] + self.halo_fast_rows(form, cap, tasks)
            self.check_rows(rows, main)
            _ratios(rows, floor, "vs_floor")
            inputs.append({"input": cap, "mb": cap["text_bytes"] / 1e6, "rows": rows})
        return {"inputs": inputs}

    def convert_section(self) -> dict:
        """`python -m halo_fast convert` (uncompressed) on two sizes: its time, and whether memory stays flat."""
        rows = []
        target = os.path.join(self.scratch, "convert.h5")
        for size in sorted({min(self.cfg.sizes), self.cfg.size}):
            cap = self.capture(size)
            self.log(f"convert: {size_label(size)} ...")
            argv = [
                sys.executable,
                "-m",
                "halo_fast",
                "convert",
                cap["path"],
                "-o",
                target,
                "--compression",
                "none",
                "--force",
            ]
            m = measure(argv, self.cfg.repeat)
            output_mb = os.path.getsize(target) / 1e6 if os.path.exists(target) else None
            rows.append(
                {
                    "size": size_label(size),
                    "mb": cap["bytes"] / 1e6,
                    "tokens": cap["tokens"],
                    "output_mb": output_mb,
                    **m,
                }
            )
            if os.path.exists(target):
                os.remove(target)
        return {"rows": rows}

    # ---- halo_fast alone: sizes, threads, cold start

    def scaling(self, tasks: dict, main: dict) -> list:
        out = []
        for size in self.cfg.sizes:
            cap = self.capture(size)
            row = {"size": size_label(size), "mb": cap["bytes"] / 1e6, "tokens": cap["tokens"]}
            for task in cs.TASKS:
                reuse = [
                    r for r in tasks.get(task, []) if r["contender"] == "halo_fast" and cap["path"] == main["path"]
                ]
                if reuse:
                    m = reuse[0]
                else:
                    self.log(f"scaling: halo_fast {task} on {cap['bytes'] / 1e6:.0f} MB ...")
                    m = self.one("halo_fast", task, cap)
                row[task] = _brief(m, cap)
            out.append(row)
        return out

    def threads(self, tasks: dict, main: dict) -> list:
        """NUMBA_NUM_THREADS=n for each n; numba's default count reuses the main table's run."""
        out = []
        for task in cs.TASKS:
            row = {"task": task}
            for n in self.cfg.threads:
                reuse = [r for r in tasks.get(task, []) if r["contender"] == "halo_fast"]
                if reuse and n == default_threads():
                    row[str(n)] = _brief(reuse[0], main)
                    continue
                self.log(f"threads: halo_fast {task} with NUMBA_NUM_THREADS={n} ...")
                env = dict(os.environ, NUMBA_NUM_THREADS=str(n))
                row[str(n)] = _brief(self.one("halo_fast", task, main, env), main)
            out.append(row)
        return out

    def cold_start(self) -> dict:
        """``halo_fast.reduce`` in a new process with an empty numba cache, then with it warm."""
        cap = self.capture(COLD_SIZE)
        cache = tempfile.mkdtemp(prefix="numba_cache_", dir=self.scratch)
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        argv = CHILD + ["halo_fast", "reduce", cap["path"], "--expect", str(cap["with_attention"])]
        self.log(f"cold start: halo_fast reduce on {cap['bytes'] / 1e6:.0f} MB with an empty numba cache ...")
        cold = spawn(argv, env)
        if cold.returncode != 0:
            return {"status": "failed", "note": cold.stderr.strip()[-300:]}
        runs = [spawn(argv, env) for _ in range(self.cfg.repeat)]
        warm = statistics.median(r.wall for r in runs)
        return {
            "status": "ok",
            "mb": cap["bytes"] / 1e6,
            "cold_s": cold.wall,
            "cold_inner_s": child_result(cold).get("seconds"),
            "warm_median_s": warm,
            "warm_inner_s": statistics.median(child_result(r)["seconds"] for r in runs),
            "compile_s": cold.wall - warm,
            "cold_rss_mb": cold.rss_mb,
            "warm_rss_mb": max(r.rss_mb for r in runs),
        }


def _all_ok(out: dict) -> bool:
    """No run failed and no contender disagreed with halo_fast (skips are fine)."""
    rows = [row for rows in out["tasks"].values() for row in rows]
    rows += [r[task] for r in out["scaling"] for task in cs.TASKS if task in r]
    rows += [m for r in out["threads"] for key, m in r.items() if key != "task"]
    rows += [out["cold_start"]] if out["cold_start"] else []
    for section in ("directory", "hdf5", "convert"):
        rows += out.get(section, {}).get("rows", [])
    rows += [row for part in out.get("gzip", {}).get("inputs", []) for row in part["rows"]]
    return not any(r["status"] == "failed" or r.get("check", "").startswith(("MISMATCH", "no reference")) for r in rows)


def _ratios(rows: list, base: dict, key: str) -> None:
    """row[key] = its median / base's (whole process); row[key + "_work"] the same for in-process work."""
    if base["status"] != "ok":
        return
    for row in rows:
        if row["status"] != "ok":
            continue
        row[key] = row["median_s"] / base["median_s"]
        if row.get("inner_s") and base.get("inner_s"):
            row[key + "_work"] = row["inner_s"] / base["inner_s"]


def _compare_reduced(reference_npy: str, npy: str, same: str = "same bits as JSON") -> str:
    """The check text for one reduce result against the reference's (float32 means summed in another order)."""
    import numpy as np

    if not (os.path.exists(reference_npy) and npy and os.path.exists(npy)):
        return "no reference"
    a, b = np.load(reference_npy), np.load(npy)
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return f"MISMATCH (shape {a.shape} vs {b.shape})"
    if np.array_equal(a.view(np.uint32), b.view(np.uint32)):
        return same
    both = ~np.isnan(a)
    diff = np.abs(a[both].astype(np.float64) - b[both])
    rel = float(np.max(diff / np.maximum(np.abs(a[both]), 1e-30))) if diff.size else 0.0
    ok = np.allclose(a[both], b[both], rtol=REDUCE_RTOL, atol=REDUCE_ATOL)
    return f"allclose (max rel {rel:.1e})" if ok else f"MISMATCH (max rel {rel:.1e})"


def _brief(m: dict, cap: dict) -> dict:
    if m["status"] != "ok":
        return {"status": m["status"], "note": m.get("note")}
    return {
        "status": "ok",
        "median_s": m["median_s"],
        "min_s": m["min_s"],
        "s_per_gb": m["median_s"] / (cap["bytes"] / 1e9),
        "mb_per_s": cap["bytes"] / 1e6 / m["median_s"],
        "peak_rss_mb": m["peak_rss_mb"],
        "inner_s": m.get("inner_s"),
    }
