"""Before a batch runs: every capture's output name, and which captures are complete already.

A capture is complete when its record (``NAME.JOB.json``, written last) says it was made from this
capture (path, size, modification time) with these options; such a capture is ``skipped``. A record
made with other options, or from another capture of the same name, is a usage error without
``--force``: one study's table must not mix two settings, and one capture's outputs must not
silently replace another's.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from .._version import __version__
from .jobs import JOBS, capture_name, fingerprint, job_options, read_record, record_path, skipped_row


@dataclass
class Plan:
    """Every capture (as given), its absolute path and output name, and the rows of those complete already."""

    captures: list[str]
    paths: dict[str, str]
    names: dict[str, str]
    skipped: dict[str, dict] = field(default_factory=dict)  # capture -> its summary row, from the record

    @property
    def todo(self) -> list[str]:
        return [c for c in self.captures if c not in self.skipped]


def unique_names(captures: list[str]) -> dict[str, str]:
    """Each capture's output name: its file name without the capture suffix; where two or more share one,
    theirs is their path below the folder they share, with ``__`` for the separators (``m1__p1__capture``)."""
    paths = [os.path.abspath(c) for c in captures]
    if len(set(paths)) < len(paths):
        twice = next(c for c, path in zip(captures, paths) if paths.count(path) > 1)
        raise ValueError(f"a capture is given twice: {twice}")
    absolute = dict(zip(captures, paths))
    names = {c: capture_name(absolute[c]) for c in captures}
    by_name: dict[str, list[str]] = {}
    for c in captures:
        by_name.setdefault(names[c], []).append(c)
    for group in (g for g in by_name.values() if len(g) > 1):
        common = os.path.commonpath([os.path.dirname(absolute[c]) for c in group])
        for c in group:
            relative = os.path.relpath(absolute[c], common)
            names[c] = os.path.join(os.path.dirname(relative), capture_name(relative)).replace(os.sep, "__")
    seen: dict[str, str] = {}
    for c in captures:
        if names[c] in seen:
            raise ValueError(f"{seen[names[c]]} and {c} would both be named {names[c]}: rename one, or run two batches")
        seen[names[c]] = c
    return names


def plan(job: str, ns: argparse.Namespace, captures: list[str], out_dir: str, force: bool) -> Plan:
    """The names, then (without ``force``) which captures are complete. ``out_dir`` is absolute."""
    names = unique_names(captures)
    work = Plan(captures, {c: os.path.abspath(c) for c in captures}, names)
    _check_outputs_are_not_inputs(job, ns, work, out_dir)
    if force:
        return work
    options = job_options(ns)
    for capture in captures:
        name, path = names[capture], work.paths[capture]
        record = read_record(out_dir, name, job)
        if record is None:
            continue
        if record["options"] != options:
            theirs = record["options"]
            changed = sorted(k for k in set(theirs) | set(options) if theirs.get(k) != options.get(k))
            version = record.get("halo_fast")
            upgrade = (
                f"; they were made by halo_fast {version}, this is {__version__}" if version != __version__ else ""
            )
            raise ValueError(
                f"{out_dir} holds {job} results made with other options ({', '.join(changed)} differ, e.g. for "
                f"{capture}{upgrade}): use another output folder, or --force to redo every capture"
            )
        if record["capture"] != path:
            raise ValueError(
                f"{record_path(out_dir, name, job)} is the result of another capture ({record['capture']}), not of "
                f"{capture}: use another output folder, or --force to replace it"
            )
        try:
            unchanged = {k: record[k] for k in ("bytes", "mtime_ns")} == fingerprint(path)
            row = skipped_row(record, capture, name, job) if unchanged else None
        except (OSError, KeyError, TypeError, ValueError):
            continue  # the capture is gone (its run gives the failed row that says so) or the record is unusable
        if row is not None:
            work.skipped[capture] = row
    return work


def outputs_of(job: str, ns: argparse.Namespace, work: Plan, out_dir: str, capture: str) -> list[str]:
    """Every path the batch writes for ``capture``: the job's outputs, then the record."""
    name = work.names[capture]
    return [*JOBS[job].outputs(ns, os.path.join(out_dir, name)).values(), record_path(out_dir, name, job)]


def _check_outputs_are_not_inputs(job: str, ns: argparse.Namespace, work: Plan, out_dir: str) -> None:
    """``batch convert caps/*.h5 -o caps`` would write caps/NAME.h5 over its own input: refuse it."""
    inputs = set(work.paths.values())
    for capture in work.captures:
        for output in outputs_of(job, ns, work, out_dir, capture):
            if os.path.abspath(output) in inputs:
                raise ValueError(f"the output {output} of {capture} would replace a capture: use another folder")
