"""``check``: is this capture trustworthy? Row sums, NaN/inf, dead rows, step and context bookkeeping.

Streams token by token, so memory stays flat whatever the capture size.
"""

from __future__ import annotations

import numpy as np

ROW_SUM_TOLERANCE = 1e-2


def check(path, *, recover: bool = False, progress: bool = False, tolerance: float = ROW_SUM_TOLERANCE) -> dict:
    """A data-quality report; ``report["ok"]`` is False when anything is wrong."""
    from tqdm import tqdm

    from .api import open_capture
    from .kernels.rowstats import row_stats

    with open_capture(path, recover=recover) as source:
        steps = np.asarray(source.token_table["step"])
        has = source.has_attention
        per_step = []
        any_negative = False
        for i in tqdm(np.flatnonzero(has).tolist(), disable=not progress, desc="check", leave=False):
            layers, heads, ctx = (int(d) for d in source.shapes[i])
            n_rows = layers * heads
            values = source.token_values(i)
            any_negative = any_negative or bool(len(values) and np.nanmin(values, initial=0.0) < 0)
            sums = np.empty(n_rows)
            nans = np.empty(n_rows, dtype=np.int64)
            infs = np.empty(n_rows, dtype=np.int64)
            constant = np.empty(n_rows, dtype=np.bool_)
            zero = np.empty(n_rows, dtype=np.bool_)
            row_stats(values, n_rows, ctx, sums, nans, infs, constant, zero)
            per_step.append(
                {
                    "step": int(steps[i]),
                    "context_length": ctx,
                    "rows": n_rows,
                    "row_sum_min": float(sums.min()) if n_rows else None,
                    "row_sum_max": float(sums.max()) if n_rows else None,
                    "rows_off_one": int(np.count_nonzero(np.abs(sums - 1.0) > tolerance)),
                    "nan": int(nans.sum()),
                    "inf": int(infs.sum()),
                    "constant_rows": int(constant.sum()),
                    "zero_rows": int(zero.sum()),
                }
            )
        kind = "logits" if any_negative else "probabilities"
        report = {
            "path": source.path,
            "tokens": int(len(steps)),
            "tokens_with_attention": int(has.sum()),
            "kind": kind,
            "recovery": source.recovery,
            "problems": problems(per_step, steps, source.shapes[has, 2], source.prompt_table, kind),
            "per_step": per_step,
        }
    report["ok"] = not report["problems"]
    return report


def problems(per_step: list[dict], steps: np.ndarray, contexts: np.ndarray, prompt, kind: str) -> list[dict]:
    """The findings, one entry per kind of problem, each naming the steps it affects."""
    found = []

    def flag(name: str, description: str, rows: list[dict], key: str):
        hits = [row["step"] for row in rows if row[key]]
        if hits:
            found.append(
                {
                    "problem": name,
                    "description": description,
                    "steps": hits,
                    "count": int(sum(row[key] for row in rows)),
                }
            )

    if kind == "probabilities":
        flag("row_sums", "probability rows that do not sum to ~1", per_step, "rows_off_one")
    flag("nan", "NaN values", per_step, "nan")
    flag("inf", "infinite values", per_step, "inf")
    flag(
        "constant_rows",
        "rows where every value is the same non-zero number (a dead or garbage head)",
        per_step,
        "constant_rows",
    )
    flag("zero_rows", "rows that are all zero", per_step, "zero_rows")
    unique, counts = np.unique(steps, return_counts=True)
    if np.any(counts > 1):
        found.append(
            {
                "problem": "duplicate_steps",
                "description": "steps recorded more than once",
                "steps": unique[counts > 1].tolist(),
                "count": int((counts - 1).sum()),
            }
        )
    if len(unique):
        missing = np.setdiff1d(np.arange(unique.min(), unique.max() + 1), unique)
        if len(missing):
            found.append(
                {
                    "problem": "missing_steps",
                    "description": "steps absent between the first and the last",
                    "steps": missing.tolist(),
                    "count": int(len(missing)),
                }
            )
    with_attention = [row["step"] for row in per_step]
    growth = np.diff(np.asarray(contexts, dtype=np.int64))
    step_growth = np.diff(np.asarray(with_attention, dtype=np.int64))
    irregular = np.flatnonzero(growth != step_growth)
    if len(irregular):
        found.append(
            {
                "problem": "context_growth",
                "description": "context length does not grow by one per step",
                "steps": [with_attention[k + 1] for k in irregular.tolist()],
                "count": int(len(irregular)),
            }
        )
    positions = np.asarray(prompt["position"]) if "position" in prompt else np.empty(0)
    values, counts = np.unique(positions, return_counts=True)
    if np.any(counts > 1):
        found.append(
            {
                "problem": "repeated_prompt_positions",
                "description": "prompt positions that repeat",
                "steps": [],
                "positions": values[counts > 1].tolist(),
                "count": int((counts - 1).sum()),
            }
        )
    return found
