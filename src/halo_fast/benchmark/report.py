"""Turning a benchmark result into tables: plain text for the terminal, Markdown for RESULTS.md.

Both render the same tables (see :func:`sections`), so the terminal and the report
never disagree; the machine description goes with every report because numbers
without the machine they came from cannot be compared. The tables are made from
the runner's typed rows (:mod:`.rows`), read back from the result dict the CLI
holds, so a saved ``bench --json`` output renders the same way.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Callable
from typing import NamedTuple

from .contenders import DESCRIPTIONS
from .rows import (
    BatchRow,
    ColdStart,
    ContenderRow,
    ConvertRow,
    EvictRow,
    FormatSection,
    Results,
    ScalingRow,
    ThreadRow,
    Timing,
)


def machine_info() -> dict:
    """Cores, memory, CPU model and the versions that decide the numbers."""
    info = {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "memory_gb": None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) * 1024 / 1e9, 1)  # MemTotal
    except (OSError, ValueError, IndexError):
        pass
    from importlib import metadata

    for dist in ("halo_fast", "numpy", "numba", "pysimdjson", "orjson", "msgspec"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = None
    return info


class Table(NamedTuple):
    """One table of the report: what :func:`text` and :func:`markdown` both lay out."""

    title: str
    headers: list[str]
    rows: list[list[str]]


def _s(x: float | None) -> str:
    return "" if x is None else (f"{x:.1f}" if x >= 100 else f"{x:.3f}")


def _n(x: float | None) -> str:
    return "" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.1f}")


def _x(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}x"


def _results(result: Results | dict) -> Results:
    """The rows of ``result``: the runner's, or read back from the dict ``bench --json`` prints."""
    return result if isinstance(result, Results) else Results.from_json(result)


TASK_TITLES = {
    "load": "load: decode every value to float32",
    "reduce": "reduce: mean over layers and heads per token",
    "read": "read: the floor (vs halo_fast load)",
}
CONTENDER_HEADERS = [
    "contender",
    "median s",
    "min s",
    "MB/s",
    "peak RSS MB",
    "time / halo_fast",
    "imports s",
    "work s",
    "check",
]


def _contender_cells(rows: list[ContenderRow]) -> list[list[str]]:
    """A main table: one line per contender, the reason instead of the numbers when it did not run."""
    out = []
    for r in rows:
        t = r.timing
        if not r.ok:
            out.append([r.contender, t.status, "", "", "", "", "", "", t.note or ""])
            continue
        out.append(
            [
                r.contender,
                _s(t.median_s),
                _s(t.min_s),
                _n(r.mb_per_s),
                _n(t.peak_rss_mb),
                _x(r.ratio),
                _s(t.import_s),
                _s(t.inner_s),
                r.check or "",
            ]
        )
    return out


def _scaling_table(rows: list[ScalingRow]) -> Table:
    cells = []
    for r in rows:
        row = [r.size, _n(r.mb), str(r.tokens)]
        for task in ("load", "reduce"):
            b = r.tasks.get(task)
            if b is not None and b.ok:
                row += [_s(b.median_s), f"{b.s_per_gb:.2f}", _n(b.peak_rss_mb)]
            else:
                row += [b.status if b else "", "", ""]
        scan, reduce = r.tasks.get("scan"), r.tasks.get("reduce")
        if scan is not None and scan.ok:
            ratio = f"{reduce.median_s / scan.median_s:.2f}x" if reduce is not None and reduce.ok else ""
            row += [_s(scan.median_s), ratio]
        else:
            row += [scan.status if scan else "", ""]
        cells.append(row)
    headers = ["size", "MB", "tokens", "load s", "load s/GB", "load RSS MB", "reduce s", "reduce s/GB", "reduce RSS MB"]
    headers += ["scan floor s", "reduce / scan floor"]
    return Table("scaling: halo_fast by file size", headers, cells)


def _threads_table(rows: list[ThreadRow]) -> Table:
    counts = list(rows[0].counts)
    cells = []
    for r in rows:
        briefs = [r.counts[n] for n in counts]
        first, last = briefs[0].median_s, briefs[-1].median_s
        speedup = f"{first / last:.2f}x" if first and last else ""
        cells.append([r.task] + [_s(b.median_s) or b.status for b in briefs] + [speedup])
    return Table(
        "threads: halo_fast with NUMBA_NUM_THREADS (median s, whole process)",
        ["task"] + [f"{n} thread{'s' * (n != 1)}" for n in counts] + ["speedup"],
        cells,
    )


