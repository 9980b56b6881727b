"""Running one command in fresh processes and measuring it: wall time, its own peak RSS, its answer.

Why processes: peak memory (``ru_maxrss`` from ``os.wait4``) is only meaningful per
process, and a fresh process per run also counts what a user pays on every
invocation (interpreter, imports, numba's cache). Every measurement is one
warm-up run (which also fills the page cache and is the one whose output is
checked) followed by ``repeat`` timed runs; we report their median and minimum.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .rows import FAILED, OK, Timing


@dataclass
class Spawned:
    """One finished process: what :func:`spawn` saw of it."""

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


def spawn(argv: Sequence[str], env: Mapping[str, str] | None = None, capture: bool = True) -> Spawned:
    """Run ``argv`` to completion: wall time, its own peak RSS, exit code and output.

    ``capture=False`` sends stdout to /dev/null, so a floor such as ``cat`` pays no pipe.
    """
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
    """The JSON line a contender child printed last ({} for commands that print none), for the checks."""
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def measure(
    argv: Sequence[str],
    repeat: int,
    env: Mapping[str, str] | None = None,
    capture: bool = True,
    warmup_argv: Sequence[str] | None = None,
    before: Callable[[], None] | None = None,
) -> Timing:
    """One warm-up run (its output is the one checked), then ``repeat`` timed runs.

    ``warmup_argv`` lets the warm-up alone save its result for the checks (``--out``),
    so writing it costs no timed run anything. ``before`` is called before every run
    (the large section drops its input from the page cache).
    """

    def run(command: Sequence[str]) -> Spawned:
        if before is not None:
            before()
        return spawn(command, env, capture)

    warm = run(warmup_argv or argv)
    if warm.returncode != 0:
        tail = (warm.stderr.strip().splitlines() or [f"exit code {warm.returncode}"])[-1]
        return Timing(FAILED, note=f"exit {warm.returncode}: {tail}"[:300])
    first = child_result(warm)
    runs = [run(argv) for _ in range(repeat)]
    bad = [r for r in runs if r.returncode != 0]
    if bad:
        return Timing(FAILED, note=f"a timed run exited {bad[0].returncode}: {bad[0].stderr.strip()[-200:]}")
    walls = [r.wall for r in runs]
    results = [child_result(r) for r in runs]
    timing = Timing(
        OK,
        median_s=statistics.median(walls),
        min_s=min(walls),
        runs_s=[round(w, 4) for w in walls],
        peak_rss_mb=max(r.rss_mb for r in runs),
        result=first,
    )
    if first.get("seconds") is not None:
        timing.inner_s = statistics.median(r["seconds"] for r in results)
        timing.import_s = statistics.median(r["import_seconds"] for r in results)
    if first.get("check_seconds") is not None:
        timing.check_s = statistics.median(r["check_seconds"] for r in results)
    if any(r.get("crc32") != first.get("crc32") for r in results):
        timing.status, timing.note = FAILED, "timed runs gave different results than the warm-up run"
    return timing


def default_threads() -> int:
    """The thread count numba picks when NUMBA_NUM_THREADS is not set (usable CPUs).

    The threads table reuses the main table's run for this count instead of timing it twice.
    """
    if os.environ.get("NUMBA_NUM_THREADS"):
        return int(os.environ["NUMBA_NUM_THREADS"])
    return max(1, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def mem_available_mb() -> float:
    """MemAvailable in MB (infinite if there is none): a contender that would not fit is skipped."""
    from ..formats.mapped import mem_available_bytes

    return mem_available_bytes() / 1e6


def physical_memory_bytes() -> int:
    """This machine's RAM: what a capture must exceed to be read from disk on every run."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def drop_from_page_cache(path: str) -> None:
    """Drop ``path``'s pages from the kernel's page cache (``POSIX_FADV_DONTNEED``), so that the next
    reader gets it from disk; only that file: the interpreter and libraries stay cached."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
