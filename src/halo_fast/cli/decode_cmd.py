"""``decode``: decode a capture exactly and report what it holds and how fast it went."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from .common import warn_recovery


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "decode",
        help="decode a capture into float32 and print a summary",
        description="Decode every attention array of a capture (bit-exact with json.loads) and summarise it.",
    )
    p.add_argument("capture", help="capture file (single JSON)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--top", type=int, default=10, metavar="K", help="attended prompt tokens to list (default 10)")
    p.add_argument("--recover", action="store_true", help="from a truncated capture, keep every complete token")
    p.set_defaults(run=run)


def context_text(cap, position: int):
    """Text of the context token at ``position``: a prompt token, or an earlier generated one."""
    prompt_positions = cap.prompt_tokens["position"]
    hits = np.flatnonzero(prompt_positions == position)
    if len(hits):
        return str(cap.prompt_tokens["text"][hits[0]])
    hits = np.flatnonzero(cap.tokens["position"] == position)
    return str(cap.tokens["text"][hits[0]]) if len(hits) else None


def summarize(cap, seconds: float, size: int, top: int) -> dict:
    """What a user wants to see first: sizes, speed, and where the last token looked."""
    steps_with = np.flatnonzero(cap.tokens["has_attention"])
    summary = {
        "path": cap.path,
        "model": cap.metadata.get("model"),
        "tokens": len(cap),
        "tokens_with_attention": int(len(steps_with)),
        "layers": cap.n_layers,
        "heads": cap.n_heads,
        "prompt_tokens": len(cap.prompt_tokens),
        "context_min": int(cap.shapes[steps_with, 2].min()) if len(steps_with) else 0,
        "context_max": int(cap.shapes[steps_with, 2].max()) if len(steps_with) else 0,
        "values": int(cap.values.size),
        "float32_mb": round(cap.values.nbytes / 1e6, 1),
        "file_mb": round(size / 1e6, 1),
        "seconds": round(seconds, 3),
        "mb_per_s": round(size / 1e6 / seconds, 1) if seconds > 0 else None,
        "top_attended": [],
    }
    if len(steps_with):
        last = int(steps_with[-1])
        mean = cap.attention(last).mean(axis=(0, 1), dtype=np.float64)
        for position in np.argsort(mean, kind="stable")[::-1][:top].tolist():
            summary["top_attended"].append(
                {"position": position, "text": context_text(cap, position), "score": float(mean[position])}
            )
        summary["top_attended_step"] = int(cap.tokens["step"][last])
    return summary


def print_summary(summary: dict, out=sys.stdout) -> None:
    print(
        f"{summary['path']}: {summary['tokens']} generated tokens ({summary['tokens_with_attention']} with attention), "
        f"{summary['layers']} layers x {summary['heads']} heads, context {summary['context_min']}..{summary['context_max']}, "
        f"{summary['prompt_tokens']} prompt tokens",
        file=out,
    )
    print(
        f"decoded {summary['values']:,} float32 values ({summary['float32_mb']} MB) from {summary['file_mb']} MB "
        f"in {summary['seconds']} s ({summary['mb_per_s']} MB/s)",
        file=out,
    )
    if summary["top_attended"]:
        print(f"step {summary['top_attended_step']} attended most to (mean over layers and heads):", file=out)
        for row in summary["top_attended"]:
            print(f"  pos {row['position']:>6}  {row['score']:.4f}  {row['text']!r}", file=out)


def run(args) -> int:
    from .. import load

    started = time.perf_counter()
    cap = load(args.capture, recover=args.recover, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - started
    summary = summarize(cap, seconds, os.path.getsize(args.capture), args.top)
    summary["recovery"] = cap.recovery
    warn_recovery(args.capture, cap.recovery)
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
    return 0
