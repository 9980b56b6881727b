"""``reduce``: the main job -- mean (or max, min, sum, nanmean) over layers and heads per token."""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

import numpy as np

from ..store import output_beside
from .common import UsageError, check_output, warn_recovery


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "reduce",
        help="reduce attention over layers/heads per generated token and save it (HDF5 or .npz)",
        description="Stream a capture, fold each token's [layers, heads, ctx] attention into [ctx] "
        "(or [heads, ctx] / [layers, ctx]) and write the result atomically.",
    )
    p.add_argument("capture", help="capture file")
    p.add_argument("-o", "--output", help="output file (default: CAPTURE.reduced.h5 beside the input)")
    p.add_argument("--op", default="mean", choices=["mean", "max", "min", "sum", "nanmean"])
    p.add_argument("--over", default="layers,heads", help="layers, heads or layers,heads (default)")
    p.add_argument("--layers", help="layers to keep first, e.g. 24-27, -4:, 0,3 (default all)")
    p.add_argument("--heads", help="heads to keep first (default all)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="keep every Nth generation step")
    p.add_argument("--tokens", metavar="START:STOP", help="only steps START <= step < STOP")
    p.add_argument("--format", choices=["h5", "npz"], help="output format (default from the suffix, else h5)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--recover", action="store_true", help="from a truncated capture, keep every complete token")
    p.add_argument("--top", type=int, default=10, metavar="K", help="most attended prompt positions to list")
    p.set_defaults(run=run)


def top_positions(reduced, k: int) -> list[dict]:
    """Prompt positions with the highest attention averaged over all kept steps."""
    n_prompt = len(reduced.prompt)
    if not len(reduced.data) or not n_prompt:
        return []
    prompt_part = reduced.data[..., : min(n_prompt, reduced.data.shape[-1])].astype(np.float64)
    axes = (0, 1) if prompt_part.ndim == 3 else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns simply rank last
        average = np.nanmean(prompt_part, axis=axes)
    texts = reduced.prompt["text"]
    order = np.argsort(np.where(np.isnan(average), -np.inf, average), kind="stable")[::-1][:k]
    return [{"position": int(p), "text": str(texts[p]), "score": float(average[p])} for p in order]


def run(args) -> int:
    from ..api import reduce
    from ..store import save_reduced

    fmt = args.format or ("npz" if args.output and args.output.endswith(".npz") else "h5")
    output = args.output or output_beside(args.capture, f".reduced.{fmt}")
    check_output(output, args.force)
    over = tuple(axis.strip() for axis in args.over.split(",") if axis.strip())
    started = time.perf_counter()
    try:
        reduced = reduce(
            args.capture,
            op=args.op,
            over=over,
            layers=args.layers,
            heads=args.heads,
            every=args.every,
            tokens=args.tokens,
            recover=args.recover,
            progress=sys.stderr.isatty(),
        )
    except ValueError as exc:
        if type(exc) is not ValueError:
            raise
        raise UsageError(str(exc)) from None
    save_reduced(reduced, output, fmt, force=args.force)
    seconds = time.perf_counter() - started
    size = os.path.getsize(args.capture)
    summary = {
        "capture": args.capture,
        "output": output,
        "format": fmt,
        "op": reduced.op,
        "over": list(reduced.over),
        "layers": reduced.layers,
        "heads": reduced.heads,
        "tokens": int(len(reduced.steps)),
        "shape": list(reduced.data.shape),
        "seconds": round(seconds, 3),
        "mb_per_s": round(size / 1e6 / seconds, 1) if seconds > 0 else None,
        "top_attended": top_positions(reduced, args.top),
        "recovery": reduced.extra.get("recovery"),
    }
    warn_recovery(args.capture, summary["recovery"])
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"{output}: {summary['tokens']} tokens, {reduced.op} over {'+'.join(reduced.over)} -> "
        f"{tuple(summary['shape'])} float32, {size / 1e6:.1f} MB in {seconds:.2f} s ({summary['mb_per_s']} MB/s)"
    )
    if summary["top_attended"]:
        print("most attended prompt positions (average over kept steps):")
        for row in summary["top_attended"]:
            print(f"  pos {row['position']:>6}  {row['score']:.4f}  {row['text']!r}")
    return 0
