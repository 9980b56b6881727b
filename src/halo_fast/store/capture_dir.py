"""``convert --format dir-bin|dir-json``: any capture source -> a stream-to-disk capture directory.

The layout is the one :mod:`halo_fast.formats.directory` reads (docs/formats.md, "Capture
directories"): ``metadata.json`` (the metadata fields plus ``prompt_tokens``), then per kept
token either ``token_XXXXX_meta.json`` + ``token_XXXXX_attn.bin`` (raw little-endian float32;
no ``.bin`` without attention) or ``token_XXXXX.json`` (the token object, attention as JSON
numbers). Files are numbered by output row, so a ``--every`` selection leaves no gap that the
reader would warn about; each token's ``step`` is kept in its record.

Exactness: ``.bin`` files hold the float32 bytes themselves. JSON numbers are each float32's
shortest decimal as a double (``synth.numbers.format_floats``, what ``JSON.stringify`` writes),
which reads back to the same float32; -0.0, NaN and infinities, which that writer leaves out,
are written as ``-0.0``, ``NaN`` and ``Infinity``, which every halo_fast reader accepts (a NaN's
payload bits are not kept: JSON has one NaN). Table values are written so that reading them
back gives the same table: a missing int (-1 in the table) or float (NaN) becomes ``null``.

Streaming: one token's values are in memory at a time (``source.token_values``), written into a
temporary folder that is renamed into place at the end (``atomic_directory``): an exception or
Ctrl-C midway leaves no partial directory, and an existing one untouched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..capture import Table
from ..formats.base import CaptureSource
from ..progress import progress_bar
from ..reduction import TokenRange
from ..synth.numbers import format_floats
from .atomic import atomic_directory
from .capture_h5 import selected_tokens

KINDS = ("bin", "json")
# Token-table columns and the field each takes in a token_XXXXX.json object / a _meta.json file.
TOKEN_FIELDS = ("step", "token_id", "text", "position", "timestamp")
META_FIELDS = {
    "step": "generation_step",
    "token_id": "token_id",
    "text": "text",
    "position": "position",
    "timestamp": "timestamp",
}


def json_floats(values: np.ndarray) -> str:
    """A JSON array of float32 ``values`` that halo_fast reads back bit for bit.

    The usual case (finite, no -0.0) is ``format_floats(values, "js")``; otherwise Python's
    ``repr`` digits (the same shortest decimals, ``-0.0`` kept) with ``nan``/``inf`` spelled
    as the ``NaN``/``Infinity`` literals the readers take.
    """
    flat = np.asarray(values, dtype=np.float32).ravel()
    if np.isfinite(flat).all() and not np.signbit(flat[flat == 0]).any():
        return format_floats(flat, "js")
    return repr(flat.tolist()).replace("nan", "NaN").replace("inf", "Infinity")


def _plain(column: np.ndarray) -> list[Any]:
    """A table column as JSON values that parse back to the same column (missing -> null)."""
    kind = column.dtype.kind
    if kind == "b":
        return [bool(v) for v in column.tolist()]
    if kind in "iu":
        return [None if v == -1 else int(v) for v in column.tolist()]
    if kind == "f":
        return [None if v != v else float(v) for v in column.tolist()]
    return list(column.tolist())  # object: what the reader kept (text, or JSON values as they were)


def _records(table: Table, names: Iterable[str], ids: np.ndarray | None = None) -> list[dict]:
    """Rows of ``table`` (only ``ids`` when given) as dicts of plain values, for the columns it has."""
    columns = {}
    for name in names:
        if name in table:
            column = np.asarray(table[name])
            columns[name] = _plain(column if ids is None else column[ids])
    count = len(table) if ids is None else len(ids)
    return [{name: values[k] for name, values in columns.items()} for k in range(count)]


def metadata_document(metadata: dict, prompt: list[dict]) -> dict:
    """``metadata.json``: the metadata's fields plus ``prompt_tokens``, as the stream-to-disk writer
    lays it out; nested (``{"metadata": ..., "prompt_tokens": ...}``) when the flat form would read
    back differently (metadata with its own ``prompt_tokens``/``generated_tokens``, or only a
    ``metadata`` object)."""
    metadata = dict(metadata or {})
    ambiguous = (
        "prompt_tokens" in metadata
        or "generated_tokens" in metadata
        or (set(metadata) == {"metadata"} and isinstance(metadata["metadata"], dict))
    )
    if ambiguous:
        return {"metadata": metadata, "prompt_tokens": prompt}
    return {**metadata, "prompt_tokens": prompt}


def _write_json(path: str, obj: Any) -> None:
    with open(path, "w", encoding="ascii") as f:
        json.dump(obj, f, indent=2)  # ensure_ascii: lone surrogates from a JSON "\ud800" survive
        f.write("\n")


def write_token_bin(base: str, row: int, record: dict, shape: np.ndarray | None, values: np.ndarray | None) -> None:
    """``base_meta.json`` and, with attention, ``base_attn.bin``: one token of a dir-bin capture."""
    meta: dict[str, Any] = {"file_index": row}
    meta.update({META_FIELDS[name]: value for name, value in record.items()})
    meta["attention_shape"] = None if shape is None else [int(d) for d in shape]
    meta["attention_context_length"] = None if shape is None else int(shape[2])
    if values is not None:
        np.asarray(values, dtype="<f4").tofile(base + "_attn.bin")
    _write_json(base + "_meta.json", meta)


def write_token_json(base: str, row: int, record: dict, shape: np.ndarray | None, values: np.ndarray | None) -> None:
    """``base.json``: one generated-token object of a dir-json capture, its numbers streamed as text."""
    head = json.dumps(record)
    head = "{" if head == "{}" else head[:-1] + ", "
    with open(base + ".json", "w", encoding="ascii") as f:
        if shape is None or values is None:
            f.write(head + '"attention": null}\n')
            return
        dims = [int(d) for d in shape]
        f.write(head + f'"attention": {{"shape": {json.dumps(dims)}, "context_length": {dims[2]}, "data": ')
        f.write(json_floats(values))
        f.write("}}\n")


WRITERS = {"bin": write_token_bin, "json": write_token_json}


def convert_directory(
    source: CaptureSource,
    target: str,
    *,
    kind: str = "bin",
    every: int = 1,
    tokens: TokenRange = None,
    force: bool = False,
    progress: bool = False,
) -> dict:
    """Write ``source`` (an opened CaptureSource) as a capture directory at ``target``; returns a summary.

    ``kind``: ``"bin"`` (meta + raw float32 files) or ``"json"`` (token files with JSON numbers);
    ``every`` / ``tokens`` select steps as for the HDF5 ``convert`` (attention-less tokens kept).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    steps = np.asarray(source.token_table["step"])
    ids = selected_tokens(steps, every, tokens)  # before anything is created: a bad selection writes nothing
    kept = ids[source.has_attention[ids]]
    layers, heads = (int(d) for d in source.shapes[kept[0], :2]) if len(kept) else (0, 0)
    max_context = int(source.shapes[kept, 2].max()) if len(kept) else 0
    records = _records(source.token_table, TOKEN_FIELDS, ids)
    prompt = _records(source.prompt_table, source.prompt_table.columns)
    write_token = WRITERS[kind]
    with atomic_directory(target, force) as folder:
        _write_json(os.path.join(folder, "metadata.json"), metadata_document(source.metadata, prompt))
        with progress_bar(len(ids), progress, "convert", unit="tok") as bar:
            for row, i in enumerate(ids.tolist()):
                base = os.path.join(folder, f"token_{row:05d}")
                if source.has_attention[i]:
                    write_token(base, row, records[row], source.shapes[i], source.token_values(i))
                else:
                    write_token(base, row, records[row], None, None)
                bar.update(1)
    return {
        "tokens": int(len(ids)),
        "tokens_with_attention": int(len(kept)),
        "shape": [int(len(ids)), layers, heads, max_context],
        "format": f"dir-{kind}",
    }
