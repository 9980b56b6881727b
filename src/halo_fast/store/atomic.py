"""Writing outputs safely, and naming them.

A result is first written to a temporary file (or folder) in the target folder,
flushed to disk, then renamed over the target: an exception or Ctrl-C midway leaves
the previous output intact and nothing else behind. A kill -9 can leave a hidden
``.NAME.*.tmp`` beside it, never a partial ``NAME``.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator

from .._cleanup import register, register_restore, unregister, unregister_restore

TEMPORARY = ".tmp"  # the suffix of every temporary file or folder written here (hidden: ``.NAME.*.tmp``)
# Input suffixes dropped when an output is named after its input (the first that matches).
INPUT_SUFFIXES = (".reduced.h5", ".reduced.npz", ".json.gz", ".jsonl.gz", ".json", ".jsonl", ".gz", ".h5", ".npz")


def output_beside(source: str | os.PathLike[str], suffix: str) -> str:
    """``capture.json`` -> ``capture<suffix>`` in the same folder (a capture folder: beside it)."""
    stem = os.fspath(source).rstrip("/" + os.sep) or "."
    for known in INPUT_SUFFIXES:
        if stem.lower().endswith(known):
            stem = stem[: -len(known)]
            break
    return stem + suffix


def _checked(target: str | os.PathLike[str], force: bool) -> tuple[str, str]:
    """(absolute target, its folder), once the folder exists and an existing target may be replaced."""
    target = os.path.abspath(os.fspath(target))
    if os.path.exists(target) and not force:
        raise FileExistsError(errno.EEXIST, "exists; pass --force to overwrite it", target)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "the output folder does not exist", folder)
    return target, folder


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], force: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only on success."""
    target, folder = _checked(target, force)
    with _sigint_held():
        handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=TEMPORARY, dir=folder)
        os.close(handle)
        register(temporary)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp made it owner-only; outputs get the usual mode
        os.replace(temporary, target)
        with contextlib.suppress(OSError):
            directory = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        unregister(temporary)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str], force: bool = False) -> Iterator[str]:
    """Yield a temporary folder beside ``target``; it becomes ``target`` only on success.

    Its files are flushed to disk first. With ``force`` an existing ``target`` is replaced
    in one step where the system can swap two paths (Linux ``renameat2``), so there is no
    moment without one of the two; elsewhere the old folder is moved aside, the new one
    renamed in, and the old one put back if that fails or Ctrl-C comes in between.
    """
    target, parent = _checked(target, force)
    with _sigint_held():
        temporary = tempfile.mkdtemp(prefix="." + os.path.basename(target) + ".", suffix=TEMPORARY, dir=parent)
        register(temporary)
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())  # mkdtemp made it owner-only
        _sync_tree(temporary)
        if not os.path.exists(target):
            os.replace(temporary, target)
        elif not _exchange(temporary, target):  # swapped: `temporary` now holds the old output
            _replace_by_moving_aside(temporary, target, parent)
        _sync_folder(parent)
    finally:
        if os.path.exists(temporary):
            shutil.rmtree(temporary, ignore_errors=True)
        unregister(temporary)


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT held back while a temporary path is created and registered, so that the command line's
    Ctrl-C handler (which removes what is registered) never misses one that already exists on disk."""
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, OSError, ValueError):  # no pthread_sigmask here: the window stays (microseconds)
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def remove_temporaries(folder: str | os.PathLike[str]) -> None:
    """Remove what a killed writer left in ``folder``: the ``.NAME.*.tmp`` files and folders of this module.
    Only where no writer can still be at work (``batch`` once its local workers are gone). A ``.NAME.*.old``
    folder is left alone: it may hold the previous output of a replacement that was cut short."""
    for path in glob.glob(os.path.join(glob.escape(os.fspath(folder)), ".*" + TEMPORARY)):
        with contextlib.suppress(OSError):
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)


def _replace_by_moving_aside(new: str, target: str, parent: str) -> None:
    old = tempfile.mkdtemp(prefix="." + os.path.basename(target) + ".", suffix=".old", dir=parent)
    previous = os.path.join(old, "previous")
    register(old)  # Ctrl-C: the previous output is put back first, then this (empty) folder removed
    register_restore(previous, target)
    os.replace(target, previous)
    try:
        os.replace(new, target)
    except BaseException:
        if os.path.exists(previous) and not os.path.exists(target):
            os.replace(previous, target)  # if this fails too, the old output stays in `old`, named by the error
        unregister_restore(previous)
        with contextlib.suppress(OSError):
            os.rmdir(old)
        unregister(old)
        raise
    unregister_restore(previous)
    shutil.rmtree(old, ignore_errors=True)
    unregister(old)


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    try:
        import ctypes

        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # no such call, or not on this file system
        return False
    raise OSError(code, os.strerror(code), b)


def _sync_tree(folder: str) -> None:
    """Flush every file of ``folder`` and the folder itself to disk (a crash after the rename must not
    leave empty files where the previous output was)."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        _sync_folder(root)


def _sync_folder(folder: str) -> None:
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


@contextlib.contextmanager
def scratch_folder(beside: str | os.PathLike[str]) -> Iterator[str]:
    """A temporary folder next to ``beside`` (same file system), always removed afterwards, Ctrl-C included."""
    parent = os.path.dirname(os.path.abspath(os.fspath(beside)))
    temporary = tempfile.mkdtemp(prefix=".halo_fast.", suffix=".tmp", dir=parent)
    register(temporary)
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        unregister(temporary)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
