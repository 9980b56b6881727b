"""Many captures on Dask: plan which need running, run each as one task, gather the rows.

Each capture is one Dask task running the single command's code (``jobs.run_one``); a worker is a
long-lived process, so numba and the compiled kernels load once per worker, not once per capture.
Without a scheduler address a local cluster is started (and stopped) for the batch
(``cluster.py``); with one, the user's cluster does the work and outlives the batch.

What a study on a shared cluster needs, and where it is done:
- resume: ``plan`` skips the captures whose record matches; everything else runs again;
- faults: a bad capture is a ``failed`` row (the task itself never raises); a worker that dies has
  its task rerun elsewhere by the scheduler, and a capture whose worker dies again and again (out
  of memory) becomes a ``failed`` row, not a lost batch;
- Ctrl-C: the tasks are cancelled, a local cluster is stopped (its temporary files removed once its
  workers are gone), no summary is written, and every output already in OUT_DIR is complete. On a
  running cluster a task already executing cannot be stopped: it finishes in the background;
- every batch's task keys are its own, so two batches on one scheduler never share a task;
- two batches writing to one OUT_DIR at once: the second is refused (a lock file).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

from ..errors import MissingDependency
from ..progress import progress_bar
from ..store.atomic import remove_temporaries
from .jobs import capture_attribute, fingerprint, run_one
from .plan import Plan, outputs_of, plan

LOCK = ".halo_fast_batch.lock"


def require_dask() -> None:
    try:
        import distributed  # noqa: F401
        import pandas  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(
            f"batch needs dask.distributed and pandas ({exc.name} is missing): pip install 'halo_fast[dask]'"
        ) from None


@contextlib.contextmanager
def locked(out_dir: str) -> Iterator[None]:
    """Hold OUT_DIR for this batch (an advisory lock on OUT_DIR/.halo_fast_batch.lock)."""
    with open(os.path.join(out_dir, LOCK), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another batch is writing to {out_dir}: wait for it, or use another folder") from None
        except OSError as exc:  # a file system without locks (some NFS, Lustre without flock)
            if exc.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            warnings.warn(
                f"cannot lock {out_dir} ({exc.strerror}): make sure no other batch writes to it", stacklevel=2
            )
        yield


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
    from .cluster import dask_client, default_threads

    started = time.perf_counter()
    captures = list(getattr(ns, capture_attribute(ns)))
    out_dir = os.path.abspath(out_dir)  # a worker elsewhere resolves a relative path against its own folder
    os.makedirs(out_dir, exist_ok=True)
    with locked(out_dir):
        work = plan(job, ns, captures, out_dir, force)
        rows = dict(work.skipped)
        if work.todo:
            try:
                with dask_client(scheduler, workers, job) as (client, local):
                    threads = threads or default_threads(workers or os.cpu_count() or 1, local)
                    rows.update(_compute(client, job, ns, work, out_dir, threads, progress))
            finally:
                if not scheduler:  # the local workers are gone: what they left half-written can go
                    remove_temporaries(p for c in work.todo for p in outputs_of(job, ns, work, out_dir, c))
    return [rows[c] for c in captures], time.perf_counter() - started


def _compute(
    client: Any, job: str, ns: argparse.Namespace, work: Plan, out_dir: str, threads: int | None, progress: bool
) -> dict[str, dict]:
    from distributed import as_completed

    batch_id = uuid.uuid4().hex[:8]  # this batch's keys: two batches on one scheduler never share a task
    waiting = list(work.todo)
    futures: dict[Any, str] = {}
    done = as_completed()

    def submit_while_free() -> None:
        """One capture per worker thread at a time: a capture is handed out when a thread is free, so a worker
        that dies held only the one it ran (Dask counts a death against every task a worker holds), and no
        capture waits behind a long one on a busy worker while another is idle."""
        free = max(1, sum(client.nthreads().values())) - (len(futures) - len(rows))
        for _ in range(min(free, len(waiting))):
            capture = waiting.pop(0)
            name = work.names[capture]
            key = f"halo_fast-{job}-{batch_id}-{name}"
            future = client.submit(run_one, job, ns, work.paths[capture], out_dir, name, threads, key=key)
            futures[future] = capture
            done.add(future)

    sizes = {c: _size(work.paths[c]) for c in work.todo}
    rows: dict[str, dict] = {}
    with progress_bar(sum(sizes.values()), progress, f"batch {job}") as bar:
        bar.set_postfix_str(f"0/{len(sizes)} captures")
        try:
            submit_while_free()
            for future in done:
                capture = futures[future]
                rows[capture] = dict(_row(future, work.names[capture]), capture=capture)  # as the user gave it
                submit_while_free()
                bar.update(sizes[capture])
                failed = sum(r["status"] == "failed" for r in rows.values())
                bar.set_postfix_str(f"{len(rows)}/{len(sizes)} captures" + (f", {failed} failed" if failed else ""))
        except BaseException:  # Ctrl-C (KeyboardInterrupt) or the scheduler gone: cancel what is left
            with contextlib.suppress(Exception):
                client.cancel(list(futures))
            raise
    return rows


def _row(future: Any, name: str) -> dict:
    try:
        return future.result()
    except Exception as exc:  # the task never raises: this is the cluster giving up on it
        from distributed.scheduler import KilledWorker

        if isinstance(exc, KilledWorker):
            error = (
                "its worker died each time it held this capture, more often than the scheduler allows "
                "(distributed.scheduler.allowed-failures): out of memory?"
            )
        else:
            error = f"{type(exc).__name__}: {exc}"
        return {"name": name, "status": "failed", "error": error, "seconds": None, "bytes": None}


def _size(path: str) -> int:
    try:
        return fingerprint(path)["bytes"]
    except OSError:
        return 0
