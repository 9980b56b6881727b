"""``convert``: any capture source -> the binary HDF5 capture that :mod:`halo_fast.formats.hdf5` reads.

The layout (format_version 2) is documented in formats/hdf5.py and docs/formats.md.
Conversion streams token by token (one padded token in memory; sources hand back
what they read for each) into a temporary file renamed at the end (``atomic_path``),
so memory stays flat and an interrupted run leaves no partial file.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .._version import __version__
from ..capture import TEXT_COLUMNS, Table
from ..formats.base import CaptureSource
from ..formats.hdf5 import FORMAT, FORMAT_VERSION
from ..reduction import TokenRange, select_tokens
from .atomic import atomic_path

COMPRESSIONS = ("gzip", "lzf", "none")
CHUNK_BYTES = 1 << 20


def _write_column(group: Any, name: str, column: np.ndarray) -> None:
    import h5py

    if column.dtype != object:
        group.create_dataset(name, data=column)
        return
    values = column.tolist()
    if name in TEXT_COLUMNS and all(isinstance(v, str) for v in values):
        try:
            for v in values:
                v.encode("utf-8")
            group.create_dataset(name, data=values, dtype=h5py.string_dtype("utf-8"), shape=(len(values),))
            return
        except UnicodeEncodeError:  # lone surrogates from a JSON \ud800: keep them exactly as JSON text
            pass
    dataset = group.create_dataset(
        name, data=[json.dumps(v) for v in values], shape=(len(values),), dtype=h5py.string_dtype("utf-8")
    )
    dataset.attrs["encoding"] = "json"


def selected_tokens(steps: np.ndarray, every: int = 1, tokens: TokenRange = None) -> np.ndarray:
    """Indices of the tokens to convert: reduce's step selection, but attention-less tokens are kept too."""
    return select_tokens(np.asarray(steps), np.ones(len(steps), dtype=bool), every, tokens)


def sampling_attributes(every: int = 1, tokens: TokenRange = None) -> dict:
    """The step selection ``convert`` applied, as the HDF5 attributes ``every`` (int) and ``tokens``
    ("START:STOP", either side may be empty; "" for all steps): a file with every 2nd step must say so,
    or ``check`` takes the steps in between for lost ones."""
    if tokens is None:
        text = ""
    else:
        start, stop = tokens.split(":") if isinstance(tokens, str) else tokens
        text = ":".join("" if side is None or not str(side).strip() else str(int(side)) for side in (start, stop))
    return {"every": int(every), "tokens": text}


def chunk_layers(layers: int, heads: int, max_context: int) -> int:
    """Layers per ``attention`` chunk: the fewest chunks of <= CHUNK_BYTES (or of one layer, when a layer
    is larger), splitting a token's layers evenly: 28 layers of 28 x 395 -> 2 chunks of 14, not 23 + 23,
    of which 18 layers would be stored padding."""
    per_layer = heads * max_context * 4
    chunks = max(1, -(-layers * per_layer // CHUNK_BYTES))
    while chunks < layers and -(-layers // chunks) * per_layer > CHUNK_BYTES:
        chunks += 1
    return max(1, -(-layers // chunks))


def convert(
    source: CaptureSource,
    target: str,
    *,
    compression: str = "none",
    every: int = 1,
    tokens: TokenRange = None,
    force: bool = False,
    progress: bool = False,
) -> dict:
    """Write ``source`` (an opened CaptureSource) as an HDF5 capture at ``target``; returns a summary."""
    import h5py
    from tqdm import tqdm

    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    steps = np.asarray(source.token_table["step"])
    ids = selected_tokens(steps, every, tokens)
    kept = ids[source.has_attention[ids]]
    layers, heads = (int(d) for d in source.shapes[kept[0], :2]) if len(kept) else (0, 0)
    max_context = int(source.shapes[kept, 2].max()) if len(kept) else 0
    shapes = source.shapes[ids]
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(shapes.prod(axis=1), out=offsets[1:])
    options = {} if compression == "none" else {"compression": compression}
    with atomic_path(target, force) as temporary, h5py.File(temporary, "w") as f:
        f.attrs.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "halo_fast_version": __version__,
                "source": os.path.basename(source.path),
                "layers": layers,
                "heads": heads,
                "max_context": max_context,
                "metadata_json": json.dumps(source.metadata),
                **sampling_attributes(every, tokens),
            }
        )
        shape = (len(ids), layers, heads, max_context)
        if layers and heads and max_context:
            chunk = (1, chunk_layers(layers, heads, max_context), heads, max_context)
            attention = f.create_dataset(
                "attention", shape=shape, dtype="<f4", chunks=chunk, fillvalue=np.nan, **options
            )
        else:
            attention = f.create_dataset("attention", shape=shape, dtype="<f4")
        flat = None
        if compression == "none":  # compressed: the flat copy would double the file, the padding compresses
            flat = f.create_dataset("values", shape=(int(offsets[-1]),), dtype="<f4")
            f.create_dataset("offsets", data=offsets)
        f.create_dataset("shapes", data=shapes)
        for group_name, table in (("tokens", _subset(source.token_table, ids)), ("prompt", source.prompt_table)):
            group = f.create_group(group_name)
            for name in table.columns:
                _write_column(group, name, table[name])
        padded = np.empty((layers, heads, max_context), dtype="<f4")
        for row, i in enumerate(tqdm(ids.tolist(), disable=not progress, desc="convert", leave=False)):
            if not source.has_attention[i]:
                continue
            ctx = int(source.shapes[i, 2])
            values = np.ascontiguousarray(source.token_values(i), dtype="<f4")
            if flat is not None:
                flat.write_direct(values, dest_sel=np.s_[offsets[row] : offsets[row + 1]])
            padded[:, :, :ctx] = values.reshape(layers, heads, ctx)
            padded[:, :, ctx:] = np.nan
            attention.write_direct(padded, dest_sel=np.s_[row])
    return {
        "tokens": int(len(ids)),
        "tokens_with_attention": int(len(kept)),
        "shape": list(shape),
        "compression": compression,
    }


def _subset(table: Table, ids: np.ndarray) -> Table:
    return Table({name: table[name][ids] for name in table.columns})
