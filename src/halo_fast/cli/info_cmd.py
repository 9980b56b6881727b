"""``info``: what a capture holds -- model, tokens, layers x heads, context, value kind -- without decoding it all."""

from __future__ import annotations

import json

from .common import warn_recovery


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="what a capture holds (structure scan plus a sample; fast on multi-GB files)",
        description="Scan a capture's structure and decode a few tokens to tell what it holds.",
    )
    p.add_argument("capture", help="capture file")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--recover", action="store_true", help="describe the complete tokens of a truncated capture")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..describe import describe

    info = describe(args.capture, recover=args.recover)
    warn_recovery(args.capture, info["recovery"])
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['path']} ({info['file_mb']} MB, {info['format']})")
    print(f"  model           {info['model']}")
    print(
        f"  tokens          {info['tokens']} generated ({info['tokens_with_attention']} with attention), "
        f"steps {info['steps'][0] if info['steps'] else '-'}..{info['steps'][-1] if info['steps'] else '-'}"
    )
    print(
        f"  attention       {info['layers']} layers x {info['heads']} heads, "
        f"context {info['context_min']}..{info['context_max']}"
    )
    print(f"  prompt          {info['prompt_tokens']} tokens")
    print(f"  decoded size    {info['float32_mb']} MB float32")
    sums = ", ".join(
        f"step {s['step']}: rows sum {s['row_sum_min']:.4g}..{s['row_sum_max']:.4g}" for s in info["sampled"]
    )
    print(f"  values          {info['values']} ({sums})")
    return 0
