"""Benchmark inputs: one synthetic capture per (size, seed, style), made once and cached.

Captures are large and slow to write, so each is kept in the data folder with a
small manifest beside it; a capture is reused only when its manifest matches the
parameters and the file still has the recorded size.
"""

from __future__ import annotations

import json
import os
import re
import time

#: The shape every benchmark capture has (a 7B model's 28 layers x 28 heads, a 200-token prompt).
SHAPE = {"layers": 28, "heads": 28, "prompt": 200}

_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
          "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes from "20MB", "0.5GB", "1.5 GiB" or a plain number of bytes (decimal units)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else None
    if not match or unit not in _UNITS:
        raise ValueError(f"bad size {text!r}: use e.g. 20MB, 0.5GB, 1GB")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1_000_000:
        raise ValueError(f"size {text!r} is too small: at least 1MB")
    return size


def size_label(size: int) -> str:
    """The short name of a size, as used in file names and tables ("20MB", "1GB", "0.5GB")."""
    if size >= 100_000_000:
        return f"{size / 1e9:g}GB"
    return f"{size / 1e6:g}MB"


def capture_path(data_dir: str, size: int, seed: int = 0, style: str = "js") -> str:
    return os.path.join(data_dir, f"synth_{style}_seed{seed}_{size_label(size)}.json")


def _read_manifest(path: str) -> dict | None:
    try:
        with open(path + ".manifest.json", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ensure_capture(data_dir: str, size: int, seed: int = 0, style: str = "js", log=None) -> dict:
    """The manifest of the cached capture of about ``size`` bytes, writing the capture if needed.

    The manifest holds what the children must reproduce: ``path``, ``bytes``,
    ``tokens`` (generated), ``with_attention`` (step 0 has none) and ``context``.
    """
    from ..synth import estimate_tokens, write_capture

    os.makedirs(data_dir, exist_ok=True)
    ignore = os.path.join(data_dir, ".gitignore")
    if not os.path.exists(ignore):  # multi-GB inputs must never be committed by accident
        with open(ignore, "w", encoding="utf-8") as f:
            f.write("*\n")
    path = capture_path(data_dir, size, seed, style)
    params = dict(SHAPE, seed=seed, style=style, target_bytes=size)
    manifest = _read_manifest(path)
    if manifest and manifest.get("params") == params and _file_size(path) == manifest.get("bytes"):
        return dict(manifest, path=path)  # the folder may have been reached by another name
    tokens = max(2, estimate_tokens(size, **SHAPE, seed=seed, style=style))  # step 0 has no attention
    if log:
        log(f"writing {path}: {tokens} tokens of {SHAPE['layers']}x{SHAPE['heads']}, about {size_label(size)} ...")
    started = time.perf_counter()
    write_capture(path, **SHAPE, tokens=tokens, seed=seed, style=style, null_first=True)
    manifest = {
        "path": path,
        "params": params,
        "bytes": _file_size(path),
        "tokens": tokens,
        "with_attention": tokens - 1,
        "context": [SHAPE["prompt"] + 1, SHAPE["prompt"] + tokens - 1],
        "values": SHAPE["layers"] * SHAPE["heads"] * sum(SHAPE["prompt"] + s for s in range(1, tokens)),
        "write_seconds": round(time.perf_counter() - started, 2),
    }
    with open(path + ".manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    if log:
        log(f"  {manifest['bytes'] / 1e6:.1f} MB in {manifest['write_seconds']} s")
    return manifest


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1
