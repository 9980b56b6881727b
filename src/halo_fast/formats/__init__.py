"""Input formats. ``open_capture`` finds which one a path is and opens it.

Every format is a :class:`~halo_fast.formats.base.CaptureSource`; ``load``,
``reduce`` and the analyses only use that interface.
"""

from __future__ import annotations

import os

from ..errors import CaptureError

SUPPORTED = "a single-JSON capture (.json, the Data Capture guide's format)"


def open_capture(path, *, progress: bool = False, window_bytes: int | None = None, recover: bool = False):
    """The source for ``path``: use it as a context manager.

    ``recover``: a truncated capture yields its complete tokens (see ``source.recovery``)
    instead of raising.
    """
    from .json_single import DEFAULT_WINDOW_BYTES, ScannedJson

    path = os.fspath(path)
    if os.path.isdir(path):
        raise CaptureError(f"not a capture file; supported: {SUPPORTED}", path)
    return ScannedJson(path, window_bytes or DEFAULT_WINDOW_BYTES, progress, recover)
