"""``demo``: make a small realistic capture with the synthesizer and decode it, end to end."""

from __future__ import annotations

import os
import sys
import tempfile
import time

from .common import Output, json_option, progress_option


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="synthesize a small capture and decode it (a self-check of the install)",
        description="Write a small synthetic capture (planted sentence groups, BOS sink, local wave) "
        "and decode it exactly, printing what a real run would print.",
    )
    p.add_argument("--dir", help="keep the capture in this folder (default: a temporary folder, removed after)")
    p.add_argument("--layers", type=int, default=8, help="layers of the synthetic model (default 8)")
    p.add_argument("--heads", type=int, default=8, help="heads per layer (default 8)")
    p.add_argument("--prompt", type=int, default=120, help="prompt tokens (default 120)")
    p.add_argument("--tokens", type=int, default=48, help="generated tokens (default 48)")
    progress_option(p)
    json_option(p)
    p.set_defaults(run=run)


def run(args) -> Output:
    from .. import load
    from ..synth import write_capture
    from .decode_cmd import render_summary, summarize

    with tempfile.TemporaryDirectory() as scratch:
        folder = args.dir or scratch
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "demo_capture.json")
        started = time.perf_counter()
        write_capture(
            path,
            layers=args.layers,
            heads=args.heads,
            prompt=args.prompt,
            tokens=args.tokens,
            seed=0,
            progress=bool(args.progress),
        )
        size = os.path.getsize(path)
        lines = [f"wrote {path} ({size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s"]
        print("decoding it (the very first run also compiles the numba kernels: a few seconds, once)", file=sys.stderr)
        started = time.perf_counter()
        cap = load(path, progress=bool(args.progress))
        summary = summarize(cap, time.perf_counter() - started, size, top=5)
        lines.append(render_summary(summary))
        groups = cap.metadata.get("synth", {}).get("groups", [])
        if groups:
            lines.append("planted sentence groups (share of attention ~ exp(-rate * step)):")
            for group in groups:
                lines.append(f"  {group['name']:<10} rate {group['decay_rate']:<8} sentences {group['sentences']}")
        if args.dir:
            lines.append(f"kept {path}")
        summary["planted_groups"] = groups
        summary["kept"] = path if args.dir else None
    return Output(summary, "\n".join(lines))
