"""The one exception class users need to catch."""

from __future__ import annotations


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
