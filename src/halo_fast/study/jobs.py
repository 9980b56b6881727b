"""One capture of a batch, as a worker runs it: the single command's own code, its outputs in OUT_DIR.

A job is a subcommand (``reduce``, ``evict``, ...). The batch parses the job's options with
that command's own parser, so a batch accepts exactly what the single command does and runs
exactly its ``run``: a capture's outputs are bit for bit the single command's. What the batch
adds per capture is where the outputs go (``OUT_DIR/NAME.<job's suffix>``), a record
``OUT_DIR/NAME.JOB.json`` written last (atomically: its presence says the capture is complete,
which is what a rerun skips), and the job's key figures: the few numbers per capture a study
compares across captures (summary.csv, batch-stats).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from .._version import __version__
from ..analysis.text import dump
from ..cli import convert_cmd, decay_cmd, evict_cmd, reduce_cmd, report_cmd, score_cmd, sentences_cmd
from ..cli.common import UsageError, os_error_text
from ..errors import CaptureError, MissingDependency, SelectionError
from ..store import atomic_path
from ..store.atomic import output_beside

RECORD_VERSION = 1
# Namespace entries that are not options of the result: where it goes, how it is shown, what runs it.
# ``top`` only changes what is printed (how many rows a table lists), never an output file.
NOT_OPTIONS = ("capture", "source", "output", "csv", "force", "progress", "json", "run", "top")
RECORD_KEYS = ("job", "options", "capture", "bytes", "mtime_ns", "seconds", "worker", "result")

Figures = dict[str, float]


@dataclass(frozen=True)
class Job:
    """A subcommand as a batch job: its module, the options the batch sets per capture, its key figures."""

    module: object
    outputs: Callable[[argparse.Namespace, str], dict[str, str]]  # (options, OUT_DIR/NAME) -> attribute: path
    figures: Callable[[dict], Figures]  # the command's JSON result -> key figures


def _reduce_outputs(ns: argparse.Namespace, stem: str) -> dict[str, str]:
    return {"output": f"{stem}.reduced.{ns.format or 'h5'}"}


def _convert_outputs(ns: argparse.Namespace, stem: str) -> dict[str, str]:
    fmt = ns.format or "h5"
    return {"output": f"{stem}.h5" if fmt == "h5" else f"{stem}_{fmt.replace('-', '_')}"}


def _reduce_figures(out: dict) -> Figures:
    return {"tokens": out["tokens"], "mb_per_s": out["mb_per_s"]}


def _convert_figures(out: dict) -> Figures:
    return {"tokens": out["tokens"], "output_mb": out["output_mb"]}


def _sentences_figures(out: dict) -> Figures:
    figures: Figures = {"sentences": len(out["sentences"])}
    for name, group in (out.get("groups") or {}).items():
        figures[f"mean[{name}]"] = group["mean"]
        figures[f"final[{name}]"] = group["final"]
    return figures


def _decay_figures(out: dict) -> Figures:
    figures: Figures = {}
    for name, group in (out.get("groups") or {}).items():
        figures[f"rate[{name}]"] = group["rate"]
        figures[f"half_life[{name}]"] = group["half_life"]
    for role, row in out["by_role"].items():
        figures[f"rate_median[{role}]"] = row["rate_median"]
    figures["negative_trend_share"] = out["negative_trend_share"]
    figures["recommended_decay_rate"] = out["recommended_decay_rate"]
    return figures


def _score_figures(out: dict) -> Figures:
    by_role: dict[str, list[float]] = {}
    for row in out["sentences"]:
        if row["score"] is not None:
            by_role.setdefault(row["role"], []).append(row["score"])
    figures: Figures = {f"score_mean[{role}]": sum(v) / len(v) for role, v in by_role.items()}
    if out.get("prune_order") is not None:
        figures["pruned_sentences"] = len(out["prune_order"])
    return figures


def _evict_figures(out: dict) -> Figures:
    figures: Figures = {}
    for row in out["results"]:  # the budget as asked (10%), so that the columns line up across captures
        where = f"{row['policy']}@{row['budget_spec']}"
        figures[f"mass_mean[{where}]"] = row["mass_mean"]
        figures[f"mass_min[{where}]"] = row["mass_min"]
        if row["share_of_oracle"] is not None and row["policy"] != "oracle_future":  # its own is 1
            figures[f"share_of_oracle[{where}]"] = row["share_of_oracle"]
    return figures


def _report_figures(out: dict) -> Figures:
    answers = out["answers"]
    figures: Figures = {
        "fading_sentences": len(answers["fading_sentences"]),
        "fading_token_share": answers["fading_token_share"],
        "recommended_decay_rate": answers["recommended_decay_rate"],
        "local_ratio": answers["local_ratio"],
        "distance_weighting_needed": float(answers["distance_weighting_needed"]),
    }
    for row in out.get("eviction") or []:
        figures[f"mass_mean[{row['policy']}@{row['budget_spec']}]"] = row["mass_mean"]
    return figures


JOBS: dict[str, Job] = {
    "reduce": Job(reduce_cmd, _reduce_outputs, _reduce_figures),
    "sentences": Job(sentences_cmd, lambda ns, stem: {"csv": f"{stem}.sentences.csv"}, _sentences_figures),
    "decay": Job(decay_cmd, lambda ns, stem: {}, _decay_figures),
    "score": Job(score_cmd, lambda ns, stem: {}, _score_figures),
    "evict": Job(evict_cmd, lambda ns, stem: {"output": f"{stem}.evict.csv"}, _evict_figures),
    "report": Job(report_cmd, lambda ns, stem: {"output": f"{stem}.report.md"}, _report_figures),
    "convert": Job(convert_cmd, _convert_outputs, _convert_figures),
}


def job_parser(job: str) -> argparse.ArgumentParser:
    """The single command's parser, its one capture argument taking any number of captures."""
    from ..cli.main import Parser

    if job not in JOBS:
        raise UsageError(f"no batch job {job!r}: choose one of {', '.join(JOBS)}")
    holder = Parser(prog="python -m halo_fast batch")
    sub = holder.add_subparsers(parser_class=Parser)
    JOBS[job].module.add_parser(sub)  # type: ignore[attr-defined]
    parser = sub.choices[job]
    parser.usage = f"python -m halo_fast batch {job} CAPTURE... -o OUT_DIR [batch options] [{job} options]"
    parser.allow_abbrev = False  # --forc is not the job's --force: the batch's own options are never abbreviated
    for action in parser._actions:  # the capture (``capture`` or ``source``): one or more in a batch
        if not action.option_strings and action.dest in ("capture", "source"):
            action.nargs = "+"
    return parser


