"""Temporary outputs not yet renamed into place, by this process: what an abrupt exit must remove.

``store.atomic`` registers each temporary file or folder here while it is being written;
the command line's Ctrl-C handler (``cli/interrupt.py``), which ends the process at once
without unwinding the stack that would remove them, calls ``discard_all``. This module
imports nothing but ``os`` (not even shutil, which imports lzma and bz2): the handler is
installed before anything else is imported, and may run while numpy is being imported.
"""

from __future__ import annotations

import os

_PENDING: set[str] = set()
_RESTORE: dict[str, str] = {}  # a previous output moved aside -> where it belongs, while a swap is under way


def register(path: str) -> None:
    _PENDING.add(path)


def unregister(path: str) -> None:
    _PENDING.discard(path)


def register_restore(moved: str, home: str) -> None:
    """``moved`` is a previous output taken out of ``home`` for a moment: put it back on an abrupt exit."""
    _RESTORE[moved] = home


def unregister_restore(moved: str) -> None:
    _RESTORE.pop(moved, None)


def discard_all() -> None:
    """Put back what a swap moved aside, then remove every registered temporary file or folder
    (errors ignored: this runs on the way out)."""
    for moved, home in list(_RESTORE.items()):
        try:
            if not os.path.exists(home):
                os.replace(moved, home)
        except OSError:
            pass
        _RESTORE.pop(moved, None)
    for path in list(_PENDING):
        try:
            if os.path.isdir(path):
                _remove_tree(path)
            else:
                os.unlink(path)
        except OSError:
            pass
        _PENDING.discard(path)


def _remove_tree(folder: str) -> None:
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(folder)
