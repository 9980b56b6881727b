"""halo_fast: exact, fast decoding and analysis of recorded LLM attention.

Importing the package is cheap -- it imports nothing but its version and errors: the
API, formats and numba kernels are imported (kernels compiled, or loaded from numba's
cache) when a name or function that needs them is first used. That keeps
``python -m halo_fast`` quick to reach the point where it handles Ctrl-C itself.
The package's namespace names the public calls of every layer (``evict`` is an analysis,
``batch`` runs the commands on Dask); the layers themselves import only downwards.
"""

from ._version import __version__
from .errors import CaptureError, CaptureNotFound, SelectionError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 10 ms at every start)
if TYPE_CHECKING:
    from .analysis.evict import evict
    from .api import load, open_capture, reduce
    from .capture import Capture
    from .reduction import Reduced
    from .study import batch

__all__ = [
    "CaptureError",
    "CaptureNotFound",
    "SelectionError",
    "Capture",
    "Reduced",
    "load",
    "open_capture",
    "reduce",
    "evict",
    "batch",
    "__version__",
]

_LAZY = {
    "load": "api",
    "open_capture": "api",
    "reduce": "api",
    "evict": "analysis.evict",
    "batch": "study",
    "Capture": "capture",
    "Reduced": "reduction",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # found once: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'halo_fast' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (and the module's dunders) for tab completion: not the imported helpers
    (``TYPE_CHECKING``) or the submodules that importing the package's parts leaves behind."""
    dunders = {name for name in globals() if name.startswith("__") and name.endswith("__")}
    return sorted(set(__all__) | dunders)
