"""A capture larger than this machine's memory, made by repeating a cached capture's tokens.

Writing 27 GB of new numbers would take the synthesizer half an hour; copying a
1 GB capture's generated tokens over and over (each copy's ``"step"`` renumbered so
the steps run on) takes about as long as the disk needs. Pass 1 of the single-JSON
reader finds the token boundaries; every other byte is copied as it is.
"""

from __future__ import annotations

import os
import re
import time

STEP = re.compile(rb'"step"\s*:\s*-?\d+')
COPY_BYTES = 64 << 20


def repeated_path(source: str, size: int) -> str:
    from .data import size_label

    stem = source[: -len(".json")] if source.endswith(".json") else source
    return f"{stem}_x_{size_label(size)}.json"


def ensure_repeated(source: dict, size: int, log=None) -> dict:
    """The manifest of ``source``'s capture (a manifest of ``data.ensure_capture``) repeated to at least
    ``size`` bytes, writing it if it is not cached."""
    from ..formats.json_scan import scan_structure
    from ..formats.mapped import MappedFile
    from .data import _file_size, _read_manifest, _save_manifest

    path = repeated_path(source["path"], size)
    params = {"source": os.path.basename(source["path"]), "source_bytes": source["bytes"], "target_bytes": size}
    manifest = _read_manifest(path)
    if manifest and manifest.get("params") == params and _file_size(path) == manifest.get("bytes"):
        return dict(manifest, path=path)
    copies = -(-size // source["bytes"])
    if log:
        log(f"writing {path}: {copies} copies of the tokens of {source['path']} ...")
    started = time.perf_counter()
    with MappedFile(source["path"]) as mapped:
        layout = scan_structure(mapped, 64 << 20)
        first, last = int(layout.token_open[0]), int(layout.token_close[-1]) + 1
        n = len(layout.token_open)
        temporary = path + ".partial"
        try:
            with open(temporary, "wb") as out:
                out.write(mapped.read(0, first))
                for copy in range(copies):
                    for i in range(n):
                        if copy or i:
                            out.write(b",\n")
                        start, stop = int(layout.token_open[i]), int(layout.token_close[i]) + 1
                        _write_token(out, mapped, start, stop, copy * n + i)
                out.write(mapped.read(last, mapped.size))
            os.replace(temporary, path)
        except BaseException:  # a full disk, Ctrl-C: no 27 GB left behind
            if os.path.exists(temporary):
                os.remove(temporary)
            raise
    manifest = {
        "path": path,
        "params": params,
        "bytes": _file_size(path),
        "tokens": copies * n,
        "with_attention": copies * source["with_attention"],
        "context": source["context"],
        "write_seconds": round(time.perf_counter() - started, 2),
    }
    return _save_manifest(path, manifest, log)


def _write_token(out, mapped, start: int, stop: int, step: int) -> None:
    """The token's bytes with its first ``"step"`` field set to ``step``, copied a block at a time."""
    head = mapped.read(start, min(stop, start + 4096))
    head = STEP.sub(b'"step": %d' % step, head, count=1)
    out.write(head)
    for at in range(start + 4096, stop, COPY_BYTES):
        out.write(mapped.read(at, min(stop, at + COPY_BYTES)))