def _cold_table(cold: ColdStart) -> Table:
    if cold.ok:
        cells = [
            ["empty numba cache (first run)", _s(cold.cold_s), _s(cold.cold_inner_s), _n(cold.cold_rss_mb)],
            ["warm cache (median of later runs)", _s(cold.warm_median_s), _s(cold.warm_inner_s), _n(cold.warm_rss_mb)],
        ]
    else:
        cells = [["failed", "", "", cold.note or ""]]
    return Table(
        f"cold start: halo_fast.reduce on {cold.mb or 0:.0f} MB in a new process",
        ["numba cache", "process s", "work s", "peak RSS MB"],
        cells,
    )


def sections(result: Results | dict) -> list[Table]:
    """Every table of the result, for each part that was run: the terminal and the report show the same ones."""
    res = _results(result)
    cap = res.capture
    what = (
        f"{cap['bytes'] / 1e6:.1f} MB, {cap['tokens']} tokens ({cap['with_attention']} with attention), "
        f"28x28, context {cap['context'][0]}..{cap['context'][1]}"
    )
    out = [
        Table(f"{TASK_TITLES[task]} ({what})", CONTENDER_HEADERS, _contender_cells(rows))
        for task, rows in res.tasks.items()
    ]
    if res.scaling:
        out.append(_scaling_table(res.scaling))
    if res.threads:
        out.append(_threads_table(res.threads))
    if res.cold_start is not None:
        out.append(_cold_table(res.cold_start))
    return out + format_sections(res)


#: a format section's comparisons of one row, as its ratio columns show them
Ratios = Callable[[ContenderRow], tuple]
FORMAT_HEAD = ["contender", "median s", "min s", "MB/s", "peak RSS MB"]
FORMAT_TAIL = ["imports s", "work s", "checksum s", "check"]


def _format_cells(section: FormatSection, ratios: Ratios) -> list[list[str]]:
    """One line per contender: times, MB/s of the section's bytes, peak RSS, ``ratios``, imports, work, check."""
    out = []
    for r in section.rows:
        t = r.timing
        shown = [_x(x) for x in ratios(r)]
        if not r.ok:
            out.append([r.contender, t.status] + [""] * (6 + len(shown)) + [t.note or ""])
            continue
        out.append(
            [r.contender, _s(t.median_s), _s(t.min_s), _n(section.mb / t.median_s), _n(t.peak_rss_mb)]
            + shown
            + [_s(t.import_s), _s(t.inner_s), _s(t.check_s), r.check or ""]
        )
    return out


def format_sections(result: Results | dict) -> list[Table]:
    """The other formats of the main capture (.bin directory, HDF5, gzip), `convert`, `evict`, `batch`, `large`."""
    res = _results(result)
    out = []
    d = res.directory
    if d is not None:
        out.append(
            Table(
                f"directory: .bin capture directory ({d.input.get('bin_files')} .bin files, {d.mb:.1f} MB of "
                f"float32; MB/s of those bytes; vs floor: time / np.fromfile's, whole process and work)",
                FORMAT_HEAD + ["vs floor", "work vs floor"] + FORMAT_TAIL,
                _format_cells(d, lambda r: (r.vs_floor, r.vs_floor_work)),
            )
        )
    h = res.hdf5
    if h is not None:
        out.append(
            Table(
                f"hdf5: the converted capture read back ({h.input['bytes'] / 1e6:.1f} MB .h5, format_version "
                f"{h.input['params'].get('format_version')}, uncompressed; MB/s of the {h.mb:.1f} MB of float32; "
                "speedup: JSON load time / this, whole process and work)",
                FORMAT_HEAD + ["speedup", "work speedup"] + FORMAT_TAIL,
                _format_cells(h, lambda r: (r.json_over, r.json_work_over)),
            )
        )
    for part in res.gzip or []:
        out.append(
            Table(
                f"gzip: {os.path.basename(part.input['path'])} ({part.input['bytes'] / 1e6:.1f} MB, {part.mb:.1f} MB "
                "of text; MB/s of the text; vs floor: time / gzip -dc's)",
                FORMAT_HEAD + ["vs floor"] + FORMAT_TAIL,
                _format_cells(part, lambda r: (r.vs_floor,)),
            )
        )
    if res.convert is not None:
        out.append(_convert_table(res.convert))
    if res.evict is not None:
        out.append(_evict_table(res.evict))
    if res.batch is not None:
        out.append(_batch_table(res.batch))
    large = res.large
    if large is not None:
        out.append(
            Table(
                f"large: reduce of {os.path.basename(large.input['path'])} ({large.mb:,.0f} MB, larger than this "
                "machine's memory), read from disk: its pages dropped from the page cache before every run; "
                "vs floor: time / cat's",
                FORMAT_HEAD + ["vs floor"] + FORMAT_TAIL,
                _format_cells(large, lambda r: (r.vs_floor,)),
            )
        )
    return out


