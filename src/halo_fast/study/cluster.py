"""The Dask side of a batch: a client of a running scheduler, or a local cluster started for the batch.

A local cluster has one worker process per core by default, one Dask thread each (numba's threads do
the parallel work inside a capture), and its workers ignore SIGINT: a Ctrl-C in the terminal reaches
the whole process group, and the batch itself cancels the tasks and stops the workers (a worker
taking the signal would print a traceback and be restarted by its nanny). Each worker also imports
numba and the job's modules once, when it starts (``BatchWorker``), restarted workers included.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin

from .jobs import JOBS


class BatchWorker(WorkerPlugin):
    """On every worker, when it starts: import numba and the job's modules, and (on a local cluster) ignore
    SIGINT. Registered with the scheduler, so a worker the nanny restarts gets it too; named per batch, so
    two batches on one scheduler keep theirs."""

    def __init__(self, job: str, ignore_sigint: bool) -> None:
        self.job = job
        self.ignore_sigint = ignore_sigint
        self.name = f"halo_fast-batch-{uuid.uuid4().hex[:8]}"

    def setup(self, worker: Any) -> None:
        if self.ignore_sigint:
            with contextlib.suppress(ValueError):  # not the worker's main thread: its start already ignored it
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        import numba  # noqa: F401

        importlib.import_module(JOBS[self.job].module.__name__)  # type: ignore[attr-defined]


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None, job: str) -> Iterator[tuple[Client, bool]]:
    """(client, local): a client of the scheduler at ``scheduler``, or of a local cluster of ``workers``
    processes, started here and stopped on the way out."""
    if scheduler:
        with Client(scheduler, timeout="30s") as client:
            plugin = BatchWorker(job, ignore_sigint=False)
            client.register_plugin(plugin)
            try:
                yield client, False
            finally:  # the cluster is the user's: leave it as it was
                with contextlib.suppress(Exception):
                    client.unregister_worker_plugin(plugin.name)
        return
    with _sigint_ignored_by_children():
        cluster = LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # no fixed port: two clusters on one machine do not clash
            silence_logs=logging.ERROR,
        )
    try:
        with Client(cluster) as client:
            client.register_plugin(BatchWorker(job, ignore_sigint=True))
            yield client, True
    finally:
        cluster.close()


@contextlib.contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """Worker processes started in here start with SIGINT ignored (a new Python keeps it so), before any
    plugin could run in them. A Ctrl-C in these few tenths of a second is lost: press it again."""
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
