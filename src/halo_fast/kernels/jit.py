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

For the kernels defined in this folder, ``QuickLoadCache`` also runs the cross-file
freshness check of ``cache.py`` (``drop_stale_cache_once``): lazily, once per process,
before the first of them is loaded from numba's cache or compiled and saved to it --
not at import, so importing the package deletes no file. Kernels defined elsewhere
(``analysis/kernels.py``) use only their own file, which numba checks itself.
"""

from __future__ import annotations

from pathlib import Path

from numba import njit
from numba.core.caching import FunctionCache

from .cache import drop_stale_cache_once

__all__ = ["kernel", "QuickLoadCache"]

FOLDER = Path(__file__).parent  # the sources cache.sources_fingerprint covers


class QuickLoadCache(FunctionCache):
    """numba's per-function disk cache, loading without the full target refresh.

    ``sources``: the folder whose fingerprint must match before this cache is used
    (set by ``kernel`` for this package's kernels; None: numba's own check only).
    """

    sources: Path | None = None

    def _check_sources(self) -> None:
        if self.sources is not None:
            drop_stale_cache_once(self.sources, Path(self._cache_path))

    def load_overload(self, sig, target_context):
        # numba calls this before compiling any signature, so the check precedes every load and save
        self._check_sources()
        from numba.core.runtime import rtsys

        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    def save_overload(self, sig, data):
        self._check_sources()
        super().save_overload(sig, data)


def kernel(**options):
    """Decorator: ``njit(cache=True, nogil=True, error_model="numpy", **options)`` with QuickLoadCache."""

    def decorate(function):
        dispatcher = njit(cache=True, nogil=True, error_model="numpy", **options)(function)
        if isinstance(getattr(dispatcher, "_cache", None), FunctionCache):  # not under NUMBA_DISABLE_JIT=1
            cache = QuickLoadCache(dispatcher.py_func)
            if Path(function.__code__.co_filename).parent == FOLDER:
                cache.sources = FOLDER
            dispatcher._cache = cache
        return dispatcher

    return decorate
