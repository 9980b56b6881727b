"""Where each attention data array closes: searched for by every thread, or jumped to.

Pass 1 (json_scan) needs the ``]`` that closes each data array to go on walking the
file's structure; finding it reads the whole array, and on a file in the page cache
that read (its page faults and the pages handed back after) is most of pass 1's time.

When a pass 2 will parse the arrays anyway (a planned ``reduce`` or ``load``), pass 1
may *jump*: the search for the bracket starts most of the way into the array, at the
length its shape and the last array's bytes per number predict (nine tenths of it),
and the bytes stepped over are left for pass 2 to read. The layout is then provisional
until those bytes are confirmed to hold no ``]``, for each token with a jump, one way or
the other (``confirm_jumps``):

- pass 2 read the token to its end without an error: a ``]`` is neither part of a number
  nor a separator (and the numbers a ``reduce`` steps over unparsed end at one with an
  error), so none stood between the array's ``[`` and the bracket found, which is
  therefore the first, the one the search from the ``[`` would have found;
- otherwise the stepped-over bytes are searched for one here.

Where a ``]`` turns up, or pass 2 meets any error in such a file, the jump may have passed
the real end of an array; the source raises ``base.ShortcutRefuted`` and ``api`` opens
the file again without jumping, so results and errors are the plain route's, always. A
wrong prediction costs time, never bits: too short, and a little more is searched; too
long (an array much shorter per number than the last one), and the capture is read twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

CLOSE_BRACKET = ord("]")
SHAPE_FIELD = re.compile(rb'"shape"\s*:\s*\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]')
SHAPE_LOOKBACK = 1 << 12  # how far before an array's '[' its token's "shape" is looked for


class ClosingBrackets:
    """The ']' that closes each attention data array, found by all threads at once (kernels.search).

    A search splits its span over the threads, so it pays when the span ends near the
    bracket: a span much longer leaves threads searching past it. Consecutive tokens'
    arrays differ by one context position, so each span is sized from the previous
    array's length (the first from FIRST_SPAN), and spans double while no bracket is found.

    ``read`` (a file's ``read(start, stop)``): jump as the module docstring says, reading
    each token's ``"shape"`` from the bytes before its array; ``jumps`` records
    (array '[', first byte searched) for every array partly stepped over.
    """

    FIRST_SPAN = 1 << 20
    SLACK = 1 << 16  # beyond the previous array's length
    JUMP_SHARE = 0.9  # of an array's predicted length stepped over (the rest, and beyond, searched)
    MIN_JUMP = 1 << 16  # jumps shorter than this are not taken: too few pages to save

    def __init__(self, buf: np.ndarray, read: Callable[[int, int], bytes] | None = None):
        import numba

        self.buf = buf
        self.read = read
        self.found = np.empty(numba.get_num_threads(), dtype=np.int64)
        self.previous_length = -1
        self.bytes_per_number = -1.0  # of the last array whose count was known
        self.jumps: list[tuple[int, int]] = []

    def find(self, start: int, opened: int, token_open: int = -1) -> int:
        """First ']' at or after start (inside the array that opened at ``opened``), or -1.

        With ``read``, the search may begin past ``start`` (see the class docstring); ``token_open``
        bounds where this token's shape is looked for."""
        from ..kernels import search

        size = self.buf.shape[0]
        count = self._count(opened, token_open)
        expected = -1
        lo = start
        if count > 0 and self.bytes_per_number > 0:
            expected = opened + int(count * self.bytes_per_number)
            jump = opened + int(count * self.bytes_per_number * self.JUMP_SHARE)
            if jump - start >= self.MIN_JUMP:
                self.jumps.append((opened, jump))
                lo = jump
        elif self.previous_length >= 0 and opened >= 0:
            expected = opened + self.previous_length
        span = max(expected + self.SLACK - lo, self.SLACK) if expected >= 0 else self.FIRST_SPAN
        while lo < size:
            hi = min(lo + span, size)
            close = search.find_byte_split(self.buf, lo, hi, CLOSE_BRACKET, self.found)
            if close >= 0:
                if opened >= 0:
                    self.previous_length = close - opened
                    if count > 0:
                        self.bytes_per_number = (close - opened) / count
                return close
            lo = hi
            span *= 2
        return -1

    def _count(self, opened: int, token_open: int) -> int:
        """The number of values the array at ``opened`` holds by its token's "shape" written before it
        (-1: not jumping, no such field within SHAPE_LOOKBACK bytes of the same token, or more values
        than the file has bytes: a shape the skeleton will refuse, and too large for a float)."""
        if self.read is None or opened < 0 or token_open < 0 or token_open > opened:
            return -1
        shapes = SHAPE_FIELD.findall(self.read(max(token_open, opened - SHAPE_LOOKBACK), opened))
        if not shapes:
            return -1
        layers, heads, context = (int(d) for d in shapes[-1])
        count = layers * heads * context
        return count if count <= self.buf.shape[0] else -1


def jumped_from(jumps: list[tuple[int, int]], data_open: np.ndarray) -> np.ndarray | None:
    """Per token, the first byte its bracket search covered where it jumped (-1 elsewhere); None: no jump.
    ValueError for a jump in an array that is no token's: nothing could confirm it (the caller then
    walks the file again without jumping)."""
    if not jumps:
        return None
    at = {int(opened): k for k, opened in enumerate(data_open.tolist()) if opened >= 0}
    searched = np.full(len(data_open), -1, dtype=np.int64)
    for opened, jump in jumps:
        if opened not in at:
            raise ValueError(f"a jump in the array opened at byte {opened}, which is no token's")
        searched[at[opened]] = jump
    return searched


def confirm_jumps(buf: np.ndarray, data_open: np.ndarray, jumped: np.ndarray | None, parsed: np.ndarray) -> bool:
    """Whether no ']' lies in the bytes stepped over of any token with a jump: for the tokens pass 2
    parsed without an error (``parsed``: bool per token) that is so; the others are searched here."""
    import numba

    from ..kernels import search

    if jumped is None:
        return True
    found = np.empty(numba.get_num_threads(), dtype=np.int64)
    for k in np.flatnonzero((jumped >= 0) & ~parsed).tolist():
        if search.find_byte_split(buf, int(data_open[k]) + 1, int(jumped[k]), CLOSE_BRACKET, found) >= 0:
            return False
    return True
