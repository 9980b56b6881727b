"""Input formats. ``open_capture`` finds which one a path is and opens it.

Every format is a :class:`~halo_fast.formats.base.CaptureSource`; ``load``,
``reduce`` and the analyses only use that interface. ``formats.detect`` decides
which source a path gets (docs/formats.md lists them).
"""

from __future__ import annotations

import os

from .detect import SUPPORTED


def open_capture(
    path, *, progress: bool = False, window_bytes: int | None = None, recover: bool = False, strict: bool = False
):
    """The source for ``path``: use it as a context manager.

    ``recover``: a truncated capture (single JSON or JSON lines cut short, a .jsonl.gz
    whose stream ends early, token files of a directory cut short) yields its complete
    tokens (see ``source.recovery``) instead of raising. ``strict``: problems a capture
    directory or JSON-lines file can carry (gaps, missing .bin files, no metadata) raise
    instead of warning; the two are independent (docs/formats.md).
    """
    from .detect import detect
    from .json_single import DEFAULT_WINDOW_BYTES

    path = os.fspath(path)
    window_bytes = window_bytes or DEFAULT_WINDOW_BYTES
    kind = detect(path)
    if kind == "directory":
        from .directory import CaptureDirectory

        return CaptureDirectory(path, window_bytes, progress, strict, recover)
    if kind == "hdf5":
        from .hdf5 import HDF5Source

        return HDF5Source(path, progress)
    if kind in ("jsonl", "jsonl.gz"):
        from .jsonlines import JsonLines

        return JsonLines(path, window_bytes, progress, strict, gzipped=kind.endswith(".gz"), recover=recover)
    if kind == "json.gz":
        from .gzipped import GzipJson

        return GzipJson(path, window_bytes, progress, recover)
    from .json_single import ScannedJson

    return ScannedJson(path, window_bytes, progress, recover)


__all__ = ["open_capture", "SUPPORTED"]