def capture_attribute(ns: argparse.Namespace) -> str:
    return "capture" if hasattr(ns, "capture") else "source"


def job_options(ns: argparse.Namespace) -> dict:
    """The options that shape a result, as the record's JSON gives them back (tuples as lists): what a
    resumed batch must match."""
    options = {k: v for k, v in sorted(vars(ns).items()) if k not in NOT_OPTIONS and not callable(v)}
    return json.loads(dump(options))


def refused_options(job: str, ns: argparse.Namespace) -> list[str]:
    """Options a batch cannot pass on: per-capture output paths it names itself."""
    refused = []
    if job == "evict" and ns.plot:
        refused.append("--plot (one picture per capture: draw them from the NAME.evict.csv tables)")
    if getattr(ns, "csv", None):
        refused.append("--csv (a batch writes each capture's curves to NAME.sentences.csv)")
    if getattr(ns, "output", None):
        refused.append("-o of the job (in a batch, -o is OUT_DIR; outputs are named after each capture)")
    return refused


def capture_name(path: str) -> str:
    """``study/a.json`` -> ``a``: the capture's name without the suffix halo_fast reads (``output_beside``'s rule);
    ``study/caps/`` (a capture folder) -> ``caps``."""
    return os.path.basename(output_beside(os.path.abspath(path), "")) or "capture"


def record_path(out_dir: str, name: str, job: str) -> str:
    return os.path.join(out_dir, f"{name}.{job}.json")


