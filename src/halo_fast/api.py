"""The library's front door: open, load and reduce a capture of any format.

``open_capture`` picks the format's source (``formats.detect``) and opens it with one
set of :class:`~halo_fast.formats.base.SourceOptions`; ``load`` decodes everything;
``reduce`` streams the layer/head reduction. Formats are imported only when a call
needs them, so ``import halo_fast`` stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .errors import CaptureError

if TYPE_CHECKING:
    from .capture import Capture
    from .formats.base import CaptureSource
    from .reduction import Axes, Reduced, ReduceRequest, Selection, TokenRange

T = TypeVar("T")


def open_capture(
    path: str | os.PathLike[str],
    *,
    progress: bool = False,
    window_bytes: int | None = None,
    recover: bool = False,
    strict: bool = False,
) -> CaptureSource:
    """The source for ``path``: use it as a context manager.

    ``recover``: a truncated capture (single JSON or JSON lines cut short, a .jsonl.gz
    whose stream ends early, token files of a directory cut short) yields its complete
    tokens (see ``source.recovery``) instead of raising. ``strict``: problems a capture
    directory or JSON-lines file can carry (gaps, missing .bin files, no metadata) raise
    instead of warning; the two are independent (docs/formats.md).
    """
    from .formats.base import WINDOW_BYTES, SourceOptions
    from .formats.detect import detect

    path = os.fspath(path)
    options = SourceOptions(
        window_bytes=window_bytes or WINDOW_BYTES, progress=progress, recover=recover, strict=strict
    )
    kind = detect(path)
    if kind == "directory":
        from .formats.directory import CaptureDirectory

        return CaptureDirectory(path, options=options)
    if kind == "hdf5":
        from .formats.hdf5 import HDF5Source

        return HDF5Source(path, options=options)
    if kind in ("jsonl", "jsonl.gz"):
        from .formats.jsonlines import JsonLines

        return JsonLines(path, options=options, gzipped=kind.endswith(".gz"))
    if kind == "json.gz":
        from .formats.json_gz import GzipJson

        return GzipJson(path, options=options)
    from .formats.json_single import ScannedJson

    return ScannedJson(path, options=options)


def load(
    path: str | os.PathLike[str],
    *,
    recover: bool = False,
    strict: bool = False,
    progress: bool = False,
    window_bytes: int | None = None,
) -> Capture:
    """Decode a capture into a :class:`Capture` (float32 attention, bit-exact with json.loads).

    ``recover=True``: from a truncated file, return every complete generated token;
    ``cap.recovery`` then says where the file ends and what was dropped. ``strict=True``:
    gaps or short files in a capture directory raise instead of warning.
    """
    from .formats.base import ShortcutRefuted

    source = open_capture(path, progress=progress, window_bytes=window_bytes, recover=recover, strict=strict)
    source.plan_decode()
    try:
        return _checking_shortcuts(source, lambda opened: opened.capture())
    except ShortcutRefuted:
        pass  # read it the plain way, outside this handler: nothing of the first attempt stays alive
    with open_capture(path, progress=progress, window_bytes=window_bytes, recover=recover, strict=strict) as plain:
        return plain.capture()


def _checking_shortcuts(source: CaptureSource, work: Callable[[CaptureSource], T]) -> T:
    """``work(source)`` with the source entered. An error raised before the source has confirmed the
    shortcuts its plan let it take (``confirm_shortcuts``) may be theirs: ShortcutRefuted then, where
    they do not hold; the error itself where they do."""
    from .formats.base import ShortcutRefuted

    with source:
        try:
            return work(source)
        except ShortcutRefuted:
            raise
        except Exception:
            if not source.confirm_shortcuts():
                raise ShortcutRefuted(source.path) from None
            raise


def reduce(
    source: str | os.PathLike[str] | Capture,
    op: str = "mean",
    over: Axes = ("layers", "heads"),
    layers: Selection = None,
    heads: Selection = None,
    every: int = 1,
    tokens: TokenRange = None,
    *,
    recover: bool = False,
    strict: bool = False,
    progress: bool = False,
    window_bytes: int | None = None,
) -> Reduced:
    """Reduce a capture over layers and/or heads, streaming from the file.

    ``op``: mean, max, min, sum (NaN propagates) or nanmean; ``over``: "layers",
    "heads" or both; ``layers`` / ``heads``: which to keep first (int, list, slice,
    "20-27", "-4:"); ``every``: keep every Nth step; ``tokens``: (start, stop) steps;
    ``recover``: reduce the complete tokens of a truncated file (``result.extra["recovery"]``).
    A loaded :class:`Capture` is reduced in memory with the same arithmetic.
    """
    from .capture import Capture
    from .formats.base import ShortcutRefuted
    from .reduction import ReduceRequest, reduce_capture

    if isinstance(source, Capture):
        return reduce_capture(source, op, over, layers, heads, every, tokens)
    request = ReduceRequest(op, over, layers, heads, every, tokens)
    opened = open_capture(source, progress=progress, window_bytes=window_bytes, recover=recover, strict=strict)
    opened.plan_reduce(request)
    try:
        return _checking_shortcuts(opened, lambda capture: _reduce_source(capture, request))
    except ShortcutRefuted:
        pass  # read it the plain way, outside this handler: nothing of the first attempt stays alive
    with open_capture(source, progress=progress, window_bytes=window_bytes, recover=recover, strict=strict) as plain:
        return _reduce_source(plain, request)


def _reduce_source(capture: CaptureSource, request: ReduceRequest) -> Reduced:
    """``reduce`` of one entered source."""
    import numpy as np

    from .reduction import reduce_tokens

    r = request
    with_attention = np.flatnonzero(capture.has_attention)
    if not len(with_attention):
        raise CaptureError("no generated token has attention to reduce", capture.path, None)
    n_layers, n_heads = (int(d) for d in capture.shapes[with_attention[0], :2])
    result = reduce_tokens(
        capture.reduce,
        capture.token_table,
        capture.prompt_table,
        capture.metadata,
        capture.path,
        n_layers,
        n_heads,
        r.op,
        r.over,
        r.layers,
        r.heads,
        r.every,
        r.tokens,
    )
    if capture.recovery is not None:
        result.extra["recovery"] = capture.recovery
    return result
