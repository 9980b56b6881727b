"""``synth``: write a realistic synthetic capture with planted truth (see :mod:`halo_fast.synth`)."""

from __future__ import annotations

import os
import re
import time

from ..formats.detect import capture_bytes
from .common import Output, UsageError, check_output, json_option, progress_option

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(text: str) -> int:
    """``"1GB"`` -> 10**9 bytes; also ``500MB``, ``1.5G``, ``2GiB``, ``123456`` (bytes)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise UsageError(f"cannot read size {text!r} (try 1GB, 500MB, 2GiB)")
    size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if size <= 0:
        raise UsageError(f"size must be positive, got {text!r}")
    return size


FORMATS = ("json", "json.gz", "jsonl", "jsonl.gz", "dir-bin", "dir-json")
SUFFIXES = {".json.gz": "json.gz", ".jsonl.gz": "jsonl.gz", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic capture with planted truth (for tests and benchmarks), in any format",
        description="Write a capture in the Halo Weave format: a prompt with critical, irrelevant and secondary "
        "sentences whose attention decays at planted rates, a BOS sink, anchors and a local wave. The truth is "
        "stored under metadata['synth']. The format follows OUT's suffix (.json, .json.gz, .jsonl, .jsonl.gz) "
        "or --format; a capture directory needs --format dir-bin (meta + .bin files) or dir-json (token files).",
    )
    p.add_argument("out", metavar="OUT", help="file (or, for dir-*, folder) to write")
    p.add_argument("--format", choices=FORMATS, help="output format (default: from OUT's suffix)")
    p.add_argument("--layers", type=int, default=28, help="layers (default 28)")
    p.add_argument("--heads", type=int, default=28, help="heads per layer (default 28)")
    p.add_argument("--prompt", type=int, default=200, help="prompt tokens (default 200)")
    p.add_argument("--tokens", type=int, default=None, help="generated tokens (default 64)")
    p.add_argument("--size", help="pick --tokens so that the single JSON is about this size (e.g. 1GB, 500MB)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--style",
        choices=("js", "py", "indent"),
        default="js",
        help="number/whitespace layout: JSON.stringify (js, default), json.dumps (py), json.dumps(indent=2)",
    )
    p.add_argument("--logits", action="store_true", help="write raw pre-softmax logits instead of probabilities")
    p.add_argument(
        "--no-null-first",
        dest="null_first",
        action="store_false",
        help='give step 0 an attention array too (default: "attention": null)',
    )
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.add_argument(
        "--workers", type=int, default=None, help="formatting processes (default: one per CPU for large files)"
    )
    progress_option(p)
    json_option(p)
    p.set_defaults(run=run)


def output_format(out: str, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    for suffix, name in SUFFIXES.items():
        if out.lower().endswith(suffix):
            return name
    raise UsageError(
        f"cannot tell the format from {out!r}: end it in .json, .json.gz, .jsonl or .jsonl.gz, "
        f"or give --format ({', '.join(FORMATS)})"
    )


def write(out: str, fmt: str, force: bool, progress: bool, workers: int | None, options: dict) -> None:
    """Write the capture in ``fmt``, atomically (a folder for dir-*)."""
    from ..store.atomic import atomic_directory, atomic_path, scratch_folder
    from ..synth import write_capture
    from ..synth.writers import gzip_file, write_directory, write_jsonlines

    if fmt == "json":
        write_capture(out, progress=progress, workers=workers, **options)
    elif fmt == "json.gz":
        with atomic_path(out, force) as temporary, scratch_folder(out) as scratch:
            plain = os.path.join(scratch, "capture.json")
            write_capture(plain, progress=progress, workers=workers, **options)
            gzip_file(plain, temporary)
    elif fmt in ("jsonl", "jsonl.gz"):
        with atomic_path(out, force) as temporary:
            write_jsonlines(temporary, compress=fmt.endswith(".gz"), **options)
    else:
        with atomic_directory(out, force) as temporary:
            write_directory(temporary, kind=fmt.removeprefix("dir-"), **options)


def run(args) -> Output:
    from ..synth import MIN_PROMPT, estimate_tokens

    fmt = output_format(args.out, args.format)
    check_output(args.out.rstrip("/" + os.sep) or args.out, args.force)
    if args.layers < 1 or args.heads < 1:
        raise UsageError("--layers and --heads must be at least 1")
    if args.prompt < MIN_PROMPT:
        raise UsageError(f"--prompt must be at least {MIN_PROMPT}")
    if args.size is not None and args.tokens is not None:
        raise UsageError("give --tokens or --size, not both")
    options = dict(
        layers=args.layers,
        heads=args.heads,
        prompt=args.prompt,
        seed=args.seed,
        style=args.style,
        logits=args.logits,
        null_first=args.null_first,
    )
    if args.size is not None:
        tokens = estimate_tokens(parse_size(args.size), **options)
    else:
        tokens = 64 if args.tokens is None else args.tokens
    if tokens < 0:
        raise UsageError("--tokens must be at least 0")
    if fmt.startswith("jsonl") and args.style == "indent":
        raise UsageError("JSON lines cannot be indented: --style js or py")
    started = time.perf_counter()
    write(args.out, fmt, args.force, bool(args.progress), args.workers, {**options, "tokens": tokens})
    seconds = time.perf_counter() - started
    size = capture_bytes(args.out)
    summary = {
        "output": os.path.abspath(args.out),
        "format": fmt,
        "tokens": tokens,
        "bytes": size,
        "seconds": round(seconds, 3),
    }
    return Output(summary, f"{args.out}: {fmt}, {size / 1e6:.1f} MB, {tokens} tokens, {seconds:.1f} s")
