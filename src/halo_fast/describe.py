"""What a capture holds, from a structure scan plus a few decoded tokens (no full decode)."""

from __future__ import annotations

import numpy as np

ROW_SUM_TOLERANCE = 1e-2


def value_kind(attention: np.ndarray) -> tuple[str, float, float]:
    """Classify one token's [layers, heads, ctx] values: probabilities, logits or unknown.

    Returns (kind, smallest row sum, largest row sum). Probabilities are
    non-negative rows summing to ~1 (post-softmax); logits have negative values.
    """
    rows = attention.reshape(-1, attention.shape[-1]).astype(np.float64)
    with np.errstate(invalid="ignore"):
        sums = np.nansum(rows, axis=1)
    low, high = (float(sums.min()), float(sums.max())) if len(sums) else (np.nan, np.nan)
    if np.nanmin(rows, initial=0.0) < 0:
        return "logits", low, high
    if len(sums) and np.all(np.abs(sums - 1.0) <= ROW_SUM_TOLERANCE):
        return "probabilities", low, high
    return "unknown", low, high


def describe(path, samples: int = 3, recover: bool = False, strict: bool = False, progress: bool = False) -> dict:
    from .api import open_capture
    from .formats.detect import capture_bytes

    with open_capture(path, recover=recover, strict=strict, progress=progress) as scan:
        with_attention = np.flatnonzero(scan.has_attention)
        steps = scan.token_table["step"]
        info = {
            "path": str(path),
            "format": scan.format_name,
            "file_mb": round(capture_bytes(path) / 1e6, 1),
            "bytes": capture_bytes(path),
            "model": scan.metadata.get("model"),
            "tokens": len(scan.token_table),
            "tokens_with_attention": int(len(with_attention)),
            "steps": [int(steps.min()), int(steps.max())] if len(steps) else [],
            "layers": int(scan.shapes[with_attention[0], 0]) if len(with_attention) else 0,
            "heads": int(scan.shapes[with_attention[0], 1]) if len(with_attention) else 0,
            "context_min": int(scan.shapes[with_attention, 2].min()) if len(with_attention) else 0,
            "context_max": int(scan.shapes[with_attention, 2].max()) if len(with_attention) else 0,
            "prompt_tokens": len(scan.prompt_table),
            "float32_mb": round(float(scan.offsets[-1]) * 4 / 1e6, 1),
            "metadata_keys": sorted(scan.metadata),
            "recovery": scan.recovery,
        }
        picked = (
            sorted({int(with_attention[k]) for k in np.linspace(0, len(with_attention) - 1, samples).astype(int)})
            if len(with_attention)
            else []
        )
        kinds = []
        for i in picked:
            values = scan.token_values(i).reshape(tuple(int(d) for d in scan.shapes[i]))
            kind, low, high = value_kind(values)
            kinds.append({"step": int(steps[i]), "kind": kind, "row_sum_min": low, "row_sum_max": high})
    found = {k["kind"] for k in kinds}
    info["values"] = found.pop() if len(found) == 1 else ("mixed" if found else "none")
    info["sampled"] = kinds
    return info
