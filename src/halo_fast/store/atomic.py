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
from collections.abc import Callable, Iterable, Iterator

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
    temporary = _reserve(target, folder, _make_file)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # made owner-only; outputs get the usual mode
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
    temporary = _reserve(target, parent, _make_folder)
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())  # made owner-only
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


def _reserve(target: str, folder: str, create: Callable[[str], None], suffix: str = TEMPORARY) -> str:
    """A new hidden ``.NAME.<random>.tmp`` beside ``target``, registered for the Ctrl-C clean-up *before*
    ``create`` makes it: a signal at any moment finds every temporary that exists (one registered but
    not yet made is simply not there to remove). 64 random bits: a name taken already is tried again."""
    for _ in range(100):
        path = os.path.join(folder, f".{os.path.basename(target)}.{os.urandom(8).hex()}{suffix}")
        register(path)
        try:
            create(path)
        except FileExistsError:
            unregister(path)  # another one's name: the clean-up must not touch it
            continue
        except BaseException:
            unregister(path)
            raise
        return path
    raise FileExistsError(errno.EEXIST, "no free temporary name", folder)


def _make_file(path: str) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _make_folder(path: str) -> None:
    os.mkdir(path, 0o700)


def temporaries_of(target: str | os.PathLike[str]) -> list[str]:
    """The temporary files and folders a writer of ``target`` may have left (killed midway)."""
    target = os.path.abspath(os.fspath(target))
    pattern = "." + glob.escape(os.path.basename(target)) + ".*" + TEMPORARY
    return glob.glob(os.path.join(glob.escape(os.path.dirname(target)), pattern))


def remove_temporaries(targets: Iterable[str | os.PathLike[str]]) -> None:
    """Remove what killed writers of ``targets`` left: their ``.NAME.*.tmp`` files and folders. Only where
    no writer of them can still be at work (``batch`` once its local workers are gone). A ``.NAME.*.old``
    folder is left alone: it may hold the previous output of a replacement that was cut short."""
    for path in (p for target in targets for p in temporaries_of(target)):
        with contextlib.suppress(OSError):
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)


def _replace_by_moving_aside(new: str, target: str, parent: str) -> None:
    old = _reserve(target, parent, _make_folder, suffix=".old")  # Ctrl-C: the previous output is put back
    previous = os.path.join(old, "previous")  # first, then this (empty) folder removed
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
    temporary = _reserve(os.path.join(parent, "halo_fast"), parent, _make_folder)
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        unregister(temporary)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
