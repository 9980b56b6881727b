"""Plain-text and JSON rendering of analysis results: aligned tables, short numbers, numpy-aware JSON."""

from __future__ import annotations

import json
import math
from typing import Any


def fmt(x: Any, digits: int = 4) -> str:
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


def dump(obj: Any) -> str:
    """JSON text of ``obj``; numpy scalars and arrays become plain numbers and lists."""
    return json.dumps(obj, default=_default)


def _default(x: Any) -> Any:
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(type(x).__name__)
