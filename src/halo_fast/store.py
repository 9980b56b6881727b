"""Writing results: HDF5 (plain h5py can read it) or .npz, always atomically.

A result is first written to a temporary file in the target folder, flushed to
disk, then renamed over the target: an exception, Ctrl-C or kill midway leaves
the previous output intact and no partial file behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile

import numpy as np

from . import __version__
from .capture import Table

FORMATS = ("h5", "npz")


@contextlib.contextmanager
def atomic_path(target: str, force: bool = False):
    """Yield a temporary path beside ``target``; rename it over ``target`` only on success."""
    target = os.path.abspath(target)
    if os.path.exists(target) and not force:
        raise FileExistsError(target)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "the output folder does not exist", folder)
    handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp made it owner-only; outputs get the usual mode
        os.replace(temporary, target)
        with contextlib.suppress(OSError):
            directory = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _text_array(values) -> np.ndarray:
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def reduced_arrays(reduced) -> dict[str, np.ndarray]:
    """The datasets of a reduce result, by name (the same names in HDF5 and .npz)."""
    arrays = {
        "reduced": reduced.data,
        "steps": np.asarray(reduced.steps, dtype=np.int64),
        "context_length": np.asarray(reduced.context_lengths, dtype=np.int64),
        "position": np.asarray(reduced.positions),
        "token_id": np.asarray(reduced.token_ids),
        "text": _text_array(reduced.texts),
    }
    arrays.update(prompt_arrays(reduced.prompt))
    return arrays


def prompt_arrays(prompt: Table) -> dict[str, np.ndarray]:
    out = {}
    for name in prompt.columns:
        column = prompt[name]
        out[f"prompt/{name}"] = _text_array(column) if column.dtype == object else column
    return out


def reduced_attributes(reduced) -> dict:
    return {
        "op": reduced.op,
        "over": ",".join(reduced.over),
        "layers": np.asarray(reduced.layers, dtype=np.int64),
        "heads": np.asarray(reduced.heads, dtype=np.int64),
        "every": reduced.every,
        "tokens": "" if reduced.tokens is None else ":".join("" if t is None else str(t) for t in reduced.tokens),
        "source": os.path.basename(reduced.source or ""),
        "halo_fast_version": __version__,
        "metadata_json": json.dumps(reduced.metadata, default=str),
    }


def write_h5(path: str, arrays: dict, attributes: dict) -> None:
    import h5py

    strings = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        for name, values in arrays.items():
            if values.dtype == object:
                f.create_dataset(name, data=values.astype(str).tolist() if len(values) else [], dtype=strings)
            else:
                f.create_dataset(name, data=values)
        for key, value in attributes.items():
            f.attrs[key] = value


def write_npz(path: str, arrays: dict, attributes: dict) -> None:
    flat = {name.replace("/", "_"): (v.astype(str) if v.dtype == object else v) for name, v in arrays.items()}
    flat["attributes_json"] = np.array(json.dumps({k: _plain(v) for k, v in attributes.items()}))
    with open(path, "wb") as f:
        np.savez(f, **flat)


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


def save_reduced(reduced, target: str, fmt: str = "h5", force: bool = False) -> str:
    """Write a Reduced result to ``target`` atomically; refuses to overwrite unless ``force``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    arrays = reduced_arrays(reduced)
    attributes = reduced_attributes(reduced)
    with atomic_path(target, force) as temporary:
        (write_h5 if fmt == "h5" else write_npz)(temporary, arrays, attributes)
    return os.path.abspath(target)