def _whole_process_cells(lead: list[str], t: Timing, ratio: float | None) -> list[str]:
    """``lead`` then median, min, peak RSS and a ratio of one whole command; a run that failed or was
    skipped says so in the first of them and why after the last."""
    if not t.ok:
        return [*lead, t.status, "", "", "", t.note or ""]
    return [*lead, _s(t.median_s), _s(t.min_s), _n(t.peak_rss_mb), f"{ratio:.2f}x" if ratio else ""]


def _batch_table(rows: list[BatchRow]) -> Table:
    cells = [_whole_process_cells([r.job, r.how, str(r.captures), _n(r.mb)], r.timing, r.speedup) for r in rows]
    return Table(
        "batch: the same captures through python -m halo_fast JOB one process each (a loop) and through "
        "python -m halo_fast batch JOB ... --workers N (a local Dask cluster; peak RSS: the command's own process)",
        ["job", "how", "captures", "MB", "median s", "min s", "peak RSS MB", "vs loop"],
        cells,
    )


def _evict_table(rows: list[EvictRow]) -> Table:
    cells = [_whole_process_cells([r.command], r.timing, r.ratio) for r in rows]
    return Table(
        "evict: python -m halo_fast evict CAPTURE.json --budgets 64,128,256 (10 policies x 3 budgets) against "
        "python -m halo_fast reduce CAPTURE.json (whole processes, same run)",
        ["command", "median s", "min s", "peak RSS MB", "vs reduce"],
        cells,
    )


def _convert_table(rows: list[ConvertRow]) -> Table:
    cells = []
    for r in rows:
        t = r.timing
        if not r.ok:
            cells.append([r.size, _n(r.mb), str(r.tokens), t.status, "", "", "", t.note or ""])
            continue
        cells.append(
            [
                r.size,
                _n(r.mb),
                str(r.tokens),
                _s(t.median_s),
                _s(t.min_s),
                _n(r.mb / t.median_s),
                _n(t.peak_rss_mb),
                _n(r.output_mb),
            ]
        )
    return Table(
        "convert: python -m halo_fast convert CAPTURE.json -o OUT.h5 --compression none (whole process)",
        ["size", "JSON MB", "tokens", "median s", "min s", "MB/s", "peak RSS MB", "output MB"],
        cells,
    )


def _table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = lambda row: "  ".join(  # noqa: E731 - first column left, numbers right
        str(c).ljust(w) if i == 0 or i == len(row) - 1 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))
    ).rstrip()
    return "\n".join([fmt(headers)] + [fmt(row) for row in rows])


def text(result: dict) -> str:
    """The terminal's view of a result (with the CLI's ``machine``): one line of machine, then every table."""
    m = result["machine"]
    res = _results(result)
    parts = [
        f"halo_fast bench: {m['cpu']}, {m['usable_cores']} cores, {m['memory_gb']} GB, Python {m['python']}, "
        f"numpy {m['numpy']}, numba {m['numba']}"
    ]
    for title, headers, rows in sections(res):
        parts.append(f"\n{title}\n" + _table(headers, rows, markdown=False))
    for note in res.notes:
        parts.append(f"note: {note}")
    parts.append("\nall checks passed" if res.ok else "\nSOME CHECKS FAILED (see the check column)")
    return "\n".join(parts)


def markdown(result: dict) -> str:
    """bench/RESULTS.md: the command and machine that made the numbers, every table, the contenders, the notes.

    ``result`` is the dict the CLI holds: the runner's plus ``machine``, ``command`` and ``config``.
    """
    m = result["machine"]
    res = _results(result)
    parts = [
        "# halo_fast benchmark results",
        "",
        f"Measured {m['date']} with:",
        "",
        "```bash",
        result["command"],
        "```",
        "",
        "| machine | |",
        "| --- | --- |",
        f"| CPU | {m['cpu']} ({m['cores']} cores, {m['usable_cores']} usable) |",
        f"| memory | {m['memory_gb']} GB |",
        f"| system | {m['platform']} |",
        f"| Python | {m['python']} |",
        "| versions | "
        + ", ".join(
            f"{k} {m[k]}" for k in ("halo_fast", "numpy", "numba", "pysimdjson", "orjson", "msgspec") if m.get(k)
        )
        + " |",
        "",
        f"Every time is a whole new process (`python -m halo_fast.benchmark.contenders ...`), median of "
        f"{result['config']['repeat']} runs after one warm-up run, file in the page cache. "
        "Peak RSS is that process's `ru_maxrss`. How to read these: [README.md](README.md).",
    ]
    for title, headers, rows in sections(res):
        parts += ["", f"## {title}", "", _table(headers, rows, markdown=True)]
    parts += ["", "## contenders", ""]
    parts += [f"- **{name}**: {text}" for name, text in DESCRIPTIONS.items()]
    if res.notes:
        parts += ["", "## notes", ""] + [f"- {note}" for note in res.notes]
    parts += ["", "All checks passed." if res.ok else "**Some checks failed** (see the check column).", ""]
    return "\n".join(parts)
