"""``distance``: mean attention by distance from the generation head; local vs prompt share (question 5)."""

from __future__ import annotations

from ..analysis.text import fmt
from .common import Output, UsageError, open_for_analysis, printed


def add_parser(subparsers) -> None:
    from .common import add_common

    p = subparsers.add_parser(
        "distance",
        help="attention by distance from the head; do the last 20 tokens get artificial attention",
        description="Mean attention at distance 1..N from the generation head, overall and (--per-layer) per "
        "layer, and the share of each step's attention in the last --window tokens vs the prompt.",
    )
    add_common(p)
    p.add_argument("--window", type=int, default=20, help="local window (default 20)")
    p.add_argument("--per-layer", action="store_true", help="also per layer (captures only: reduces over heads)")
    p.add_argument("--show", type=int, default=30, metavar="D", help="distances printed (default 30)")
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..analysis.distance import distance_analysis
    from .common import reduce_options, usage_errors

    if args.window < 1:
        raise UsageError("--window must be >= 1")
    if args.per_layer:  # it reduces the capture twice (over both, then over heads only): it reads the file itself
        source, options, recovery = args.source, reduce_options(args), None
    else:
        source, options = open_for_analysis(args)[0], {}
        recovery = (args.source, source.extra.get("recovery"))
    with usage_errors():
        result = distance_analysis(source, window=args.window, per_layer=args.per_layer, kind=args.kind, **options)
    out = result.to_json()
    return Output(out, printed(lambda: render(out, args)), recovery=recovery)


def render(out: dict, args) -> None:
    print(f"distance  mean attention ({out['kind']})")
    for d, v in enumerate(out["profile"][: args.show], start=1):
        print(f"{d:>8}  {fmt(v)}")
    print(
        f"\nlocal share (last {out['local_window']} tokens): {fmt(out['local_share'])}  "
        f"(uniform would be {fmt(out['uniform_local_share'])}: x{fmt(out['local_ratio'], 3)})"
    )
    print(f"prompt share: {fmt(out['prompt_share'])}")
    shown = max(1, min(args.show, 3))
    for layer, p in out["per_layer"].items():
        print(
            f"  layer {layer:>3}: local share {fmt(p['local_share'])}, distance 1..{shown}: "
            + " ".join(fmt(v) for v in p["profile"][:shown])
        )
