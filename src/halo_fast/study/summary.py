"""The study's table: one row per capture, written to OUT_DIR/summary.csv (and summary.parquet).

Columns: ``capture``, ``name``, ``status`` (ok, failed, skipped), ``error``, ``seconds``, ``bytes``,
``worker``, then the job's key figures (``jobs.JOBS``), in the order they first appear. A figure
a capture does not have (a group it lacks, a fit that failed) is an empty cell.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any

from ..store import atomic_path

COLUMNS = ("capture", "name", "status", "error", "seconds", "bytes", "worker")
SUMMARY_CSV = "summary.csv"
SUMMARY_PARQUET = "summary.parquet"


def figure_columns(rows: list[dict]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        for name in row.get("figures") or {}:
            columns.setdefault(name, None)
    return list(columns)


def flat_rows(rows: list[dict]) -> list[dict]:
    """Each row with its figures as columns (floats or None)."""
    figures = figure_columns(rows)
    flat = []
    for row in rows:
        values = row.get("figures") or {}
        out = {c: row.get(c) for c in COLUMNS}
        out.update({name: finite(values.get(name)) for name in figures})
        flat.append(out)
    return flat


def to_pandas(rows: list[dict]) -> Any:  # a pandas DataFrame (pandas is imported only here)
    import pandas as pd

    figures = figure_columns(rows)
    frame = pd.DataFrame(flat_rows(rows), columns=[*COLUMNS, *figures])
    for name in ("seconds", "bytes", *figures):
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
    frame["error"] = frame["error"].fillna("")
    return frame


def write_summary(rows: list[dict], out_dir: str) -> list[str]:
    """summary.csv always, summary.parquet when pyarrow is installed; each written atomically."""
    frame = to_pandas(rows)
    written = []
    path = os.path.join(out_dir, SUMMARY_CSV)
    with atomic_path(path, force=True) as temporary:
        frame.to_csv(temporary, index=False)
    written.append(path)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    path = os.path.join(out_dir, SUMMARY_PARQUET)
    with atomic_path(path, force=True) as temporary:
        frame.to_parquet(temporary, index=False)
    written.append(path)
    return written


def read_summary(path: str) -> tuple[list[str], list[dict]]:
    """(figure columns, rows) of a summary.csv (or of the folder holding one), with the csv module alone:
    batch-stats runs where the study's table was copied to, without pandas or dask."""
    if os.path.isdir(path):
        path = os.path.join(path, SUMMARY_CSV)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in ("capture", "status") if c not in header]
        if missing:
            raise ValueError(f"{path} is not a batch summary: no {', '.join(missing)} column")
        rows = list(reader)
    return [c for c in header if c not in COLUMNS], rows


def finite(value: object) -> float | None:
    """A key figure (a number, or a CSV cell) as a float; None for a missing, empty, non-numeric or
    non-finite one (an empty cell in the summary, left out of the statistics)."""
    if value is None or value == "" or isinstance(value, (bool, dict, list)):
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
