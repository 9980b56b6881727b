"""The one pattern every subcommand follows: option groups it declares, an ``Output`` it returns.

A command module has ``add_parser(subparsers)``, which declares its options with the
groups below (``source_options``, ``selection_options``, ``output_options``,
``json_option``), and ``run(args) -> Output``: the JSON-ready result and its text.
``main`` does the rest once for all of them: ``--json`` or text on stdout, progress on
stderr, the recovery warning, errors and exit codes (0, 1 bad input, 2 usage, 130 Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import CaptureError

OPS = ("mean", "max", "min", "sum", "nanmean", "mean_f32", "mean_js")
AXES_CHOICES = ("layers,heads", "layers", "heads")


class UsageError(Exception):
    """A command line that asks for something impossible (exit code 2)."""


@dataclass
class Output:
    """What a command hands back to ``main``.

    ``data``: printed as one JSON object with ``--json``; ``text``: what a person reads
    instead (a string, or a function making it, so that --json does not pay for it);
    ``code``: the exit code (``check`` says 1 when it found problems); ``recovery``:
    ``(path, record)`` of a truncated input that was recovered, warned about on stderr.
    """

    data: Any
    text: str | Callable[[], str] | None = None
    code: int = 0
    recovery: tuple[str, dict | None] | None = None

    def render(self) -> str | None:
        return self.text() if callable(self.text) else self.text


def printed(render: Callable[[], None]) -> Callable[[], str]:
    """A text renderer from a function that prints its lines (to stdout: caught here, never shown twice)."""

    def text() -> str:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            render()
        return buffer.getvalue().rstrip("\n")

    return text


# ------------------------------------------------------------------- option groups


def source_options(p: argparse.ArgumentParser, name: str = "source", help: str | None = None) -> None:
    """The input and how to read it: --recover, --strict, --progress / --no-progress."""
    p.add_argument(name, help=help or "capture: a file or capture directory in any supported format")
    group = p.add_argument_group("reading the capture")
    group.add_argument(
        "--recover",
        action="store_true",
        help="from a truncated capture, use every complete generated token (a warning says what was dropped)",
    )
    group.add_argument(
        "--strict",
        action="store_true",
        help="gaps or missing files in a capture directory or JSON lines are errors, not warnings",
    )
    progress_option(group)


def progress_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--progress / --no-progress; left None here, main makes it "is stderr a terminal"."""
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: only when stderr is a terminal)",
    )


def selection_options(p: argparse.ArgumentParser, over: bool = False, op: bool = True) -> None:
    """How to reduce: (--op), (--over), --layers, --heads, --every, --tokens (without ``op``: only
    which layers, heads and steps, for a command that works on every row)."""
    group = p.add_argument_group("reduction over layers and heads" if op else "layers, heads and steps")
    if op:
        group.add_argument(
            "--op",
            default="mean",
            choices=OPS,
            help="how rows fold together (default: mean; sums in float64; mean_f32 / mean_js: "
            "Halo Weave's float32 means, of its offline strategies / of its front end)",
        )
    if over:
        group.add_argument(
            "--over",
            default="layers,heads",
            metavar="AXES",
            help="what to reduce over: layers,heads (default), layers (keep heads) or heads (keep layers)",
        )
    group.add_argument(
        "--layers", metavar="SEL", help="layers to keep first: 24-27, -4:, 0,3, 5 (default: all; -4: needs no '=')"
    )
    group.add_argument("--heads", metavar="SEL", help="heads to keep first, like --layers (default: all)")
    group.add_argument("--every", type=int, default=1, metavar="N", help="keep every Nth generation step (default 1)")
    group.add_argument("--tokens", metavar="START:STOP", help="only steps START <= step < STOP (default: all)")


def output_options(
    p: argparse.ArgumentParser, what: str, formats: tuple[str, ...] | None = None, format_help: str | None = None
) -> None:
    """Where the result goes: -o, (--format), --force."""
    group = p.add_argument_group("output")
    group.add_argument("-o", "--output", metavar="PATH", help=what)
    if formats:
        group.add_argument("--format", choices=formats, help=format_help or f"one of {', '.join(formats)}")
    group.add_argument("--force", action="store_true", help="overwrite an existing output")


def json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of text")


def kind_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kind",
        choices=["probabilities", "logits"],
        help="value kind (default: logits when any value is negative; logit rows are softmaxed first)",
    )


