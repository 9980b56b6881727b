"""The benchmark's sections: which contenders run on which inputs, and how their answers are checked.

Every contender runs in its own processes (:mod:`.processes`), so each has its own
peak memory and pays what a user pays per invocation. Each section returns typed
rows (:mod:`.rows`) that :mod:`.report` renders; :meth:`Suite.run` gives them as the
JSON-ready dict ``bench --json`` prints.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import contenders as cs
from .data import ensure_capture, ensure_forms, size_label
from .processes import (
    child_result,
    compile_bytecode,
    default_threads,
    drop_from_page_cache,
    measure,
    mem_available_mb,
    physical_memory_bytes,
    spawn,
)
from .repeated import ensure_repeated
from .rows import (
    FAILED,
    OK,
    SKIPPED,
    BatchRow,
    Brief,
    ColdStart,
    ContenderRow,
    ConvertRow,
    EvictRow,
    FormatRow,
    FormatSection,
    Results,
    ScalingRow,
    ThreadRow,
    Timing,
)

CHILD = [sys.executable, "-m", "halo_fast.benchmark.contenders"]
ALL_CONTENDERS = ("halo_fast", "json", "orjson", "msgspec", "simdjson", "read")
SECTIONS = ("main", "scaling", "threads", "cold", "directory", "hdf5", "gzip", "convert", "evict", "batch", "large")
#: What `bench` runs unless --sections says otherwise: batch writes 1.2 GB more captures and needs the [dask]
#: extra; large writes a capture larger than the machine's memory (27 GB on 25 GB) and reads it from disk.
DEFAULT_SECTIONS = tuple(s for s in SECTIONS if s not in ("batch", "large"))
#: large section: the capture is at least this many times the machine's memory (in whole GB), the main
#: capture's tokens repeated.
LARGE_OVER_MEMORY = 1.05
#: The eviction replay the evict section times: every policy at these budgets.
EVICT_BUDGETS = "64,128,256"
#: batch section: this many captures of BATCH_SIZE bytes (or the main capture's size, when smaller), each job
#: as a loop of single commands and as `batch` with each worker count.
BATCH_COUNT, BATCH_SIZE, BATCH_WORKERS, BATCH_JOBS = 8, 150_000_000, (1, 2), ("reduce", "evict")
#: A loop of single commands, one process each (what a study does without `batch`): JOB OUT_DIR CAPTURE...
SINGLE_LOOP = (
    "import subprocess, sys\n"
    "job, out, *captures = sys.argv[1:]\n"
    "suffix = {'reduce': '.reduced.h5', 'evict': '.evict.csv'}[job]\n"
    "for i, capture in enumerate(captures):\n"
    "    argv = [sys.executable, '-m', 'halo_fast', job, capture, '-o', f'{out}/{i}{suffix}', '--force']\n"
    "    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)\n"
)
#: gzip section: input form -> tasks halo_fast runs on it (each input also gets its `gzip -dc` floor).
#: halo_fast.load/reduce take any path, so a new reader is measured by listing its tasks here.
GZIP_FORMS = {"jsonl.gz": ("load", "reduce"), "json.gz": ("load", "reduce")}
#: the forms of the main capture each format section reads
SECTION_FORMS = {"directory": ("bin",), "hdf5": ("h5",), "gzip": tuple(GZIP_FORMS)}
COLD_SIZE = 10_000_000  # the cold-start capture: small, so compiling dominates
REDUCE_RTOL, REDUCE_ATOL = 1e-4, 1e-7  # float32 means summed in other orders differ in the last bits


@dataclass
class Config:
    """What to run: the CLI's flags (``halo_fast.cli.bench_cmd``); its fields go into the result as ``config``."""

    size: int
    sizes: list[int]
    repeat: int = 5
    contenders: tuple[str, ...] = ALL_CONTENDERS
    data_dir: str = "bench/data"
    seed: int = 0
    style: str = "js"
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    threads: tuple[int, ...] = (1, 2)
    large_bytes: int | None = None  # the large section's capture size (None: LARGE_OVER_MEMORY x this machine's RAM)


