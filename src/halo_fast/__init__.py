"""halo_fast: exact, fast decoding and analysis of recorded LLM attention.

Importing the package is cheap: numba kernels are compiled (or loaded from the
cache) only when a function that needs them is first called.
"""

from __future__ import annotations

from .errors import CaptureError

__version__ = "0.1.0"

__all__ = ["CaptureError", "Capture", "Reduced", "load", "reduce", "__version__"]


def load(path, *, recover: bool = False, strict: bool = False, progress: bool = False, window_bytes: int | None = None):
    """Decode a capture into a :class:`Capture` (float32 attention, bit-exact with json.loads).

    ``recover=True``: from a truncated file, return every complete generated token;
    ``cap.recovery`` then says where the file ends and what was dropped. ``strict=True``:
    gaps or short files in a capture directory raise instead of warning.
    """
    from .formats import open_capture

    with open_capture(path, progress=progress, window_bytes=window_bytes, recover=recover, strict=strict) as source:
        return source.capture()


def reduce(source, op="mean", over=("layers", "heads"), layers=None, heads=None, every=1, tokens=None, **kwargs):
    """Reduce a capture over layers and/or heads, streaming (see :func:`halo_fast.reduction.reduce`)."""
    from .reduction import reduce as _reduce

    return _reduce(source, op, over, layers, heads, every, tokens, **kwargs)


def __getattr__(name):
    if name == "Capture":
        from .capture import Capture

        return Capture
    if name == "Reduced":
        from .reduction import Reduced

        return Reduced
    raise AttributeError(name)
