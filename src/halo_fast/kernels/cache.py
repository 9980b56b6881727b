"""Keep numba's on-disk cache of this package's kernels consistent across its files.

numba checks a cached kernel only against the file that defines it, but the kernels
of arrays.py and reduce.py compile floats.py's number parser (and pow5.py's tables)
into themselves: after floats.py alone changes -- a development checkout, an editable
install -- they would go on running the old parser from the cache. So the package's
sources are fingerprinted together, and cached code made from other sources is
dropped before any kernel loads. A fresh install replaces every file, so numba sees
those changes itself; a read-only install (its cache elsewhere) never changes.

The check runs lazily, once per process and cache folder: ``jit.QuickLoadCache`` calls
``drop_stale_cache_once`` before the first kernel of this folder is loaded from (or
saved to) numba's cache, in the folder numba really uses (``__pycache__`` beside the
sources, or the one under ``NUMBA_CACHE_DIR``). Importing the package deletes
nothing: a process that never runs a kernel never touches the cache.

The first run after installing compiles the kernels (seconds, once): ``announce_compiling``
says so, rather than leaving a terminal silent while it happens.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path

STAMP = "halo_fast_kernels.fingerprint"


def sources_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def drop_stale_cache(folder: Path, cache: Path | None = None) -> bool:
    """Remove ``cache``'s numba files unless they were made from ``folder``'s sources; True if removed.

    ``cache`` is the folder numba caches ``folder``'s kernels in (default ``folder/__pycache__``).
    """
    cache = folder / "__pycache__" if cache is None else cache
    stamp = cache / STAMP
    fingerprint = sources_fingerprint(folder)
    try:
        if stamp.read_text() == fingerprint:
            return False
    except OSError:
        pass
    try:
        for path in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            path.unlink(missing_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        temporary = cache / f"{STAMP}.{os.getpid()}"
        temporary.write_text(fingerprint)
        os.replace(temporary, stamp)
    except OSError:  # a read-only install: nothing is cached beside it, and its files do not change
        return False
    return True


_checked: set[str] = set()  # cache folders already checked by this process
_checking = threading.Lock()


def drop_stale_cache_once(folder: Path, cache: Path) -> None:
    """``drop_stale_cache(folder, cache)``, the first time this process asks for ``cache`` only.

    Called before each cache load or save (once per kernel signature, not per call): a
    set lookup after the first time. The lock keeps two threads compiling their first
    kernels at once from both dropping files.
    """
    key = str(cache)
    if key in _checked:
        return
    with _checking:
        if key not in _checked:
            drop_stale_cache(folder, cache)
            _checked.add(key)


COMPILING_NOTE = "compiling halo_fast's numba kernels: only on the first run, they are cached for later runs"


def announce_compiling(stream) -> object:
    """Write COMPILING_NOTE to ``stream`` once, when numba first compiles (not when it loads from its cache).

    Returns the registered listener (``numba.core.event.unregister("numba:compile", it)`` removes it).
    """
    from numba.core import event

    class Announce(event.Listener):
        said = False

        def on_start(self, ev) -> None:
            if not self.said:
                self.said = True
                if "tqdm" in sys.modules:  # a bar may be on the line: tqdm.write moves it below the note
                    from tqdm import tqdm

                    tqdm.write(COMPILING_NOTE, file=stream)
                else:
                    print(COMPILING_NOTE, file=stream, flush=True)

        def on_end(self, ev) -> None:
            pass

    listener = Announce()
    event.register("numba:compile", listener)
    return listener
