"""halo_fast: exact, fast decoding and analysis of recorded LLM attention.

Importing the package is cheap: formats and numba kernels are imported (compiled,
or loaded from numba's cache) only when a function that needs them is first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__
from .api import load, open_capture, reduce
from .errors import CaptureError

if TYPE_CHECKING:
    from .capture import Capture
    from .reduction import Reduced

__all__ = ["CaptureError", "Capture", "Reduced", "load", "open_capture", "reduce", "__version__"]


def __getattr__(name: str) -> object:
    if name == "Capture":
        from .capture import Capture

        return Capture
    if name == "Reduced":
        from .reduction import Reduced

        return Reduced
    raise AttributeError(f"module 'halo_fast' has no attribute {name!r}")