class Suite:
    """The whole benchmark for one :class:`Config`: ``results()`` as typed rows, ``run()`` as JSON-ready dict."""

    def __init__(self, cfg: Config, log: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.notes: list[str] = []
        self.scratch = tempfile.mkdtemp(prefix="halo_bench_")
        self.factors: dict[tuple[str, str], float] = {}
        self.forms: dict[str, dict] = {}
        #: task -> halo_fast on the JSON capture, what the format sections' answers are checked against
        self.reference_rows: dict[str, ContenderRow | None] = {}

    def capture(self, size: int, seed: int | None = None) -> dict:
        """The manifest of the cached capture of ``size`` bytes (written the first time it is asked for)."""
        seed = self.cfg.seed if seed is None else seed
        return ensure_capture(self.cfg.data_dir, size, seed, self.cfg.style, self.log)

    def run(self) -> dict:
        """Every configured section, as the dict ``bench --json`` prints (the CLI adds machine, command, config)."""
        return self.results().to_json()

    def results(self) -> Results:
        """Every configured section, as typed rows; the scratch folder (reduce outputs) is gone afterwards."""
        compile_bytecode()
        try:
            forms = [f for section in self.cfg.sections for f in SECTION_FORMS.get(section, ())]
            main, self.forms = ensure_forms(
                self.cfg.data_dir, self.cfg.size, forms, self.cfg.seed, self.cfg.style, self.log
            )  # first: a stale main capture is rewritten
            out = Results(capture=main)
            if "main" in self.cfg.sections:
                out.tasks = self.main(main)
            if "scaling" in self.cfg.sections:
                out.scaling = self.scaling(out.tasks, main)
            if "threads" in self.cfg.sections:
                out.threads = self.threads(out.tasks, main)
            if "cold" in self.cfg.sections:
                out.cold_start = self.cold_start()
            self.reference_rows = {task: _halo_fast_row(out.tasks.get(task, [])) for task in cs.TASKS}
            if "directory" in self.cfg.sections:
                out.directory = self.directory_section(main)
            if "hdf5" in self.cfg.sections:
                out.hdf5 = self.hdf5_section(main)
            if "gzip" in self.cfg.sections:
                out.gzip = self.gzip_section(main)
            if "convert" in self.cfg.sections:
                out.convert = self.convert_section()
            if "evict" in self.cfg.sections:
                out.evict = self.evict_section(main)
            if "batch" in self.cfg.sections:
                out.batch = self.batch_section()
            if "large" in self.cfg.sections:
                out.large = self.large_section(main)
            out.rss_floor_mb = spawn(["true"]).rss_mb
            self.notes.append(
                f"a peak RSS below ~{out.rss_floor_mb:.0f} MB cannot be seen: a new process "
                "starts with its launcher's resident pages counted"
            )
            out.notes = self.notes
            return out
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # ---- the main table

    def main(self, cap: dict) -> dict[str, list[ContenderRow]]:
        """The load, reduce and read tables: every contender on the main capture, checked against halo_fast."""
        tasks: dict[str, list[ContenderRow]] = {}
        path, mb = cap["path"], cap["bytes"] / 1e6
        for task in cs.TASKS:
            rows = []
            for name in [c for c in self.cfg.contenders if c != "read"]:
                self.log(f"{task}: {name} on {mb:.0f} MB ...")
                rows.append(self.one(name, task, cap))
            tasks[task] = rows
            self.check(task, rows)
        if "read" in self.cfg.contenders:
            self.log("read: floors ...")
            floor = measure(CHILD + ["read", "read", path, "--expect", str(cap["bytes"])], self.cfg.repeat)
            cat = measure(["cat", path], self.cfg.repeat, capture=False)
            startup = measure([sys.executable, "-c", "import numpy"], self.cfg.repeat)
            tasks["read"] = [
                ContenderRow(task="read", contender="read", timing=floor),
                ContenderRow(task="read", contender="cat", timing=cat),
                ContenderRow(task="read", contender="startup", timing=startup),
            ]
        for task, rows in tasks.items():
            base = _halo_fast_row(tasks.get("load" if task == "read" else task, []))
            for row in rows:
                if not row.ok or row.contender == "startup":  # startup has no input: neither a speed nor a contender
                    continue
                row.mb_per_s = mb / row.timing.median_s
                if base and base.ok:
                    row.ratio = row.timing.median_s / base.timing.median_s
        return tasks

    def one(self, name: str, task: str, cap: dict, env: Mapping[str, str] | None = None) -> ContenderRow:
        """Measure one contender on one task, unless it is missing or would not fit in memory."""
        if not cs.available(name):
            return ContenderRow(
                task=task, contender=name, timing=Timing(SKIPPED, f"{cs.REQUIRES[name]} is not installed")
            )
        if name == "simdjson" and cap["bytes"] > cs.SIMDJSON_LIMIT:
            return ContenderRow(
                task=task, contender=name, timing=Timing(SKIPPED, "pysimdjson documents are limited to 4 GB")
            )
        need = self.predicted_mb(name, task, cap)
        if need > 0.85 * mem_available_mb():
            note = f"would need ~{need / 1e3:.1f} GB (MemAvailable {mem_available_mb() / 1e3:.1f} GB)"
            return ContenderRow(task=task, contender=name, timing=Timing(SKIPPED, note), predicted_mb=round(need))
        argv = CHILD + [name, task, cap["path"], "--expect", str(cap["with_attention"])]
        warmup = argv + ["--out", os.path.join(self.scratch, f"{name}_{task}.npy")] if task == "reduce" else argv
        timing = measure(argv, self.cfg.repeat, env, warmup_argv=warmup)
        return ContenderRow(task=task, contender=name, timing=timing, predicted_mb=round(need))

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

    def check(self, task: str, rows: list[ContenderRow]) -> None:
        """halo_fast must give json's float32 bits (load) or the same means up to rounding (reduce)."""
        ref = next((r for r in rows if r.contender == "halo_fast" and r.ok), None)
        if ref is None:
            return
        ref.check = "reference"
        for row in rows:
            if row is ref or not row.ok:
                continue
            if task == "load":
                same = row.timing.result["crc32"] == ref.timing.result["crc32"]
                row.check = "same bits" if same else "MISMATCH (crc32 differs)"
                continue
            row.check = _compare_reduced(
                os.path.join(self.scratch, f"halo_fast_{task}.npy"),
                os.path.join(self.scratch, f"{row.contender}_{task}.npy"),
                "same bits",
            )

    # ---- the same capture in other formats: .bin directory, HDF5, gzip; and convert

    def child(
        self, label: str, contender: str, task: str, path: str, expect: int, out_npy: str | None = None
    ) -> FormatRow:
        """One contender on one input, in its own processes (warm-up + ``repeat`` runs)."""
        if not cs.available(contender):
            skipped = Timing(SKIPPED, f"{cs.REQUIRES[contender]} is not installed")
            return FormatRow(task=task, contender=label, timing=skipped)
        self.log(f"{label} ...")
        argv = CHILD + [contender, task, path, "--expect", str(expect)]
        warmup = argv + ["--out", out_npy] if out_npy else argv
        return FormatRow(task=task, contender=label, timing=measure(argv, self.cfg.repeat, warmup_argv=warmup))

    def halo_fast_rows(self, form: str, cap: dict, tasks: tuple[str, ...] = cs.TASKS) -> list[FormatRow]:
        """halo_fast's ``tasks`` on one input; a reduce saves its result for the check."""
        rows = []
        for task in tasks:
            npy = os.path.join(self.scratch, f"{form}_{task}.npy") if task == "reduce" else None
            row = self.child(f"halo_fast {task}", "halo_fast", task, cap["path"], cap["with_attention"], npy)
            row.npy = npy
            rows.append(row)
        return rows

    def reference(self, task: str, cap: dict) -> ContenderRow | None:
        """halo_fast on the JSON capture: the main table's row, or one run made for the checks."""
        row = self.reference_rows.get(task)
        if row is not None and row.ok:
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
        self.reference_rows[task] = ContenderRow(
            task=task, contender="halo_fast", timing=Timing(OK, result=child_result(run))
        )
        return self.reference_rows[task]

    def check_rows(self, rows: list[ContenderRow], cap: dict) -> None:
        """Every load must give the JSON decode's float32 bits; every reduce its means to rounding."""
        for task in cs.TASKS:
            mine = [r for r in rows if r.task == task and r.ok and r.check is None]
            ref = self.reference(task, cap) if mine else None
            for row in mine:
                if ref is None:
                    row.check = "no reference"
                elif task == "load":
                    same = row.timing.result["crc32"] == ref.timing.result["crc32"]
                    row.check = "same bits as JSON" if same else "MISMATCH (crc32 differs from the JSON decode)"
                else:
                    row.check = _compare_reduced(os.path.join(self.scratch, "halo_fast_reduce.npy"), row.npy)

    def directory_section(self, main: dict) -> FormatSection:
        """A .bin capture directory: halo_fast load/reduce against np.fromfile over its .bin files."""
        cap = self.forms["bin"]
        n = cap["with_attention"]
        floor = self.child("np.fromfile (floor)", "fromfile", "load", cap["path"], n)
        rows: list[ContenderRow] = [floor, *self.halo_fast_rows("bin", cap)]
        self.check_rows(rows, main)
        for row in rows:
            row.vs_floor, row.vs_floor_work = _ratios(row, floor)
        return FormatSection(input=cap, mb=cap["bin_bytes"] / 1e6, rows=rows)

    def hdf5_section(self, main: dict) -> FormatSection:
        """The converted .h5 read back: halo_fast and plain h5py, against halo_fast decoding the JSON."""
        cap = self.forms["h5"]
        n = cap["with_attention"]
        json_row = self.reference_rows.get("load")
        if json_row is None or not json_row.timing.measured:  # the main table did not run halo_fast
            json_row = self.child("halo_fast load (JSON)", "halo_fast", "load", main["path"], n)
            if json_row.ok:
                self.reference_rows["load"] = json_row
        rows = [dataclasses.replace(json_row, contender="halo_fast load (JSON)", task="reference", check="reference")]
        rows += self.halo_fast_rows("h5", cap)
        rows.append(self.child("h5py: attention[t, :, :, :ctx]", "h5py", "load", cap["path"], n))
        rows.append(self.child("h5py: values cut at offsets", "h5py_values", "load", cap["path"], n))
        self.check_rows(rows, main)
        for row in rows:
            row.json_over, row.json_work_over = _ratios(json_row, row)
        return FormatSection(input=cap, mb=cap["float32_bytes"] / 1e6, rows=rows)

    def gzip_section(self, main: dict) -> list[FormatSection]:
        """gzip inputs: halo_fast against `gzip -dc FILE > /dev/null` on the same file."""
        inputs = []
        for form, tasks in GZIP_FORMS.items():
            cap = self.forms[form]
            self.log(f"gzip -dc {os.path.basename(cap['path'])} ...")
            gunzip = measure(["gzip", "-dc", cap["path"]], self.cfg.repeat, capture=False)
            floor = FormatRow(task="read", contender="gzip -dc (floor)", timing=gunzip)
            rows: list[ContenderRow] = [floor, *self.halo_fast_rows(form, cap, tasks)]
            self.check_rows(rows, main)
            for row in rows:
                row.vs_floor, row.vs_floor_work = _ratios(row, floor)
            inputs.append(FormatSection(input=cap, mb=cap["text_bytes"] / 1e6, rows=rows))
        return inputs

    def convert_section(self) -> list[ConvertRow]:
        """`python -m halo_fast convert` (uncompressed) on two sizes: its time, and whether memory stays flat."""
        rows = []
        target = os.path.join(self.scratch, "convert.h5")
        for size in sorted({min(self.cfg.sizes), self.cfg.size}):
            cap = self.capture(size)
            self.log(f"convert: {size_label(size)} ...")
            argv = [sys.executable, "-m", "halo_fast", "convert", cap["path"], "-o", target]
            timing = measure(argv + ["--compression", "none", "--force"], self.cfg.repeat)
            output_mb = os.path.getsize(target) / 1e6 if os.path.exists(target) else None
            rows.append(ConvertRow(size_label(size), cap["bytes"] / 1e6, cap["tokens"], output_mb, timing))
            if os.path.exists(target):
                os.remove(target)
        return rows

    def evict_section(self, cap: dict) -> list[EvictRow]:
        """`evict` (every policy at 64, 128 and 256 tokens) against `reduce`, whole processes, same run."""
        mb = cap["bytes"] / 1e6
        target = os.path.join(self.scratch, "evict_reduce.h5")
        commands = {
            "reduce": ["reduce", cap["path"], "-o", target, "--force"],
            "evict": ["evict", cap["path"], "--budgets", EVICT_BUDGETS, "--json"],
        }
        rows = []
        for name, args in commands.items():
            self.log(f"evict section: {name} on {mb:.0f} MB ...")
            rows.append(EvictRow(name, mb, measure([sys.executable, "-m", "halo_fast", *args], self.cfg.repeat)))
        base = rows[0].timing
        for row in rows:
            if row.ok and base.ok and base.median_s:
                row.ratio = row.timing.median_s / base.median_s
        return rows

    def batch_section(self) -> list[BatchRow]:
        """BATCH_COUNT captures through `reduce` and `evict`: a loop of single commands against `batch` with
        1 and 2 workers (local clusters), whole processes, same run. The peak RSS shown is the command's own
        process: a batch's workers are other processes (each about one single command's)."""
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            skipped = Timing(SKIPPED, note="dask.distributed is not installed (pip install 'halo_fast[dask]')")
            return [BatchRow(job, "batch", BATCH_COUNT, 0.0, skipped) for job in BATCH_JOBS]
        size = min(BATCH_SIZE, self.cfg.size)
        caps = [self.capture(size, self.cfg.seed + 1 + i) for i in range(BATCH_COUNT)]
        paths, mb = [c["path"] for c in caps], sum(c["bytes"] for c in caps) / 1e6
        rows = []
        for job in BATCH_JOBS:
            out = tempfile.mkdtemp(prefix=f"batch_{job}_", dir=self.scratch)
            self.log(f"batch section: {job}, a loop of {BATCH_COUNT} single commands on {mb:.0f} MB ...")
            loop = [sys.executable, "-c", SINGLE_LOOP, job, out, *paths]
            rows.append(BatchRow(job, "loop of single commands", BATCH_COUNT, mb, measure(loop, self.cfg.repeat)))
            for workers in BATCH_WORKERS:
                self.log(f"batch section: {job}, batch with {workers} worker(s) on {mb:.0f} MB ...")
                argv = [sys.executable, "-m", "halo_fast", "batch", job, *paths, "-o", out, "--force"]
                argv += ["--workers", str(workers)]
                rows.append(
                    BatchRow(job, f"batch, {workers} worker(s)", BATCH_COUNT, mb, measure(argv, self.cfg.repeat))
                )
            base = rows[-1 - len(BATCH_WORKERS)].timing
            for row in rows[-1 - len(BATCH_WORKERS) :]:
                if row.ok and base.ok and row.timing.median_s:
                    row.speedup = base.median_s / row.timing.median_s
        return rows

    def large_section(self, main: dict) -> FormatSection:
        """`reduce` of a capture larger than memory, read from disk (its pages dropped from the page cache
        before every run): halo_fast, halo_fast folding over the map (the route before formats.streamed),
        halo_fast with its two passes one after the other, and `cat`."""
        size = self.cfg.large_bytes or -(-int(physical_memory_bytes() * LARGE_OVER_MEMORY) // 10**9) * 10**9
        try:
            cap = ensure_repeated(main, size, self.log)
        except OSError as exc:
            skipped = Timing(SKIPPED, note=f"cannot write a {size / 1e9:.0f} GB capture: {exc.strerror}")
            return FormatSection(
                input={"path": "", "bytes": size},
                mb=size / 1e6,
                rows=[FormatRow("reduce", "halo_fast reduce", skipped)],
            )

        def cold() -> None:
            drop_from_page_cache(cap["path"])

        mb = cap["bytes"] / 1e6
        self.log(f"large section: cat on {mb:.0f} MB from disk ...")
        floor = FormatRow(
            "read", "cat (floor)", measure(["cat", cap["path"]], self.cfg.repeat, capture=False, before=cold)
        )
        rows = [floor]
        for label, contender in (
            ("halo_fast reduce", "halo_fast"),
            ("halo_fast reduce, mapped", "halo_fast_mapped"),
            ("halo_fast reduce, two passes", "halo_fast_two_passes"),
        ):
            self.log(f"large section: {label} on {mb:.0f} MB from disk ...")
            argv = CHILD + [contender, "reduce", cap["path"], "--expect", str(cap["with_attention"])]
            rows.append(FormatRow("reduce", label, measure(argv, self.cfg.repeat, before=cold)))
        one = rows[1]
        if one.ok:
            one.check = "reference"
            for other in rows[2:]:
                if other.ok:
                    same = one.timing.result.get("crc32") == other.timing.result.get("crc32")
                    other.check = "same bits" if same else "MISMATCH (crc32 differs)"
        for row in rows:
            row.vs_floor, row.vs_floor_work = _ratios(row, floor)
        return FormatSection(input=cap, mb=mb, rows=rows)

    # ---- halo_fast alone: sizes, threads, cold start

    def scaling(self, tasks: dict[str, list[ContenderRow]], main: dict) -> list[ScalingRow]:
        """halo_fast on every ``sizes`` capture; the main capture's runs are the main table's."""
        out = []
        for size in self.cfg.sizes:
            cap = self.capture(size)
            row = ScalingRow(size=size_label(size), mb=cap["bytes"] / 1e6, tokens=cap["tokens"])
            for task in cs.TASKS:
                reuse = _halo_fast_row(tasks.get(task, [])) if cap["path"] == main["path"] else None
                if reuse is None:
                    self.log(f"scaling: halo_fast {task} on {cap['bytes'] / 1e6:.0f} MB ...")
                    reuse = self.one("halo_fast", task, cap)
                row.tasks[task] = Brief.of(reuse.timing, cap["bytes"])
            self.log(f"scaling: the memory-scan floor on {cap['bytes'] / 1e6:.0f} MB ...")
            scan = measure(CHILD + ["scan", "read", cap["path"], "--expect", str(cap["bytes"])], self.cfg.repeat)
            row.tasks["scan"] = Brief.of(scan, cap["bytes"])
            out.append(row)
        return out

    def threads(self, tasks: dict[str, list[ContenderRow]], main: dict) -> list[ThreadRow]:
        """NUMBA_NUM_THREADS=n for each n; numba's default count reuses the main table's run."""
        out = []
        for task in cs.TASKS:
            row = ThreadRow(task=task)
            for n in self.cfg.threads:
                reuse = _halo_fast_row(tasks.get(task, []))
                if reuse is not None and n == default_threads():
                    row.counts[n] = Brief.of(reuse.timing, main["bytes"])
                    continue
                self.log(f"threads: halo_fast {task} with NUMBA_NUM_THREADS={n} ...")
                env = dict(os.environ, NUMBA_NUM_THREADS=str(n))
                row.counts[n] = Brief.of(self.one("halo_fast", task, main, env).timing, main["bytes"])
            out.append(row)
        return out

    def cold_start(self) -> ColdStart:
        """``halo_fast.reduce`` in a new process with an empty numba cache, then with it warm."""
        cap = self.capture(COLD_SIZE)
        cache = tempfile.mkdtemp(prefix="numba_cache_", dir=self.scratch)
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        argv = CHILD + ["halo_fast", "reduce", cap["path"], "--expect", str(cap["with_attention"])]
        self.log(f"cold start: halo_fast reduce on {cap['bytes'] / 1e6:.0f} MB with an empty numba cache ...")
        cold = spawn(argv, env)
        if cold.returncode != 0:
            return ColdStart(FAILED, note=cold.stderr.strip()[-300:])
        runs = [spawn(argv, env) for _ in range(self.cfg.repeat)]
        warm = statistics.median(r.wall for r in runs)
        return ColdStart(
            status=OK,
            mb=cap["bytes"] / 1e6,
            cold_s=cold.wall,
            cold_inner_s=child_result(cold).get("seconds"),
            warm_median_s=warm,
            warm_inner_s=statistics.median(child_result(r)["seconds"] for r in runs),
            compile_s=cold.wall - warm,
            cold_rss_mb=cold.rss_mb,
            warm_rss_mb=max(r.rss_mb for r in runs),
        )


def _halo_fast_row(rows: list[ContenderRow]) -> ContenderRow | None:
    """halo_fast's row of a main table (the yardstick of the others), if it has one."""
    return next((r for r in rows if r.contender == "halo_fast"), None)


def _ratios(top: ContenderRow, bottom: ContenderRow) -> tuple[float | None, float | None]:
    """top's median / bottom's (whole processes), and the same for the in-process work; None where not both ran."""
    if not (top.ok and bottom.ok):
        return None, None
    a, b = top.timing, bottom.timing
    return a.median_s / b.median_s, (a.inner_s / b.inner_s if a.inner_s and b.inner_s else None)


def _compare_reduced(reference_npy: str, npy: str | None, same: str = "same bits as JSON") -> str:
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