def add_common(p: argparse.ArgumentParser, kind: bool = True) -> None:
    """What every analysis takes: a capture or reduce output, the source and selection groups, --json."""
    source_options(p, help="capture (any format), or a .reduced.h5 / .npz written by `reduce`")
    selection_options(p)
    if kind:
        kind_option(p)
    json_option(p)


def source_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The source group as keywords of ``load`` / ``reduce`` / ``open_capture``."""
    return {"recover": args.recover, "strict": args.strict, "progress": bool(args.progress)}


def reduce_options(args: argparse.Namespace) -> dict[str, Any]:
    """The selection group (and the source group) as keywords of the analyses' ``open_reduced``."""
    return {
        "op": args.op,
        "layers": args.layers,
        "heads": args.heads,
        "every": args.every,
        "tokens": args.tokens,
        "recover": args.recover,
        "strict": args.strict,
        "progress": bool(args.progress),
    }


def open_for_analysis(args: argparse.Namespace, prefer_op: str | None = None) -> tuple[Any, tuple[str, dict | None]]:
    """The reduced matrix an analysis works on, read once here with the command's source and selection
    groups, and its recovery record (``Output.recovery``: main warns when the capture was cut short).
    ``prefer_op``: how a capture is reduced when --op is left at mean (Halo Weave's rules' own means)."""
    from ..analysis import open_reduced

    with usage_errors():
        red = open_reduced(args.source, prefer_op=prefer_op, **reduce_options(args))
    return red, (args.source, red.extra.get("recovery"))


def parse_over(text: str) -> tuple[str, ...]:
    axes = tuple(axis.strip() for axis in text.split(",") if axis.strip())
    if not axes or any(axis not in ("layers", "heads") for axis in axes):
        raise UsageError(f"--over must be layers,heads, layers or heads, got {text!r}")
    return axes


# Options whose value may start with "-" (a selection counted from the end): "--layers -4:" is
# "--layers=-4:", not a missing value followed by an unknown option.
VALUE_MAY_START_WITH_DASH = ("--layers", "--heads", "--tokens")
_SELECTION = re.compile(r"^-[0-9][0-9:,\-]*$|^-:[0-9\-]*$")


def join_dash_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in VALUE_MAY_START_WITH_DASH and i + 1 < len(argv) and _SELECTION.match(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


# ------------------------------------------------------------------- checks before the work


def check_output(path: str, force: bool) -> None:
    """Before any long work: the output's folder exists and is writable; an existing output needs --force."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"the output folder does not exist: {folder}")
    if os.path.exists(path) and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    if not writable(folder):
        raise UsageError(f"cannot write to the output folder {folder}")


def writable(folder: str) -> bool:
    """Whether a file can be created in ``folder`` (a real try: permissions, read-only mounts, root alike)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Turn plain ValueErrors (bad options) into UsageError; CaptureError passes through (exit 1)."""
    try:
        yield
    except CaptureError:
        raise
    except FileNotFoundError as exc:
        raise UsageError(f"{exc.strerror or 'no such file'}: {exc.filename}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def os_error_text(exc: OSError) -> str:
    """A file that cannot be read or written, said in one line: what went wrong and with which file."""
    return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)


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


def rule_options(p: argparse.ArgumentParser, what: str) -> None:
    """--rule and --param: a scoring rule (Halo Weave's hw_* or halo_fast's) and its parameters."""
    from ..analysis.scoring import RULES

    p.add_argument("--rule", default="hw_frontend", choices=RULES, help=f"{what} (default hw_frontend)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter of the rule (repeatable), e.g. --param decay_rate=0.002 --param distance_mode=linear",
    )


def rule_params(args: argparse.Namespace) -> dict:
    """The --param values of --rule, each typed like the rule's default (a ValueError names a bad one)."""
    return parse_params(args.param, args.rule)


def parse_params(specs, rule: str) -> dict:
    """``["decay_rate=0.002", ...]`` -> {"decay_rate": 0.002}; each value typed like the rule's default."""
    from ..analysis.scoring import rule_defaults

    defaults = rule_defaults(rule)
    out = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"bad --param {spec!r}: use NAME=VALUE")
        if name not in defaults:
            raise ValueError(f"{rule} takes {', '.join(defaults) or 'no parameters'}, not {name}")
        out[name] = _typed(text.strip(), defaults[name], name)
    return out


def _typed(text: str, default, name: str):
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--param {name} takes true or false, not {text!r}")
    if isinstance(default, str):
        return text
    if default is None and text.lower() == "none":
        return None
    try:
        return int(text) if isinstance(default, int) or default is None else float(text)
    except ValueError:
        raise ValueError(f"--param {name} takes a number, not {text!r}") from None
