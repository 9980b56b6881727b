"""Plumbing every subcommand shares: the usage error, output checks, the analysis options, recovery warnings."""

from __future__ import annotations

import contextlib
import os
import sys

from ..errors import CaptureError


class UsageError(Exception):
    """A command line that asks for something impossible (exit code 2)."""


def check_output(path: str, force: bool) -> None:
    """Before any long work: the output's folder exists, and an existing output needs --force."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"the output folder does not exist: {folder}")
    if os.path.exists(path) and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")


def add_common(p, kind: bool = True) -> None:
    p.add_argument("source", help="capture file, or a .reduced.h5 / .npz written by `reduce`")
    p.add_argument(
        "--op",
        default="mean",
        choices=["mean", "max", "min", "sum", "nanmean"],
        help="reduction over layers and heads (default mean)",
    )
    p.add_argument("--layers", help="layers to keep first, e.g. 24-27, -4:, 0,3 (default all)")
    p.add_argument("--heads", help="heads to keep first (default all)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="keep every Nth generation step")
    p.add_argument("--tokens", metavar="START:STOP", help="only steps START <= step < STOP")
    if kind:
        p.add_argument(
            "--kind",
            choices=["probabilities", "logits"],
            help="value kind (default: logits when any value is negative)",
        )
    p.add_argument("--json", action="store_true", help="print a machine-readable result")


def reduce_options(args) -> dict:
    return {"op": args.op, "layers": args.layers, "heads": args.heads, "every": args.every, "tokens": args.tokens}


@contextlib.contextmanager
def usage_errors():
    """Turn plain ValueErrors (bad options) into UsageError; CaptureError passes through (exit 1)."""
    try:
        yield
    except CaptureError:
        raise
    except FileNotFoundError as exc:
        raise UsageError(f"{exc.strerror or 'no such file'}: {exc.filename}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def warn_recovery(path: str, recovery: dict | None) -> None:
    if not recovery:
        return
    if recovery.get("truncated_files"):  # a capture directory
        files = recovery["truncated_files"]
        where = f"is truncated: token files cut short ({', '.join(files[:5])}{', ...' if len(files) > 5 else ''})"
    else:
        unit = "decompressed byte" if recovery.get("offsets") == "decompressed" else "byte"
        where = f"is truncated at {unit} {recovery['truncated_at']}"
    print(
        f"warning: {path} {where}: kept {recovery['complete_tokens']} complete generated tokens, "
        f"dropped {recovery['partial_tokens']} partial one(s)",
        file=sys.stderr,
    )
