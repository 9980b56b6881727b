"""``kernel``: numba's ``njit`` with this package's options, and a quicker load from the cache.

Every kernel is compiled with ``cache=True`` (compiled once, then loaded from disk),
``nogil=True`` (threads may run it side by side) and ``error_model="numpy"`` (a
division by zero gives inf/NaN as numpy does, instead of an exception check).

Loading a cached kernel, numba first refreshes its whole target context -- installs
the typing and lowering registries of every numba feature -- although loading
compiled code needs none of them: that was 0.15-0.3 s of each short command's run.
``QuickLoadCache`` loads without it, starting only numba's runtime (which the loaded
code calls). Compiling is unchanged: numba's compiler refreshes the context itself
whenever the cache misses.
"""

from __future__ import annotations

from numba import njit
from numba.core.caching import FunctionCache

__all__ = ["kernel", "QuickLoadCache"]


class QuickLoadCache(FunctionCache):
    """numba's per-function disk cache, loading without the full target refresh."""

    def load_overload(self, sig, target_context):
        from numba.core.runtime import rtsys

        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)


def kernel(**options):
    """Decorator: ``njit(cache=True, nogil=True, error_model="numpy", **options)`` with QuickLoadCache."""

    def decorate(function):
        dispatcher = njit(cache=True, nogil=True, error_model="numpy", **options)(function)
        if isinstance(getattr(dispatcher, "_cache", None), FunctionCache):  # not under NUMBA_DISABLE_JIT=1
            dispatcher._cache = QuickLoadCache(dispatcher.py_func)
        return dispatcher

    return decorate
