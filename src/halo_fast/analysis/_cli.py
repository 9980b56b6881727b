"""Shared command-line plumbing of the analysis subcommands: reduce options, input, tables, errors."""

from __future__ import annotations

import contextlib
import json
import math


def add_common(p, kind: bool = True) -> None:
    p.add_argument("source", help="capture file, or a .reduced.h5 / .npz written by `reduce`")
    p.add_argument(
        "--op",
        default="mean",
        choices=["mean", "max", "min", "sum", "nanmean"],
        help="reduction over layers and heads (default mean)",
    )
    p.add_argument("--layers", help="layers to keep first, e.g. 24-27, -4:, 0,3 (default all)")
    p.add_argument("--heads", help="heads to keep first (default all)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="keep every Nth generation step")
    p.add_argument("--tokens", metavar="START:STOP", help="only steps START <= step < STOP")
    if kind:
        p.add_argument(
            "--kind",
            choices=["probabilities", "logits"],
            help="value kind (default: logits when any value is negative)",
        )
    p.add_argument("--json", action="store_true", help="print a machine-readable result")


def reduce_options(args) -> dict:
    return {"op": args.op, "layers": args.layers, "heads": args.heads, "every": args.every, "tokens": args.tokens}


@contextlib.contextmanager
def usage_errors():
    """Turn plain ValueErrors (bad options) into UsageError; CaptureError passes through (exit 1)."""
    from ..cli.main import UsageError
    from ..errors import CaptureError

    try:
        yield
    except CaptureError:
        raise
    except FileNotFoundError as exc:
        raise UsageError(f"{exc.strerror or 'no such file'}: {exc.filename}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_output(path: str, force: bool) -> None:
    from ..cli.main import check_output as check

    check(path, force)


def fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def table(rows: list[dict], columns: list[str], widths: dict | None = None) -> str:
    """A plain aligned text table of ``rows`` (dicts) with the given columns."""
    widths = dict(widths or {})
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    for i, c in enumerate(columns):
        cap = widths.get(c, 60)
        for row in cells:
            if len(row[i]) > cap:
                row[i] = row[i][: cap - 1] + "…"
        widths[c] = max([len(c)] + [len(row[i]) for row in cells])
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(v.ljust(widths[c]) for v, c in zip(row, columns)) for row in cells]
    return "\n".join(lines)


def dump(obj) -> str:
    return json.dumps(obj, default=_default)


def _default(x):
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(type(x).__name__)
