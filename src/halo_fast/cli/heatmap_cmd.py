"""``heatmap``: PNG of the attention to every prompt token over the generation steps (experiment 3)."""

from __future__ import annotations

import sys


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
    p.add_argument("--log", action="store_true", help="log colour scale (log y axis with --sentences)")
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


def missing_matplotlib(exc) -> int:
    """Exit 1 with the install command: the command line is fine, the environment lacks matplotlib."""
    print(f"error: {exc}", file=sys.stderr)
    return 1


def run(args) -> int:
    from ..analysis import parse_groups
    from ..analysis.heatmap import MissingDependency, heatmap, require_matplotlib
    from ..analysis.text import dump, fmt
    from ..store import output_beside
    from .common import check_output, reduce_options, usage_errors

    output = args.output or output_beside(args.source, ".sentences.png" if args.sentences else ".heatmap.png")
    with usage_errors():
        if args.dpi < 10:
            raise ValueError("--dpi must be at least 10")
        check_output(output, args.force)
        groups = parse_groups(args.group) if args.group else None
    try:
        require_matplotlib()
        with usage_errors():
            result = heatmap(
                args.source,
                output,
                log=args.log,
                sentences=args.sentences,
                force=args.force,
                kind=args.kind,
                groups=groups,
                dpi=args.dpi,
                **reduce_options(args),
            )
    except MissingDependency as exc:
        return missing_matplotlib(exc)
    if args.json:
        print(dump(result))
        return 0
    scale = "log" if result["log"] else "linear"
    what = "sentence lines" if args.sentences else "heatmap"
    print(
        f"wrote {output}: {what}, {result['width']} x {result['height']} px, {result['steps']} steps x "
        f"{result['prompt_tokens']} prompt tokens in {result['sentences']} sentences ({result['kind']}, {scale} "
        f"scale {fmt(result['vmin'], 3)}..{fmt(result['vmax'], 3)})"
    )
    return 0
