"""The one exception class users need to catch."""

from __future__ import annotations

import errno
import os


class CaptureError(ValueError):
    """A capture file that cannot be decoded as it is.

    Carries where the problem is, so a user with a multi-GB file can look at it
    (``dd skip=OFFSET``) instead of guessing: ``path``, ``offset`` (byte offset
    in the file, or None), ``step`` (generation step, or None).
    """

    def __init__(self, message: str, path: object = None, offset: int | None = None, step: object = None) -> None:
        self.reason = message
        self.path = None if path is None else str(path)
        self.offset = offset
        self.step = step
        where = []
        if self.path is not None:
            where.append(self.path)
        if offset is not None:
            where.append(f"byte {offset}")
        if step is not None:
            where.append(f"step {step}")
        super().__init__(f"{': '.join([', '.join(where)] if where else [])}{': ' if where else ''}{message}")


class CaptureNotFound(CaptureError, FileNotFoundError):
    """A capture path that does not exist.

    Both things a caller may test for: a CaptureError (the one class to catch; the
    CLI's exit 1 with the file named) and the FileNotFoundError that Python code
    expects of a missing file, with ``errno``, ``strerror`` and ``filename`` set.
    """

    def __init__(self, path: object, strerror: str | None = None) -> None:
        strerror = strerror or os.strerror(errno.ENOENT)
        CaptureError.__init__(self, f"cannot open: {strerror}", path)
        self.errno = errno.ENOENT
        self.strerror = strerror
        self.filename = self.path

    def __str__(self) -> str:  # CaptureError's message, not OSError's "[Errno 2] ..."
        return BaseException.__str__(self)

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        """Pickled (multiprocessing) by what it was made from, not by OSError's fields."""
        return type(self), (self.path, self.strerror)


class MissingDependency(ImportError):
    """An optional dependency (matplotlib, pandas) is not installed; the message says how to install it."""


class SelectionError(ValueError):
    """A selection of layers, heads or steps that is malformed or selects nothing (the CLI's usage error)."""