def fingerprint(capture: str) -> dict:
    """What says a capture has not changed since its record: its size and modification time (a capture
    folder: its files' total size and the latest time of the folder and its files, since a file rewritten
    in place leaves the folder's own time as it was)."""
    if not os.path.isdir(capture):
        info = os.stat(capture)
        return {"bytes": info.st_size, "mtime_ns": info.st_mtime_ns}
    files = [entry.stat() for entry in os.scandir(capture) if entry.is_file()]
    latest = max([os.stat(capture).st_mtime_ns, *(f.st_mtime_ns for f in files)])
    return {"bytes": sum(f.st_size for f in files), "mtime_ns": latest}


def run_one(job: str, ns: argparse.Namespace, capture: str, out_dir: str, name: str, threads: int | None) -> dict:
    """Run ``job`` on one capture (in a worker); return its summary row. Never raises for a bad capture:
    a failure is a row with status ``failed`` and the error's text."""
    started = time.perf_counter()
    row: dict = {"capture": capture, "name": name, "status": "failed", "error": "", "seconds": 0.0, "bytes": None}
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    try:
        _set_threads(threads)  # every time: a worker of a user's cluster keeps what an earlier batch set
        before = fingerprint(capture)  # what the result is of, should the capture change while it runs
        row["bytes"] = before["bytes"]
        data = _run_command(job, ns, capture, os.path.join(out_dir, name))
        figures = JOBS[job].figures(data)  # before the record: a record is only written for a usable result
        row["seconds"] = round(time.perf_counter() - started, 3)
        record = {
            "halo_fast_batch": RECORD_VERSION,
            "halo_fast": __version__,
            "job": job,
            "options": job_options(ns),
            "capture": os.path.abspath(capture),
            **before,
            "seconds": row["seconds"],
            "worker": row["worker"],
            "result": data,
        }
        with atomic_path(record_path(out_dir, name, job), force=True) as temporary:
            with open(temporary, "w", encoding="utf-8") as f:
                f.write(dump(record))
        row.update(status="ok", figures=figures)
    except (CaptureError, MissingDependency) as exc:
        row["error"] = str(exc)  # a CaptureError names the file, byte offset and step
    except (UsageError, SelectionError) as exc:
        row["error"] = f"usage error: {exc}"
    except OSError as exc:
        row["error"] = os_error_text(exc)
    except Exception as exc:  # a bug: still one failed row, not a lost batch
        row["error"] = f"{type(exc).__name__}: {exc}"
    if row["status"] == "failed":
        row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def _run_command(job: str, ns: argparse.Namespace, capture: str, stem: str) -> dict:
    """The single command's ``run`` on this capture, outputs at ``stem`` + the job's suffixes."""
    args = argparse.Namespace(**vars(ns))
    setattr(args, capture_attribute(args), capture)
    for attribute, path in JOBS[job].outputs(args, stem).items():
        setattr(args, attribute, path)
    args.force = True  # no record: whatever is there is an unfinished earlier attempt (the record is written last)
    args.progress = False
    output = args.run(args)
    if output.recovery and output.recovery[1]:
        output.data.setdefault("recovery", output.recovery[1])
    return output.data


def _set_threads(threads: int | None) -> None:
    """numba threads for this capture: ``threads``, or numba's default (NUMBA_NUM_THREADS, else the cores)."""
    import numba

    most = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(max(1, min(threads or most, most)))


def read_record(out_dir: str, name: str, job: str) -> dict | None:
    """The record of a complete earlier run, or None (missing, unreadable, or of another version)."""
    try:
        with open(record_path(out_dir, name, job), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    usable = isinstance(record, dict) and record.get("halo_fast_batch") == RECORD_VERSION
    return record if usable and all(key in record for key in RECORD_KEYS) else None


def skipped_row(record: dict, capture: str, name: str, job: str) -> dict:
    return {
        "capture": capture,
        "name": name,
        "status": "skipped",
        "error": "",
        "seconds": record["seconds"],
        "bytes": record["bytes"],
        "worker": record["worker"],
        "figures": JOBS[job].figures(record["result"]),
    }
