"""``batch``: one job (reduce, evict, ...) over many captures on Dask; a summary table and its statistics.

``python -m halo_fast batch JOB CAPTURE... -o OUT_DIR [--scheduler ADDRESS] [--workers N] [JOB options]``:
the job's options are the single command's own (its parser reads them), captures may stand
anywhere among them. The batch's own options are declared here; everything else goes to the job.
"""

from __future__ import annotations

import argparse

from ..analysis.text import fmt, table
from .common import Output, UsageError, json_option, progress_option
from .interrupt import cancel_on_sigint
from .main import Parser

JOB_NAMES = ("reduce", "sentences", "decay", "score", "evict", "report", "convert")
SHOWN_ROWS = 40  # the text output lists every capture up to this many, else only the failed ones
SHOWN_FIGURES = 24  # and this many key figures' statistics (batch-stats gives them all)


def batch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="OUT_DIR", help="folder for every output and summary.csv (required)")
    p.add_argument(
        "--scheduler", metavar="ADDRESS", help="a running Dask scheduler, tcp://HOST:PORT (default: a local cluster)"
    )
    p.add_argument(
        "--workers", type=int, metavar="N", help="worker processes of the local cluster (default: one per core)"
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="numba threads per capture (default: a local cluster's cores / workers; on a cluster numba's default)",
    )
    p.add_argument("--force", action="store_true", help="redo every capture, even those complete in OUT_DIR")
    progress_option(p)
    json_option(p)


class BatchParser(Parser):
    """The batch's own options, then the job's parser for the rest: the job's option values are never taken
    for captures, and a capture may come before, between or after the options."""

    def parse_known_args(self, args=None, namespace=None):
        from ..study.jobs import job_parser

        args = list(args or [])
        if "-h" in args or "--help" in args:  # the batch's options, then the job's own, when it is named
            self.print_help()
            job = next((a for a in args if a in JOB_NAMES), None)
            if job:
                print(f"\n{job}'s own options (-o, --csv and --plot excepted):\n")
                print(job_parser(job).format_help())
            self.exit()
        ns, rest = super().parse_known_args(args, namespace)
        ns.job_args = job_parser(ns.job).parse_intermixed_args(rest)
        return ns, []


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "batch",
        add_help=False,  # BatchParser gives --help itself: the batch's options and the job's
        help="run one job over many captures on Dask (a local cluster or a scheduler); summary.csv of key figures",
        description="Run JOB (reduce, sentences, decay, score, evict, report, convert) on every CAPTURE, one Dask "
        "task each, with JOB's own options (see `python -m halo_fast JOB --help`). Each capture's outputs go to "
        "OUT_DIR/NAME.* (written atomically), with NAME.JOB.json last: a rerun into the same OUT_DIR skips the "
        "captures that are complete. OUT_DIR/summary.csv (and summary.parquet with pyarrow) has one row per "
        "capture: status ok/failed/skipped, the error, seconds, bytes and the job's key figures; the mean and 95% "
        "bootstrap interval of each figure follow (batch-stats). Exit 1 when any capture failed. "
        "Needs pip install 'halo_fast[dask]'.",
        usage="python -m halo_fast batch JOB CAPTURE... -o OUT_DIR [--scheduler ADDRESS] [--workers N] "
        "[--threads N] [--force] [--progress] [--json] [JOB options]",
        allow_abbrev=False,
    )
    p.__class__ = BatchParser  # argparse builds subparsers of one class; this one parses in two stages
    p.add_argument("-h", "--help", action="store_true", help="show this help (and JOB's options) and exit")
    p.add_argument("job", metavar="JOB", choices=JOB_NAMES, help=", ".join(JOB_NAMES))
    batch_options(p)
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..study import run_namespace
    from ..study.stats import figure_stats
    from ..study.summary import figure_columns, flat_rows
    from .common import usage_errors

    if not args.output:
        raise UsageError("batch needs -o OUT_DIR: the folder its outputs and summary.csv go to")
    with usage_errors(), cancel_on_sigint():  # Ctrl-C: the tasks cancelled, a local cluster stopped, then 130
        rows, seconds = run_namespace(
            args.job,
            args.job_args,
            args.output,
            args.scheduler,
            args.workers,
            args.threads,
            args.force,
            bool(args.progress),
        )
    counts = {status: sum(r["status"] == status for r in rows) for status in ("ok", "failed", "skipped")}
    summary = flat_rows(rows)
    out = {
        "job": args.job,
        "out_dir": args.output,
        "captures": len(rows),
        "counts": counts,
        "seconds": round(seconds, 3),
        "summary": summary,
        "stats": figure_stats(figure_columns(rows), summary),
    }
    return Output(out, lambda: render(out), code=1 if counts["failed"] else 0)


def render(out: dict) -> str:
    rows = out["summary"]
    counts = out["counts"]
    lines = [
        f"batch {out['job']}: {out['captures']} captures in {out['seconds']:.1f} s: {counts['ok']} ok, "
        f"{counts['skipped']} skipped (complete from before), {counts['failed']} failed; summary in "
        f"{out['out_dir']}/summary.csv"
    ]
    shown = rows if len(rows) <= SHOWN_ROWS else [r for r in rows if r["status"] == "failed"]
    if shown:
        lines.append(table(shown, ["name", "status", "seconds", "error"], {"error": 100}))
    if any(s["n"] for s in out["stats"]):
        lines.append("\nacross captures (mean, 95% bootstrap interval):")
        stats = [dict(s, interval=_interval(s)) for s in out["stats"]]
        lines.append(table(stats[:SHOWN_FIGURES], ["figure", "n", "mean", "interval"]))
        if len(stats) > SHOWN_FIGURES:
            lines.append(f"... {len(stats) - SHOWN_FIGURES} more: python -m halo_fast batch-stats {out['out_dir']}")
    return "\n".join(lines)


def _interval(row: dict) -> str:
    return "-" if row["ci_low"] is None else f"{fmt(row['ci_low'], 4)} .. {fmt(row['ci_high'], 4)}"
