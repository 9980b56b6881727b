"""``synth``: write a realistic synthetic capture with planted truth (see :mod:`halo_fast.synth`)."""

from __future__ import annotations

import os
import re
import sys
import time

from .common import UsageError

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


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic capture with planted truth (for tests and benchmarks)",
        description="Write a single-JSON capture in the Halo Weave format: a prompt with critical, irrelevant "
        "and secondary sentences whose attention decays at planted rates, a BOS sink, anchors and a local "
        "wave. The truth is stored under metadata['synth'].",
    )
    p.add_argument("out", metavar="OUT.json", help="file to write")
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--heads", type=int, default=28)
    p.add_argument("--prompt", type=int, default=200, help="prompt tokens (default 200)")
    p.add_argument("--tokens", type=int, default=None, help="generated tokens (default 64)")
    p.add_argument("--size", help="pick --tokens so that the file is about this size (e.g. 1GB, 500MB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--style",
        choices=("js", "py", "indent"),
        default="js",
        help="number/whitespace layout: JSON.stringify (js), json.dumps (py), json.dumps(indent=2)",
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
    p.set_defaults(run=run)


def run(args) -> int:
    from ..synth import MIN_PROMPT, estimate_tokens, write_capture

    if os.path.exists(args.out) and not args.force:
        raise UsageError(f"{args.out} exists (use --force to overwrite)")
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
    started = time.perf_counter()
    write_capture(args.out, tokens=tokens, progress=sys.stderr.isatty(), workers=args.workers, **options)
    seconds = time.perf_counter() - started
    size = os.path.getsize(args.out)
    print(f"{args.out}: {size / 1e6:.1f} MB, {tokens} tokens, {seconds:.1f} s")
    return 0
