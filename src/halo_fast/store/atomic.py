"""Writing outputs safely, and naming them.

A result is first written to a temporary file in the target folder, flushed to
disk, then renamed over the target: an exception, Ctrl-C or kill midway leaves
the previous output intact and no partial file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator

from .._cleanup import register, unregister

# Input suffixes dropped when an output is named after its input (the first that matches).
INPUT_SUFFIXES = (".reduced.h5", ".json.gz", ".jsonl.gz", ".json", ".jsonl", ".gz", ".h5", ".npz")


def output_beside(source: str | os.PathLike[str], suffix: str) -> str:
    """``capture.json`` -> ``capture<suffix>`` in the same folder (a capture folder: beside it)."""
    stem = os.fspath(source).rstrip("/" + os.sep) or "."
    for known in INPUT_SUFFIXES:
        if stem.lower().endswith(known):
            stem = stem[: -len(known)]
            break
    return stem + suffix


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], force: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only on success."""
    target = os.path.abspath(os.fspath(target))
    if os.path.exists(target) and not force:
        raise FileExistsError(target)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "the output folder does not exist", folder)
    handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp", dir=folder)
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

    With ``force`` an existing ``target`` is replaced: moved aside, the new folder renamed
    into place, then the old one removed (a failure midway leaves the old one intact).
    """
    target = os.path.abspath(os.fspath(target))
    if os.path.exists(target) and not force:
        raise FileExistsError(target)
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise FileNotFoundError(errno.ENOENT, "the output folder does not exist", parent)
    temporary = tempfile.mkdtemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp", dir=parent)
    register(temporary)
    old = None
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())  # mkdtemp made it owner-only
        if not os.path.exists(target):
            os.replace(temporary, target)
        else:
            old = tempfile.mkdtemp(prefix="." + os.path.basename(target) + ".", suffix=".old", dir=parent)
            previous = os.path.join(old, "previous")
            os.replace(target, previous)
            try:
                os.replace(temporary, target)
            except BaseException:
                os.replace(previous, target)
                raise
    finally:
        if os.path.exists(temporary):
            shutil.rmtree(temporary, ignore_errors=True)
        unregister(temporary)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


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
