"""A reduce result on disk: HDF5 (plain h5py can read it) or .npz, written atomically, read back.

``save_reduced`` and ``load_reduced`` are each other's inverse: the datasets and
attributes are listed in the README ("The reduce output").
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._version import __version__
from ..capture import Table
from ..errors import CaptureError
from ..reduction import Reduced
from .atomic import atomic_path

FORMATS = ("h5", "npz")


def _text_array(values: Iterable[object]) -> np.ndarray:
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def reduced_arrays(reduced: Reduced) -> dict[str, np.ndarray]:
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


def reduced_attributes(reduced: Reduced) -> dict[str, Any]:
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


def write_h5(path: str, arrays: dict[str, np.ndarray], attributes: dict[str, Any]) -> None:
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


def write_npz(path: str, arrays: dict[str, np.ndarray], attributes: dict[str, Any]) -> None:
    flat = {name.replace("/", "_"): (v.astype(str) if v.dtype == object else v) for name, v in arrays.items()}
    flat["attributes_json"] = np.array(json.dumps({k: _plain(v) for k, v in attributes.items()}))
    with open(path, "wb") as f:
        np.savez(f, **flat)  # type: ignore[arg-type]  # numpy's stub types the keywords as allow_pickle's


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def save_reduced(reduced: Reduced, target: str | os.PathLike[str], fmt: str = "h5", force: bool = False) -> str:
    """Write a Reduced result to ``target`` atomically; refuses to overwrite unless ``force``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    arrays = reduced_arrays(reduced)
    attributes = reduced_attributes(reduced)
    with atomic_path(target, force) as temporary:
        (write_h5 if fmt == "h5" else write_npz)(temporary, arrays, attributes)
    return os.path.abspath(target)


def is_reduced_h5(path: str) -> bool:
    """True when ``path`` is an HDF5 file that ``save_reduced`` wrote (it has ``reduced`` and ``steps``)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "reduced" in f and "steps" in f
    except OSError:
        return False


def is_reduce_output(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names what ``reduce`` writes (.reduced.h5, .npz, or an .h5 of its layout), not a capture."""
    lower = os.fspath(path).lower()
    return lower.endswith((".reduced.h5", ".npz")) or (lower.endswith(".h5") and is_reduced_h5(os.fspath(path)))


def load_reduced(path: str | os.PathLike[str]) -> Reduced:
    """Read back what :func:`save_reduced` wrote (HDF5 or .npz; plain h5py / numpy files of that layout).

    A file that is damaged or not of that layout is a CaptureError naming it, not a KeyError
    or a zipfile error from deep inside.
    """
    path = os.fspath(path)
    try:
        return _load_reduced(path)
    except FileNotFoundError:
        raise
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        if isinstance(exc, CaptureError):
            raise
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__
        raise CaptureError(f"not a reduce output halo_fast can read ({what})", path, None) from None


def _load_reduced(path: str) -> Reduced:
    if path.lower().endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        attrs = json.loads(str(arrays.pop("attributes_json")))
        prompt = {name[len("prompt_") :]: arrays[name] for name in arrays if name.startswith("prompt_")}
    else:
        import h5py

        with h5py.File(path, "r") as f:
            arrays = {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}
            prompt = {name: f["prompt"][name][()] for name in f["prompt"]} if "prompt" in f else {}
            attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    prompt = {k: (_texts(v) if v.dtype.kind in "OSU" else v) for k, v in prompt.items()}
    over = tuple(str(attrs.get("over", "layers,heads")).split(","))
    data = np.asarray(arrays["reduced"], dtype=np.float32)
    tokens = attrs.get("tokens") or ""
    return Reduced(
        data=data,
        steps=np.asarray(arrays["steps"], dtype=np.int64),
        context_lengths=np.asarray(arrays["context_length"], dtype=np.int64),
        positions=np.asarray(arrays.get("position", np.zeros(len(data), np.int64))),
        token_ids=np.asarray(arrays.get("token_id", np.zeros(len(data), np.int64))),
        texts=_texts(arrays.get("text", np.array([""] * len(data)))),
        prompt=Table(prompt),
        metadata=json.loads(attrs.get("metadata_json") or "{}"),
        op=str(attrs.get("op", "mean")),
        over=over,
        layers=list(np.atleast_1d(attrs.get("layers", []))),
        heads=list(np.atleast_1d(attrs.get("heads", []))),
        every=int(attrs.get("every", 1)),
        tokens=tuple(int(x) if x else None for x in tokens.split(":")) if tokens else None,
        source=path,
    )


def _texts(values: Iterable[object]) -> np.ndarray:
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=object)
