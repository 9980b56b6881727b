"""A study: many captures through one job on Dask, one table of results, statistics across captures.

``batch(job, captures, out_dir, ...)`` (also ``halo_fast.batch`` and ``python -m halo_fast batch``)
runs a subcommand's own code on every capture, one Dask task each (:mod:`.engine`, :mod:`.jobs`),
writes each capture's outputs and OUT_DIR/summary.csv (:mod:`.summary`), and returns the summary
as a pandas DataFrame. :mod:`.stats` gives per key figure the mean over captures and a bootstrap
confidence interval (``python -m halo_fast batch-stats OUT_DIR``).

This package runs the command line's commands, so it sits in the command line's layer; it needs
the ``[dask]`` extra (dask.distributed and pandas), which the rest of halo_fast does not.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from .engine import run
from .jobs import JOBS, capture_attribute, job_parser, refused_options
from .summary import to_pandas, write_summary


def batch(
    job: str,
    captures: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    force: bool = False,
    progress: bool = False,
    **options: Any,
) -> Any:
    """Run ``job`` (reduce, sentences, decay, score, evict, report, convert) on every capture; return the
    summary table (pandas DataFrame, one row per capture), also written to OUT_DIR/summary.csv.

    ``options`` are the job's command-line options as keywords: ``budgets="64,128"``, ``policies=["h2o",
    "tova"]`` (a list of a comma option is joined), ``group=["a=1:0", "b=1:2"]`` (a repeatable one is
    repeated), ``recover=True``. ``scheduler``: a Dask scheduler's address (tcp://HOST:PORT); without it
    a local cluster of ``workers`` processes (default one per core) runs for this call. ``threads``:
    numba threads per capture (default: a local cluster's cores divided by its workers). A capture whose
    outputs are complete from an earlier call with the same options is ``skipped``; ``force`` redoes all.
    """
    if isinstance(captures, (str, os.PathLike)):
        captures = [captures]  # one capture, not a list of its path's characters
    if not captures:
        raise ValueError("no capture given")
    parser = job_parser(job)
    argv = [os.fspath(c) for c in captures] + options_argv(parser, options)
    ns = parser.parse_intermixed_args(argv)
    return to_pandas(run_namespace(job, ns, os.fspath(out_dir), scheduler, workers, threads, force, progress)[0])


def run_namespace(
    job: str,
    ns: argparse.Namespace,
    out_dir: str,
    scheduler: str | None,
    workers: int | None,
    threads: int | None,
    force: bool,
    progress: bool,
) -> tuple[list[dict], float]:
    """The batch of a parsed job namespace (the command line's and ``batch``'s common path): rows, seconds."""
    refused = refused_options(job, ns)
    if refused:
        raise ValueError(f"batch {job} cannot take {'; '.join(refused)}")
    if scheduler and workers is not None:
        raise ValueError("--workers is for a local cluster; with --scheduler the cluster's own workers run the batch")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"the output folder {out_dir} is a file")
    rows, seconds = run(job, ns, out_dir, scheduler, workers, threads, force, progress)
    write_summary(rows, out_dir)
    return rows, seconds


def options_argv(parser: argparse.ArgumentParser, options: dict) -> list[str]:
    """Keyword options as the command line would give them (``top_k=8`` -> ``--top-k 8``)."""
    flags = {a.dest: a for a in parser._actions if a.option_strings}
    argv: list[str] = []
    for key, value in options.items():
        action = flags.get(key)
        if action is None:
            raise ValueError(f"{parser.prog} has no option {key!r}")
        flag = max(action.option_strings, key=len)
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            if isinstance(action, argparse._AppendAction):
                for item in value:
                    argv += [flag, str(item)]
            else:
                argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv.append(f"{flag}={value}")
    return argv


__all__ = ["JOBS", "batch", "capture_attribute", "run_namespace"]
