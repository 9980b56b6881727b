"""Entry point: builds the parser from the subcommand modules and maps errors to exit codes.

Exit codes: 0 success, 1 bad input (a CaptureError), 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import CaptureError
from .common import UsageError

# Each module defines ``add_parser(subparsers)`` and ``run(args) -> int``.
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
    "prune",
    "sweep",
    "heatmap",
    "report",
    "synth",
    "demo",
    "bench",
]


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="python -m halo_fast",
        description="Fast, exact decoding and analysis of LLM attention captures.",
    )
    parser.add_argument("--version", action="version", version=f"halo_fast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        module = importlib.import_module(f".{name}_cmd", __package__)
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stderr.isatty() and args.command not in ("bench", "synth"):  # those two run no kernel here
        from ..kernels.cache import announce_compiling

        announce_compiling(sys.stderr)
    try:
        return int(args.run(args) or 0)
    except CaptureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"usage error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be read or written: say which, without a traceback
        print(f"error: {exc.strerror or exc}: {exc.filename}" if exc.filename else f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
