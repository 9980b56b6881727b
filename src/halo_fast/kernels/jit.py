"""``kernel``: numba's ``njit`` with this package's options, and a quicker load from the cache.

Every kernel is compiled with ``cache=True`` (compiled once, then loaded from disk),
``nogil=True`` (threads may run it side by side) and ``error_model="numpy"`` (a
division by zero gives inf/NaN as numpy does, instead of an exception check).

Loading a cached kernel, numba first refreshes its whole target context -- installs
the typing and lowering registries of every numba feature -- although loading
compiled code needs none of them: that was 0.15-0.3 s of each short command's run.
``QuickLoadCache`` loads without it. Compiling is unchanged: numba's compiler
refreshes the context itself whenever the cache misses.

Kernels are compiled without numba's runtime (``_nrt=False``: no reference counts on
the arrays they are given, no allocation) unless they ask for it, since few allocate (no
decoder kernel does; two analysis kernels' scratch arrays do): the runtime itself is
compiled by LLVM in every process that starts it (about 0.03 s), which a command whose kernels
do not call it is spared. A kernel that needs it (one that allocates, returns a new array,
or sums into a variable across a ``prange``: numba allocates the per-thread partial sums)
says ``kernel(nrt=True)``, and loading it starts the runtime first; without it, numba
refuses to compile such a kernel. Whether a kernel uses the runtime is part of its cache key
(``QuickLoadCache._index_key``): code cached with the other setting is never loaded.

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
    uses_nrt = True  # whether the kernel's code calls numba's runtime (set by ``kernel``)

    def _check_sources(self) -> None:
        if self.sources is not None:
            drop_stale_cache_once(self.sources, Path(self._cache_path))

    def load_overload(self, sig, target_context):
        # numba calls this before compiling any signature, so the check precedes every load and save
        self._check_sources()
        if self.uses_nrt:
            from numba.core.runtime import rtsys

            rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    def save_overload(self, sig, data):
        self._check_sources()
        super().save_overload(sig, data)

    def _index_key(self, sig, codegen):
        return (*super()._index_key(sig, codegen), ("nrt", self.uses_nrt))


def kernel(*, nrt: bool = False, **options):
    """Decorator: ``njit(cache=True, nogil=True, error_model="numpy", _nrt=nrt, **options)`` with
    QuickLoadCache. ``nrt=True`` for a kernel that allocates or returns a new array."""

    def decorate(function):
        dispatcher = njit(cache=True, nogil=True, error_model="numpy", _nrt=nrt, **options)(function)
        if isinstance(getattr(dispatcher, "_cache", None), FunctionCache):  # not under NUMBA_DISABLE_JIT=1
            cache = QuickLoadCache(dispatcher.py_func)
            cache.uses_nrt = nrt
            if Path(function.__code__.co_filename).parent == FOLDER:
                cache.sources = FOLDER
            dispatcher._cache = cache
        return dispatcher

    return decorate
