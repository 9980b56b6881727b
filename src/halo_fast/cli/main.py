"""Entry point: builds the parser from the subcommand modules, runs one, and does for every
command what the pattern promises (cli/common.py): ``--json`` or text, progress, the
recovery warning, errors and exit codes.

Exit codes: 0 success, 1 bad input (a CaptureError, a file that cannot be read or written,
a missing optional dependency), 2 usage error, 130 Ctrl-C. With ``--json`` an error is
also printed on stdout as ``{"error", "path", "offset", "step", "exit_code"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any, NoReturn

from ..errors import CaptureError, MissingDependency, SelectionError
from . import interrupt
from .common import Output, UsageError, join_dash_values, os_error_text, warn_recovery

# Each module defines ``add_parser(subparsers)`` and ``run(args) -> Output``.
SUBCOMMANDS = [
    "reduce",
    "info",
    "check",
    "decode",
    "convert",
    "sentences",
    "decay",
    "distance",
    "stats",
    "score",
    "prune",
    "evict",
    "compare",
    "sweep",
    "heatmap",
    "report",
    "synth",
    "demo",
    "bench",
    "batch",
    "batch-stats",
]
NO_KERNELS = ("bench", "synth", "batch", "batch-stats")  # they run no kernel in this process: nothing to announce


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is a UsageError: main reports it like every other one
    (exit 2, and with --json the error object on stdout), after argparse's usage line."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line's parser; with ``only`` (a subcommand's name), a parser that knows just that
    one: each command module imports what its options need (the scoring rules, the eviction policies),
    which every other command would pay for at its start (about 35 ms of a short run's 0.3 s)."""
    from .._version import __version__

    parser = Parser(
        prog="python -m halo_fast",
        description="Fast, exact decoding and analysis of LLM attention captures.",
    )
    parser.add_argument("--version", action="version", version=f"halo_fast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=Parser)
    sub.required = True
    for name in [only] if only in SUBCOMMANDS else SUBCOMMANDS:
        module = importlib.import_module(f".{name.replace('-', '_')}_cmd", __package__)
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None, *, own_process: bool = False) -> int:
    """Run one command. ``own_process``: this process is the command's alone (``python -m halo_fast``,
    which starts with the garbage collector paused): see ``settle_start``."""
    with interrupt.exit_on_sigint(), one_line_warnings():
        return _main(sys.argv[1:] if argv is None else list(argv), own_process)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """While a command runs, each warning is one line ``warning: MESSAGE`` on stderr, each text once.

    Python's default shows the library's file, line number and source line, which tell a user
    of the command line nothing; and the analyses may meet the same problem more than once.
    UserWarnings (the package's own, such as ``DataWarning``) are always reported this way,
    never raised, whatever ``-W`` says: the command's messages are for the person reading stderr.
    Everything is restored on the way out (``warnings.catch_warnings``).
    """
    seen: set[str] = set()

    def show(
        message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        text = f"warning: {message}"
        if text not in seen:
            seen.add(text)
            print(text, file=sys.stderr if file is None else file)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = show
        yield


def _main(argv: list[str], own_process: bool = False) -> int:
    try:
        # The command is the first word (the only options before it are --help and --version).
        args = build_parser(only=argv[0] if argv else None).parse_args(join_dash_values(argv))
    except UsageError as exc:
        return _fail("--json" in argv, f"usage error: {exc}", 2, str(exc))
    if getattr(args, "progress", None) is None:
        args.progress = sys.stderr.isatty()
    as_json = bool(getattr(args, "json", False))
    if own_process:
        settle_start(runs_kernels=args.command not in NO_KERNELS)
    if args.progress and args.command not in NO_KERNELS:
        from ..kernels.cache import announce_compiling

        announce_compiling(sys.stderr)
    try:
        output: Output = args.run(args)
    except CaptureError as exc:
        return _fail(as_json, f"error: {exc}", 1, exc.reason, exc.path, exc.offset, exc.step)
    except (UsageError, SelectionError) as exc:
        return _fail(as_json, f"usage error: {exc}", 2, str(exc))
    except MissingDependency as exc:
        return _fail(as_json, f"error: {exc}", 1, str(exc))
    except OSError as exc:  # a file that cannot be read or written: say which, without a traceback
        return _fail(as_json, f"error: {os_error_text(exc)}", 1, exc.strerror or str(exc), exc.filename)
    if output.recovery:
        warn_recovery(*output.recovery)
    try:
        if as_json:
            print(_dump(output.data))
        else:
            text = output.render()
            if text:
                print(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader has what it wanted; no traceback at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return output.code


def settle_start(runs_kernels: bool) -> None:
    """End the start of a ``python -m halo_fast`` process: import numba if the command runs kernels,
    freeze everything loaded so far, and turn the cyclic garbage collector back on.

    ``__main__`` pauses the collector before anything is imported. The imports of numpy and
    numba create so many objects that it otherwise ran about 120 times while they were imported,
    and once more over all of them (a full collection) in the command's first kernel call:
    30-40 ms of a short command's 0.3-0.5 s (bench/RESULTS.md). None of those objects is
    garbage, so ``gc.freeze`` moves them out of every later collection. Only the command line
    does this, since it owns its process; the library never does it to its caller's, and a
    test calling ``main`` in its own process leaves ``own_process`` off.
    """
    if runs_kernels:
        import numba  # noqa: F401  (what the command imports anyway, now rather than later)
    gc.freeze()
    gc.enable()


def _fail(
    as_json: bool, message: str, code: int, reason: str, path: Any = None, offset: Any = None, step: Any = None
) -> int:
    print(message, file=sys.stderr)
    if as_json:
        error = {"error": reason, "path": path, "offset": offset, "step": step, "exit_code": code}
        print(_dump(error))
    return code


def _dump(obj: Any) -> str:
    from ..analysis.text import dump

    return dump(obj)


__all__ = ["build_parser", "main"]
