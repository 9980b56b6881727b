"""Ctrl-C in the command line: exit 130 with one short line, every time.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread happens
to be. That is not reliable here: raised inside a ctypes callback (numba's cache
loading runs some) it is printed as an "ignored" traceback and the command goes on to
finish with exit 0; raised inside an import it leaves a traceback. So the command line
handles SIGINT itself: the handler removes the temporary outputs not yet renamed into
place (``_cleanup``, fed by ``store.atomic``), prints ``interrupted`` on stderr and ends the process at once
with status 130 -- no output, no traceback, no half-written file. Nothing buffered for
stdout is flushed: an interrupted command prints no partial result.

The library (``halo_fast.load`` and friends) installs nothing: in a user's Python,
Ctrl-C stays a KeyboardInterrupt.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

from .._cleanup import discard_all

EXIT_INTERRUPTED = 130


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    exit_interrupted()


def exit_interrupted() -> None:
    """Remove the temporary outputs, say ``interrupted`` and end the process with 130 (also for a command
    that took Ctrl-C as a KeyboardInterrupt to stop its own work first: ``batch``)."""
    # No import here: the signal may come in the middle of one (numpy's, say).
    try:
        discard_all()
        os.write(2, b"\ninterrupted\n")
    except BaseException:  # nothing may stop the exit
        pass
    finally:
        os._exit(EXIT_INTERRUPTED)


def install() -> None:
    """Handle SIGINT as described above for the rest of this process (``python -m halo_fast``)."""
    signal.signal(signal.SIGINT, _on_sigint)


class exit_on_sigint:  # noqa: N801  (used as a context manager, like contextlib's)
    """The same for the duration of one ``main()`` call; the previous handler comes back afterwards.

    A class rather than a contextlib function: contextlib is not imported yet when
    ``python -m halo_fast`` installs the handler, and every millisecond before it counts.
    """

    def __enter__(self) -> None:
        try:
            self.previous = signal.signal(signal.SIGINT, _on_sigint)
        except ValueError:  # not the main thread: signals cannot be handled here
            self.previous = None

    def __exit__(self, *exc_info: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _interrupt_once(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, _on_sigint)  # a second Ctrl-C exits at once, whatever is being cleaned up
    raise KeyboardInterrupt


class cancel_on_sigint:  # noqa: N801  (used as a context manager)
    """For a command whose work must be stopped before the exit (``batch``: its tasks cancelled, a local
    cluster stopped): inside, the first Ctrl-C is a KeyboardInterrupt, unwinding through that work's
    clean-up; then the same exit as ever (``interrupted``, 130). A second Ctrl-C exits at once."""

    def __enter__(self) -> None:
        try:
            self.previous = signal.signal(signal.SIGINT, _interrupt_once)
        except ValueError:  # not the main thread: signals stay as they are
            self.previous = None

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if kind is KeyboardInterrupt:
            exit_interrupted()
