"""``decode``: decode a capture exactly and report what it holds and how fast it went."""

from __future__ import annotations

import time

import numpy as np

from .common import Output, UsageError, json_option, source_kwargs, source_options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "decode",
        help="decode a capture into float32 and print a summary (--step N: what step N attended to)",
        description="Decode every attention array of a capture (any format; bit-exact with json.loads) and "
        "summarise it: sizes, speed, and the context positions one step attended to most.",
    )
    source_options(p, name="capture")
    p.add_argument("--top", type=int, default=10, metavar="K", help="attended positions to list (default 10)")
    p.add_argument(
        "--step", type=int, metavar="N", help="list what generation step N attended to (default: the last step)"
    )
    json_option(p)
    p.set_defaults(run=run)


def context_text(cap, position: int):
    """Text of the context token at ``position``: a prompt token, or an earlier generated one."""
    prompt_positions = cap.prompt_tokens["position"]
    hits = np.flatnonzero(prompt_positions == position)
    if len(hits):
        return str(cap.prompt_tokens["text"][hits[0]])
    hits = np.flatnonzero(cap.tokens["position"] == position)
    return str(cap.tokens["text"][hits[0]]) if len(hits) else None


def summarize(cap, seconds: float, size: int, top: int, step: int | None = None) -> dict:
    """What a user wants to see first: sizes, speed, and where the last token (or ``step``) looked."""
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
    if step is not None:
        hits = np.flatnonzero(cap.tokens["step"] == step)
        if not len(hits):
            raise UsageError(f"--step {step}: the capture has no generation step {step}")
        if not cap.tokens["has_attention"][hits[0]]:
            raise UsageError(f"--step {step}: step {step} was recorded without attention")
        steps_with = hits[:1]
    if len(steps_with):
        last = int(steps_with[-1])
        mean = cap.attention(last).mean(axis=(0, 1), dtype=np.float64)
        for position in np.argsort(mean, kind="stable")[::-1][:top].tolist():
            summary["top_attended"].append(
                {"position": position, "text": context_text(cap, position), "score": float(mean[position])}
            )
        summary["top_attended_step"] = int(cap.tokens["step"][last])
    return summary


def render_summary(summary: dict) -> str:
    lines = [
        f"{summary['path']}: {summary['tokens']} generated tokens ({summary['tokens_with_attention']} with attention), "
        f"{summary['layers']} layers x {summary['heads']} heads, context {summary['context_min']}..{summary['context_max']}, "
        f"{summary['prompt_tokens']} prompt tokens",
        f"decoded {summary['values']:,} float32 values ({summary['float32_mb']} MB) from {summary['file_mb']} MB "
        f"in {summary['seconds']} s ({summary['mb_per_s']} MB/s)",
    ]
    if summary["top_attended"]:
        lines.append(f"step {summary['top_attended_step']} attended most to (mean over layers and heads):")
        for row in summary["top_attended"]:
            lines.append(f"  pos {row['position']:>6}  {row['score']:.4f}  {row['text']!r}")
    return "\n".join(lines)


def run(args) -> Output:
    from .. import load
    from ..formats.detect import capture_bytes

    started = time.perf_counter()
    cap = load(args.capture, **source_kwargs(args))
    seconds = time.perf_counter() - started
    summary = summarize(cap, seconds, capture_bytes(args.capture), args.top, args.step)
    summary["recovery"] = cap.recovery
    return Output(summary, lambda: render_summary(summary), recovery=(args.capture, cap.recovery))
