"""``check``: is this capture trustworthy? Row sums, NaN/inf, dead rows, step and context bookkeeping.

Streams token by token, so memory stays flat whatever the capture size. A file that says it holds
only some steps (an HDF5 capture `convert --every N --tokens A:B` wrote: ``source.sampling``) is
checked against that series: the steps between are not missing, a step absent from it still is.
"""

from __future__ import annotations

import numpy as np

ROW_SUM_TOLERANCE = 1e-2


def check(
    path, *, recover: bool = False, strict: bool = False, progress: bool = False, tolerance: float = ROW_SUM_TOLERANCE
) -> dict:
    """A data-quality report; ``report["ok"]`` is False when anything is wrong."""
    from tqdm import tqdm

    from .api import open_capture
    from .kernels.rowstats import row_stats

    with open_capture(path, recover=recover, strict=strict, progress=progress) as source:
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
        # a file `convert --every N` wrote says so (HDF5 source): its steps are N apart by design
        sampling = getattr(source, "sampling", None)
        report = {
            "path": source.path,
            "tokens": int(len(steps)),
            "tokens_with_attention": int(has.sum()),
            "kind": kind,
            "recovery": source.recovery,
            "sampling": sampling,
            "problems": problems(per_step, steps, source.shapes[has, 2], source.prompt_table, kind, sampling),
            "per_step": per_step,
        }
    report["ok"] = not report["problems"]
    return report


def problems(
    per_step: list[dict], steps: np.ndarray, contexts: np.ndarray, prompt, kind: str, sampling: dict | None = None
) -> list[dict]:
    """The findings, one entry per kind of problem, each naming the steps it affects.

    ``sampling`` (``{"every": N, "tokens": "START:STOP"}``, from a file that says it holds only
    some steps): missing steps are those of the sampled series (one in N from START), not every step.
    """
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
    every, base = sampling_grid(sampling)
    series = f"one step in {every} from step {base}"
    if len(unique):
        first = unique.min()
        if every > 1:
            first = first + (base - first) % every  # the sampled series' first step at or after the first present
        missing = np.setdiff1d(np.arange(first, unique.max() + 1, every), unique)
        if len(missing):
            found.append(
                {
                    "problem": "missing_steps",
                    "description": "steps absent between the first and the last"
                    + (f" (of the sampled series: {series})" if every > 1 else ""),
                    "steps": missing.tolist(),
                    "count": int(len(missing)),
                }
            )
        if every > 1:
            off = unique[(unique - base) % every != 0]
            if len(off):
                found.append(
                    {
                        "problem": "unsampled_steps",
                        "description": f"steps outside the recorded sampling ({series})",
                        "steps": off.tolist(),
                        "count": int(len(off)),
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


def sampling_grid(sampling: dict | None) -> tuple[int, int]:
    """(N, START) of a recorded sampling: the file should hold the steps START, START + N, ...
    (convert keeps steps with (step - START) % N == 0); (1, 0) for a file holding every step."""
    if not sampling:
        return 1, 0
    every = int(sampling.get("every") or 1)
    start = (sampling.get("tokens") or "").split(":")[0].strip()
    return every, int(start) if start else 0


def sampling_text(sampling: dict | None) -> str | None:
    """The line ``check`` prints for a sampled file (None when it holds every step)."""
    if not sampling:
        return None
    every, base = sampling_grid(sampling)
    parts = []
    if every > 1:
        parts.append(f"one step in {every} from step {base}")
    if sampling.get("tokens"):
        parts.append(f"steps {sampling['tokens']}")
    note = ": the steps in between are not missing" if every > 1 else ""
    return "sampled by convert (" + ", ".join(parts) + ")" + note
