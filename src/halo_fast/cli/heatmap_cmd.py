"""``heatmap``: PNG of the attention to every prompt token over the generation steps (experiment 3)."""

from __future__ import annotations

from ..analysis.text import fmt
from .common import Output, open_for_analysis


def add_parser(subparsers) -> None:
    from .common import add_common

    p = subparsers.add_parser(
        "heatmap",
        help="PNG: generation step x prompt position, sentence boundaries marked (needs matplotlib)",
        description="Draw the reduced attention of every prompt token at every kept generation step (colour = "
        "attention; logit captures softmaxed per row), sentence and turn boundaries marked; --sentences draws each "
        "sentence's summed attention over the steps as lines instead. Needs matplotlib: "
        "pip install 'halo_fast[plot]'.",
    )
    add_common(p)
    p.add_argument(
        "-o",
        "--output",
        help="PNG to write (default: CAPTURE.heatmap.png, with --sentences CAPTURE.sentences.png, beside the input)",
    )
    scale = p.add_mutually_exclusive_group()
    scale.add_argument(
        "--log",
        dest="log",
        action="store_true",
        default=True,
        help="log colour scale, the default (log y axis with --sentences)",
    )
    scale.add_argument("--linear", dest="log", action="store_false", help="linear colour scale (linear y axis)")
    p.add_argument("--sentences", action="store_true", help="one line per sentence over the steps instead")
    p.add_argument(
        "--group",
        action="append",
        metavar="NAME=T:S,T:S",
        help="a named group of sentences to mark (default: a synth capture's planted groups); repeatable",
    )
    p.add_argument("--dpi", type=int, default=100, help="pixels per inch of the 12 x 7 inch figure (default 100)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..analysis import parse_groups
    from ..analysis.heatmap import heatmap, require_matplotlib
    from ..store import output_beside
    from .common import check_output, usage_errors

    output = args.output or output_beside(args.source, ".sentences.png" if args.sentences else ".heatmap.png")
    with usage_errors():
        if args.dpi < 10:
            raise ValueError("--dpi must be at least 10")
        check_output(output, args.force)
        groups = parse_groups(args.group) if args.group else None
    require_matplotlib()  # MissingDependency: exit 1 with the install command (the command line is fine)
    red, recovery = open_for_analysis(args)
    with usage_errors():
        result = heatmap(
            red,
            output,
            log=args.log,
            sentences=args.sentences,
            force=args.force,
            kind=args.kind,
            groups=groups,
            dpi=args.dpi,
        )
    scale = "log" if result["log"] else "linear"
    what = "sentence lines" if args.sentences else "heatmap"
    text = (
        f"wrote {output}: {what}, {result['width']} x {result['height']} px, {result['steps']} steps x "
        f"{result['prompt_tokens']} prompt tokens in {result['sentences']} sentences ({result['kind']}, {scale} "
        f"scale {fmt(result['vmin'], 3)}..{fmt(result['vmax'], 3)})"
    )
    return Output(result, text, recovery=recovery)
