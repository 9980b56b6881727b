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

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1e3,
    "KB": 1e3,
    "M": 1e6,
    "MB": 1e6,
    "G": 1e9,
    "GB": 1e9,
    "KIB": 1 << 10,
    "MIB": 1 << 20,
    "GIB": 1 << 30,
}


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


def ensure_capture(data_dir: str, size: int, seed: int = 0, style: str = "js", log=None, rewrite: bool = False) -> dict:
    """The manifest of the cached capture of about ``size`` bytes, writing the capture if needed.

    The manifest holds what the children must reproduce: ``path``, ``bytes``,
    ``tokens`` (generated), ``with_attention`` (step 0 has none) and ``context``.
    ``rewrite``: write it again even if cached (see :func:`matches_synth`).
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
    if not rewrite and manifest and manifest.get("params") == params and _file_size(path) == manifest.get("bytes"):
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
    return _save_manifest(path, manifest, log)


def _save_manifest(path: str, manifest: dict, log) -> dict:
    """Write ``PATH.manifest.json`` beside a freshly made input; returns the manifest."""
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


# --------------------------------------------------------------------------- the same capture in other formats

#: form -> what the cached file is (beside the JSON capture it is made from)
FORMS = {
    "bin": "capture directory: metadata.json + token_XXXXX_meta.json + token_XXXXX_attn.bin",
    "h5": "HDF5 capture from `python -m halo_fast convert --compression none`",
    "jsonl.gz": "gzip (level 6) of the JSON-lines form: one generated-token object per line",
    "json.gz": "gzip (level 6) of the single-JSON capture",
}


def form_path(json_path: str, form: str) -> str:
    stem = json_path[: -len(".json")] if json_path.endswith(".json") else json_path
    return stem + ("_bin" if form == "bin" else "." + form)


def ensure_forms(data_dir: str, size: int, forms, seed: int = 0, style: str = "js", log=None) -> tuple[dict, dict]:
    """(the capture's manifest, {form: manifest}): the capture of about ``size`` bytes in every form.

    The .bin directory and JSON lines are written from ``halo_fast.synth`` directly, so that
    reading them is checked against an independent copy of the numbers; a cached JSON
    capture written by an older synth would then disagree, so it is rewritten first.
    """
    cap = ensure_capture(data_dir, size, seed, style, log)
    if any(f in ("bin", "jsonl.gz") for f in forms) and not matches_synth(cap):  # one token: ~0.3 s at 1 GB
        if log:
            log(f"{cap['path']} was written by another version of halo_fast.synth: writing it again")
        cap = ensure_capture(data_dir, size, seed, style, log, rewrite=True)
    return cap, {form: ensure_form(cap, form, log) for form in forms}


def matches_synth(cap: dict) -> bool:
    """Whether the cached JSON capture holds what ``halo_fast.synth`` writes today (its last token, bit for bit)."""
    import numpy as np

    from ..api import open_capture
    from ..synth import SyntheticCapture

    step = cap["tokens"] - 1
    want = SyntheticCapture(**_synth_args(cap)).attention(step).astype(np.float32).ravel()
    try:
        with open_capture(cap["path"]) as source:
            got = source.token_values(step)
    except ValueError:
        return False
    return got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32))


def _form_params(cap: dict, form: str) -> dict:
    params = {"source": cap["params"], "form": form}
    if form in ("h5", "json.gz"):  # made from the JSON file itself: remade when it is rewritten
        params["source_bytes"] = cap["bytes"]
        params["source_mtime_ns"] = os.stat(cap["path"]).st_mtime_ns
    if form == "h5":
        from ..formats.hdf5 import FORMAT_VERSION

        params["format_version"] = FORMAT_VERSION
    return params


def _cached(cap: dict, form: str) -> dict | None:
    path = form_path(cap["path"], form)
    manifest = _read_manifest(path)
    if manifest and manifest.get("params") == _form_params(cap, form) and _size_on_disk(path) == manifest.get("bytes"):
        return dict(manifest, path=path)
    return None


def ensure_form(cap: dict, form: str, log=None) -> dict:
    """The manifest of ``cap`` (a capture's manifest) written as ``form``, making it once.

    The same synthetic capture, so every reader must give the JSON's float32 bits. Besides
    the source's fields: ``path``, ``form``, ``bytes`` (on disk; a directory's files summed),
    ``bin_bytes`` (the .bin files), ``text_bytes`` (decompressed, for gzip forms),
    ``float32_bytes`` (the decoded values) and ``format_version`` (HDF5).
    """
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; one of {', '.join(FORMS)}")
    cached = _cached(cap, form)
    if cached:
        return cached
    path = form_path(cap["path"], form)
    params = _form_params(cap, form)
    if log:
        log(f"writing {path} ({FORMS[form]}) ...")
    started = time.perf_counter()
    partial = path + ".partial"
    _remove(partial)
    extra = _WRITERS[form](cap, partial)
    _remove(path)
    os.replace(partial, path)
    manifest = {
        **{k: cap[k] for k in ("tokens", "with_attention", "context", "values")},
        "path": path,
        "params": params,
        "form": form,
        "source_path": cap["path"],
        "source_bytes": cap["bytes"],
        "bytes": _size_on_disk(path),
        "float32_bytes": 4 * cap["values"],
        **extra,
        "write_seconds": round(time.perf_counter() - started, 2),
    }
    return _save_manifest(path, manifest, log)


def _synth_args(cap: dict) -> dict:
    params = cap["params"]
    return dict(SHAPE, tokens=cap["tokens"], seed=params["seed"], null_first=True)


def _write_bin(cap: dict, target: str) -> dict:
    from ..synth.writers import write_directory

    write_directory(target, kind="bin", style=cap["params"]["style"], **_synth_args(cap))
    names = [n for n in os.listdir(target) if n.endswith("_attn.bin")]
    return {"bin_files": len(names), "bin_bytes": sum(os.path.getsize(os.path.join(target, n)) for n in names)}


def _write_h5(cap: dict, target: str) -> dict:
    import subprocess
    import sys

    argv = [
        sys.executable,
        "-m",
        "halo_fast",
        "convert",
        cap["path"],
        "-o",
        target,
        "--compression",
        "none",
        "--force",
        "--json",
    ]
    run = subprocess.run(argv, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {run.stderr.strip()[-300:]}")
    return {}


def _write_jsonl_gz(cap: dict, target: str) -> dict:
    import gzip

    from ..synth.writers import jsonlines_bytes

    text = 0
    with gzip.open(target, "wb", compresslevel=6) as f:
        for line in jsonlines_bytes(style=cap["params"]["style"], **_synth_args(cap)):
            f.write(line)
            text += len(line)
    return {"text_bytes": text}


def _write_json_gz(cap: dict, target: str) -> dict:
    from ..synth.writers import gzip_file

    gzip_file(cap["path"], target, level=6)
    return {"text_bytes": cap["bytes"]}


_WRITERS = {"bin": _write_bin, "h5": _write_h5, "jsonl.gz": _write_jsonl_gz, "json.gz": _write_json_gz}


def _size_on_disk(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path))
    return _file_size(path)


def _remove(path: str) -> None:
    import shutil

    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
