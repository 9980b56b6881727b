"""``distance``: mean attention by distance from the generation head; local vs prompt share (question 5)."""

from __future__ import annotations


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


def run(args) -> int:
    from ..analysis.distance import distance_analysis
    from ..analysis.text import dump, fmt
    from .common import reduce_options, usage_errors

    with usage_errors():
        if args.window < 1:
            raise ValueError("--window must be >= 1")
        result = distance_analysis(
            args.source, window=args.window, per_layer=args.per_layer, kind=args.kind, **reduce_options(args)
        )
    out = result.to_json()
    if args.json:
        print(dump(out))
        return 0
    print(f"distance  mean attention ({out['kind']})")
    for d, v in enumerate(out["profile"][: args.show], start=1):
        print(f"{d:>8}  {fmt(v)}")
    print(
        f"\nlocal share (last {out['local_window']} tokens): {fmt(out['local_share'])}  "
        f"(uniform would be {fmt(out['uniform_local_share'])}: x{fmt(out['local_ratio'], 3)})"
    )
    print(f"prompt share: {fmt(out['prompt_share'])}")
    for layer, p in out["per_layer"].items():
        print(
            f"  layer {layer:>3}: local share {fmt(p['local_share'])}, distance 1..3: "
            + " ".join(fmt(v) for v in p["profile"][:3])
        )
    return 0
