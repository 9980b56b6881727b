"""Turning a benchmark result into tables: plain text for the terminal, Markdown for RESULTS.md.

Both render the same rows (see :func:`sections`), so the terminal and the report
never disagree; the machine description goes with every report because numbers
without the machine they came from cannot be compared.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys

from .contenders import DESCRIPTIONS


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


def _s(x) -> str:
    return "" if x is None else (f"{x:.1f}" if x >= 100 else f"{x:.3f}")


def _n(x) -> str:
    return "" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.1f}")


def _contender_rows(rows: list) -> list:
    out = []
    for r in rows:
        if r["status"] != "ok":
            out.append([r["contender"], r["status"], "", "", "", "", "", "", r.get("note", "")])
            continue
        ratio = r.get("ratio")
        out.append(
            [
                r["contender"],
                _s(r["median_s"]),
                _s(r["min_s"]),
                _n(r.get("mb_per_s")),
                _n(r["peak_rss_mb"]),
                "" if ratio is None else f"{ratio:.2f}x",
                _s(r.get("import_s")),
                _s(r.get("inner_s")),
                r.get("check", ""),
            ]
        )
    return out


def sections(result: dict) -> list:
    """[(title, headers, rows)] for every part of the result that was run."""
    cap = result["capture"]
    what = (
        f"{cap['bytes'] / 1e6:.1f} MB, {cap['tokens']} tokens ({cap['with_attention']} with attention), "
        f"28x28, context {cap['context'][0]}..{cap['context'][1]}"
    )
    headers = ["contender", "median s", "min s", "MB/s", "peak RSS MB", "vs halo_fast", "imports s", "work s", "check"]
    titles = {
        "load": "load: decode every value to float32",
        "reduce": "reduce: mean over layers and heads per token",
        "read": "read: the floor (vs halo_fast load)",
    }
    out = [(f"{titles[task]} ({what})", headers, _contender_rows(rows)) for task, rows in result["tasks"].items()]
    if result.get("scaling"):
        rows = []
        for r in result["scaling"]:
            row = [r["size"], _n(r["mb"]), str(r["tokens"])]
            for task in ("load", "reduce"):
                m = r.get(task, {})
                ok = m.get("status") == "ok"
                row += (
                    [_s(m["median_s"]), f"{m['s_per_gb']:.2f}", _n(m["peak_rss_mb"])]
                    if ok
                    else [m.get("status", ""), "", ""]
                )
            rows.append(row)
        out.append(
            (
                "scaling: halo_fast by file size",
                [
                    "size",
                    "MB",
                    "tokens",
                    "load s",
                    "load s/GB",
                    "load RSS MB",
                    "reduce s",
                    "reduce s/GB",
                    "reduce RSS MB",
                ],
                rows,
            )
        )
    if result.get("threads"):
        counts = [k for k in result["threads"][0] if k != "task"]
        rows = []
        for r in result["threads"]:
            row = [r["task"]] + [_s(r[k].get("median_s")) or r[k].get("status", "") for k in counts]
            first, last = r[counts[0]].get("median_s"), r[counts[-1]].get("median_s")
            row.append(f"{first / last:.2f}x" if first and last else "")
            rows.append(row)
        out.append(
            (
                "threads: halo_fast with NUMBA_NUM_THREADS (median s, whole process)",
                ["task"] + [f"{k} thread{'s' * (k != '1')}" for k in counts] + ["speedup"],
                rows,
            )
        )
    cold = result.get("cold_start")
    if cold:
        if cold["status"] == "ok":
            rows = [
                [
                    "empty numba cache (first run)",
                    _s(cold["cold_s"]),
                    _s(cold["cold_inner_s"]),
                    _n(cold["cold_rss_mb"]),
                ],
                [
                    "warm cache (median of later runs)",
                    _s(cold["warm_median_s"]),
                    _s(cold["warm_inner_s"]),
                    _n(cold["warm_rss_mb"]),
                ],
            ]
        else:
            rows = [["failed", "", "", cold.get("note", "")]]
        out.append(
            (
                f"cold start: halo_fast.reduce on {cold.get('mb', 0):.0f} MB in a new process",
                ["numba cache", "process s", "work s", "peak RSS MB"],
                rows,
            )
        )
    return out + format_sections(result)


def _x(x) -> str:
    return "" if x is None else f"{x:.2f}x"


def _format_rows(rows: list, mb: float, ratios: tuple) -> list:
    """One line per contender: times, MB/s of ``mb``, peak RSS, the ``ratios`` keys, imports, work, check."""
    out = []
    for r in rows:
        if r["status"] != "ok":
            out.append([r["contender"], r["status"]] + [""] * (6 + len(ratios)) + [r.get("note", "")])
            continue
        out.append(
            [r["contender"], _s(r["median_s"]), _s(r["min_s"]), _n(mb / r["median_s"]), _n(r["peak_rss_mb"])]
            + [_x(r.get(k)) for k in ratios]
            + [_s(r.get("import_s")), _s(r.get("inner_s")), _s(r.get("check_s")), r.get("check", "")]
        )
    return out


def format_sections(result: dict) -> list:
    """The other formats of the main capture (.bin directory, HDF5, gzip) and `convert`."""
    out = []
    head = ["contender", "median s", "min s", "MB/s", "peak RSS MB"]
    tail = ["imports s", "work s", "checksum s", "check"]
    d = result.get("directory")
    if d:
        cap = d["input"]
        out.append(
            (
                f"directory: .bin capture directory ({cap.get('bin_files')} .bin files, {d['mb']:.1f} MB of "
                f"float32; MB/s of those bytes; vs floor: time / np.fromfile's, whole process and work)",
                head + ["vs floor", "work vs floor"] + tail,
                _format_rows(d["rows"], d["mb"], ("vs_floor", "vs_floor_work")),
            )
        )
    h = result.get("hdf5")
    if h:
        cap = h["input"]
        out.append(
            (
                f"hdf5: the converted capture read back ({cap['bytes'] / 1e6:.1f} MB .h5, format_version "
                f"{cap['params'].get('format_version')}, uncompressed; MB/s of the {h['mb']:.1f} MB of float32; "
                "speedup: JSON load time / this, whole process and work)",
                head + ["speedup", "work speedup"] + tail,
                _format_rows(h["rows"], h["mb"], ("json_over", "json_work_over")),
            )
        )
    for part in result.get("gzip", {}).get("inputs", []):
        cap = part["input"]
        out.append(
            (
                f"gzip: {os.path.basename(cap['path'])} ({cap['bytes'] / 1e6:.1f} MB, {part['mb']:.1f} MB of "
                "text; MB/s of the text; vs floor: time / gzip -dc's)",
                head + ["vs floor"] + tail,
                _format_rows(part["rows"], part["mb"], ("vs_floor",)),
            )
        )
    c = result.get("convert")
    if c:
        rows = []
        for r in c["rows"]:
            if r["status"] != "ok":
                rows.append([r["size"], _n(r["mb"]), str(r["tokens"]), r["status"], "", "", "", r.get("note", "")])
                continue
            rows.append(
                [
                    r["size"],
                    _n(r["mb"]),
                    str(r["tokens"]),
                    _s(r["median_s"]),
                    _s(r["min_s"]),
                    _n(r["mb"] / r["median_s"]),
                    _n(r["peak_rss_mb"]),
                    _n(r.get("output_mb")),
                ]
            )
        out.append(
            (
                "convert: python -m halo_fast convert CAPTURE.json -o OUT.h5 --compression none (whole process)",
                ["size", "JSON MB", "tokens", "median s", "min s", "MB/s", "peak RSS MB", "output MB"],
                rows,
            )
        )
    return out


def _table(headers, rows, markdown: bool) -> str:
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
    m = result["machine"]
    parts = [
        f"halo_fast bench: {m['cpu']}, {m['usable_cores']} cores, {m['memory_gb']} GB, Python {m['python']}, "
        f"numpy {m['numpy']}, numba {m['numba']}"
    ]
    for title, headers, rows in sections(result):
        parts.append(f"\n{title}\n" + _table(headers, rows, markdown=False))
    for note in result.get("notes", []):
        parts.append(f"note: {note}")
    parts.append("\nall checks passed" if result["ok"] else "\nSOME CHECKS FAILED (see the check column)")
    return "\n".join(parts)


def markdown(result: dict) -> str:
    m = result["machine"]
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
    for title, headers, rows in sections(result):
        parts += ["", f"## {title}", "", _table(headers, rows, markdown=True)]
    parts += ["", "## contenders", ""]
    parts += [f"- **{name}**: {text}" for name, text in DESCRIPTIONS.items()]
    if result.get("notes"):
        parts += ["", "## notes", ""] + [f"- {note}" for note in result["notes"]]
    parts += ["", "All checks passed." if result["ok"] else "**Some checks failed** (see the check column).", ""]
    return "\n".join(parts)
