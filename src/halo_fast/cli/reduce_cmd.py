"""``reduce``: the main job -- mean (or max, min, sum, nanmean) over layers and heads per token."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

from ..formats.detect import capture_bytes
from ..store import output_beside
from .common import (
    Output,
    check_output,
    json_option,
    output_options,
    parse_over,
    selection_options,
    source_kwargs,
    source_options,
    usage_errors,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "reduce",
        help="reduce attention over layers/heads per generated token and save it (HDF5 or .npz)",
        description="Stream a capture, fold each token's [layers, heads, ctx] attention into [ctx] "
        "(or [heads, ctx] / [layers, ctx]) and write the result atomically.",
    )
    source_options(p, name="capture")
    selection_options(p, over=True)
    output_options(
        p,
        "output file (default: CAPTURE.reduced.h5 beside the input; .npz added with --format npz)",
        formats=("h5", "npz"),
        format_help="output format (default: from the -o suffix, else h5)",
    )
    p.add_argument("--top", type=int, default=10, metavar="K", help="most attended prompt positions to list")
    json_option(p)
    p.set_defaults(run=run)


def output_path(output: str | None, fmt: str | None, capture: str) -> tuple[str, str]:
    """(path, format): the format from --format or the suffix; an -o without the format's suffix gets it
    (as numpy's savez does), so every analysis recognises the file."""
    if fmt is None:
        fmt = "npz" if output and output.lower().endswith(".npz") else "h5"
    if output is None:
        return output_beside(capture, f".reduced.{fmt}"), fmt
    suffixes = (".npz",) if fmt == "npz" else (".h5", ".hdf5")
    if not output.lower().endswith(suffixes):
        output += f".{fmt}"
    return output, fmt


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


def run(args) -> Output:
    from ..api import reduce
    from ..store import save_reduced

    output, fmt = output_path(args.output, args.format, args.capture)
    check_output(output, args.force)
    over = parse_over(args.over)
    started = time.perf_counter()
    with usage_errors():  # a plain ValueError from the library is a bad option
        reduced = reduce(
            args.capture,
            op=args.op,
            over=over,
            layers=args.layers,
            heads=args.heads,
            every=args.every,
            tokens=args.tokens,
            **source_kwargs(args),
        )
    save_reduced(reduced, output, fmt, force=args.force)
    seconds = time.perf_counter() - started
    size = capture_bytes(args.capture)
    summary = {
        "capture": args.capture,
        "output": os.path.abspath(output),
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

    def text() -> str:
        lines = [
            f"{output}: {summary['tokens']} tokens, {reduced.op} over {'+'.join(reduced.over)} -> "
            f"{tuple(summary['shape'])} float32, {size / 1e6:.1f} MB in {seconds:.2f} s ({summary['mb_per_s']} MB/s)"
        ]
        if summary["top_attended"]:
            lines.append("most attended prompt positions (average over kept steps):")
            for row in summary["top_attended"]:
                lines.append(f"  pos {row['position']:>6}  {row['score']:.4f}  {row['text']!r}")
        return "\n".join(lines)

    return Output(summary, text, recovery=(args.capture, summary["recovery"]))
