"""halo_fast: exact, fast decoding and analysis of recorded LLM attention.

Importing the package is cheap: numba kernels are compiled (or loaded from the
cache) only when a function that needs them is first called.
"""

from __future__ import annotations

from .errors import CaptureError

__version__ = "0.1.0"

__all__ = ["CaptureError", "Capture", "load", "__version__"]


def load(path, **kwargs):
    """Decode a capture file into a :class:`Capture` (float32 attention, exact)."""
    from .formats.json_single import load_json

    return load_json(path, **kwargs)


def __getattr__(name):
    if name == "Capture":
        from .capture import Capture

        return Capture
    raise AttributeError(name)
