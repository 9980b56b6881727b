"""Many captures on Dask: plan which need running, run them on a cluster, gather one table.

Each capture is one Dask task running the single command's code (``jobs.run_one``); a worker
is a long-lived process, so numba and the compiled kernels load once per worker, not once
per capture. Without a scheduler address a ``LocalCluster`` of worker processes is started
(and stopped) here; with one, the user's cluster does the work and outlives the batch.

What a study on a shared cluster needs, and where it is done:
- resume: a capture whose record (``NAME.JOB.json``, written last) matches the capture's size,
  modification time and the options is ``skipped``; anything else runs again (``plan``);
- faults: a bad capture is a ``failed`` row (the task itself never raises); a worker that dies
  has its task rerun elsewhere by the scheduler, and one that dies on the same capture again and
  again (out of memory) makes that capture a ``failed`` row, not a lost batch;
- Ctrl-C: the tasks are cancelled, a local cluster is stopped, and no summary is written
  (every output already in OUT_DIR is complete; a rerun resumes);
- two batches writing to one OUT_DIR at once: the second is refused (a lock file).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import MissingDependency
from .jobs import JOBS, capture_attribute, capture_name, fingerprint, job_options, read_record, run_one, skipped_row

LOCK = ".halo_fast_batch.lock"


def require_dask() -> None:
    try:
        import distributed  # noqa: F401
        import pandas  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(
            f"batch needs dask.distributed and pandas ({exc.name} is missing): pip install 'halo_fast[dask]'"
        ) from None


@dataclass
class Plan:
    """What a batch will do: every capture's name, and which run and which are complete already."""

    captures: list[str]
    names: dict[str, str]
    skipped: dict[str, dict] = field(default_factory=dict)  # capture -> its summary row from the record

    @property
    def todo(self) -> list[str]:
        return [c for c in self.captures if c not in self.skipped]


def unique_names(captures: list[str]) -> dict[str, str]:
    """Each capture's output name: its file name without the capture suffix, or, where two share one,
    its path below the folder they all share, with ``__`` for the separators (``m1__p1__capture``)."""
    absolute = [os.path.abspath(c) for c in captures]
    if len(set(absolute)) < len(absolute):
        seen = [c for c, a in zip(captures, absolute) if absolute.count(a) > 1]
        raise ValueError(f"a capture is given twice: {seen[0]}")
    names = {c: capture_name(c) for c in captures}
    if len(set(names.values())) == len(names):
        return names
    common = os.path.commonpath([os.path.dirname(a) for a in absolute])
    relative = {c: os.path.relpath(a, common) for c, a in zip(captures, absolute)}
    return {c: os.path.join(os.path.dirname(r), capture_name(r)).replace(os.sep, "__") for c, r in relative.items()}


def plan(job: str, ns: argparse.Namespace, captures: list[str], out_dir: str, force: bool) -> Plan:
    """Which captures need running. A record made with other options is a usage error (without --force):
    a study's table must not mix two settings silently."""
    names = unique_names(captures)
    result = Plan(captures, names)
    if force:
        return result
    options = job_options(ns)
    for capture in captures:
        record = read_record(out_dir, names[capture], job)
        if record is None:
            continue
        if record["options"] != options:
            changed = sorted(
                k for k in set(record["options"]) | set(options) if record["options"].get(k) != options.get(k)
            )
            raise ValueError(
                f"{out_dir} holds {job} results made with other options ({', '.join(changed)} differ, e.g. for "
                f"{capture}): use another output folder, or --force to redo every capture"
            )
        try:
            unchanged = {k: record[k] for k in ("bytes", "mtime_ns")} == fingerprint(capture)
        except OSError:
            continue  # the capture is gone or unreadable: running it gives the failed row that says so
        if unchanged and record["capture"] == os.path.abspath(capture):
            result.skipped[capture] = skipped_row(record, capture, names[capture], job)
    return result


