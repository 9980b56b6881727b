"""``info``: what a capture holds -- model, tokens, layers x heads, context, value kind -- without decoding it all."""

from __future__ import annotations

from .common import Output, json_option, source_kwargs, source_options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="what a capture holds (structure scan plus a sample; fast on multi-GB files)",
        description="Scan a capture's structure and decode a few tokens to tell what it holds.",
    )
    source_options(p, name="capture")
    json_option(p)
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..describe import describe

    info = describe(args.capture, **source_kwargs(args))
    return Output(info, lambda: render(info), recovery=(args.capture, info["recovery"]))


def size_text(n: int) -> str:
    """Bytes as a person reads them: 812 B, 14.2 kB, 3.1 MB, 5.4 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def render(info: dict) -> str:
    steps = f"steps {info['steps'][0]}..{info['steps'][-1]}" if info["steps"] else "no steps"
    context = (
        f"context {info['context_min']}..{info['context_max']}" if info["tokens_with_attention"] else "no attention"
    )
    sums = ", ".join(
        f"step {s['step']}: rows sum {s['row_sum_min']:.4g}..{s['row_sum_max']:.4g}" for s in info["sampled"]
    )
    return "\n".join(
        [
            f"{info['path']} ({size_text(info['bytes'])}, {info['format']})",
            f"  model           {info['model']}",
            f"  tokens          {info['tokens']} generated ({info['tokens_with_attention']} with attention), {steps}",
            f"  attention       {info['layers']} layers x {info['heads']} heads, {context}",
            f"  prompt          {info['prompt_tokens']} tokens",
            f"  decoded size    {info['float32_mb']} MB float32",
            f"  values          {info['values']}" + (f" ({sums})" if sums else ""),
        ]
    )