@contextlib.contextmanager
def locked(out_dir: str) -> Iterator[None]:
    """Hold OUT_DIR for this batch; remove what an interrupted one left half-written (its temporary files)."""
    handle = open(os.path.join(out_dir, LOCK), "w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(f"another batch is writing to {out_dir}: wait for it, or use another folder") from None
        remove_temporaries(out_dir)
        yield
    finally:
        handle.close()


def remove_temporaries(out_dir: str) -> None:
    import shutil

    for path in glob.glob(os.path.join(glob.escape(out_dir), ".*.tmp")):  # store.atomic's temporary names
        with contextlib.suppress(OSError):
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None) -> Iterator[tuple[Any, bool]]:
    """(client, local): a client of the scheduler at ``scheduler``, or of a local cluster of ``workers``
    processes (default one per core), one Dask thread each -- numba's threads do the parallel work."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler, timeout="30s") as client:
            yield client, False
        return
    n = workers or os.cpu_count() or 1
    with sigint_ignored_by_children():
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # no fixed port: two clusters on one machine do not clash
            silence_logs=logging.ERROR,
        )
    try:
        with Client(cluster) as client:
            yield client, True
    finally:
        cluster.close()


@contextlib.contextmanager
def sigint_ignored_by_children() -> Iterator[None]:
    """Worker processes started in here ignore SIGINT: a Ctrl-C in the terminal reaches the whole process
    group, and the batch itself stops them (a worker taking it would print a traceback and be restarted).
    A new Python keeps SIGINT ignored when it starts with it ignored."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def default_threads(workers: int, local: bool) -> int | None:
    """numba threads per capture: a local cluster shares this machine's cores between its workers;
    on a cluster each worker keeps numba's default (NUMBA_NUM_THREADS, else the machine's cores)."""
    return max(1, (os.cpu_count() or 1) // workers) if local else None


def run(
    job: str,
    ns: argparse.Namespace,
    out_dir: str,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> tuple[list[dict], float]:
    """Every capture of ``ns`` through ``job``: (summary rows in the order given, seconds)."""
    require_dask()
    started = time.perf_counter()
    captures = list(getattr(ns, capture_attribute(ns)))
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir, exist_ok=True)
    with locked(out_dir):
        todo_plan = plan(job, ns, captures, out_dir, force)
        rows = dict(todo_plan.skipped)
        if todo_plan.todo:
            with dask_client(scheduler, workers) as (client, local):
                n = workers or len(client.scheduler_info()["workers"]) or 1
                rows.update(
                    _compute(client, job, ns, todo_plan, out_dir, threads or default_threads(n, local), progress)
                )
            remove_temporaries(out_dir)
    return [rows[c] for c in captures], time.perf_counter() - started


def _compute(
    client: Any, job: str, ns: argparse.Namespace, todo: Plan, out_dir: str, threads: int | None, progress: bool
) -> dict:
    from distributed import as_completed

    client.run(_warm_up, job)  # every worker imports numba and the job's modules now, once
    sizes = {c: _size(c) for c in todo.todo}
    futures = {
        client.submit(
            run_one, job, ns, c, out_dir, todo.names[c], threads, key=f"halo_fast-{job}-{todo.names[c]}", pure=False
        ): c
        for c in todo.todo
    }
    rows: dict[str, dict] = {}
    bar = _bar(progress, sum(sizes.values()), len(futures), job)
    try:
        for future in as_completed(futures):
            capture = futures[future]
            rows[capture] = _row(future, capture, todo.names[capture])
            bar.update(sizes[capture])
            failed = sum(r["status"] == "failed" for r in rows.values())
            bar.set_postfix_str(f"{len(rows)}/{len(futures)} captures" + (f", {failed} failed" if failed else ""))
    except BaseException:  # Ctrl-C (KeyboardInterrupt) or the scheduler gone: cancel what is left
        with contextlib.suppress(Exception):
            client.cancel(list(futures))
        raise
    finally:
        bar.close()
    return rows


def _row(future: Any, capture: str, name: str) -> dict:
    try:
        return future.result()
    except Exception as exc:  # the task never raises: this is the cluster giving up (a worker died each time)
        from distributed.scheduler import KilledWorker

        if isinstance(exc, KilledWorker):
            error = "the worker running it died on each attempt (out of memory?)"
        else:
            error = f"{type(exc).__name__}: {exc}"
        return {"capture": capture, "name": name, "status": "failed", "error": error, "seconds": None, "bytes": None}


def _warm_up(job: str) -> None:
    import importlib

    import numba  # noqa: F401

    importlib.import_module(JOBS[job].module.__name__)  # type: ignore[attr-defined]


def _size(capture: str) -> int:
    try:
        return fingerprint(capture)["bytes"]
    except OSError:
        return 0


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(enabled: bool, total_bytes: int, count: int, job: str) -> Any:
    """One bar on stderr: the bytes of the captures done, and how many are done (and failed)."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"batch {job}", file=sys.stderr, leave=False)
    bar.set_postfix_str(f"0/{count} captures")
    return bar
