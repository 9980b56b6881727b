"""``sweep``: the cumulative score over a parameter grid, scored by the attention mass its pruning keeps."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    from .common import add_common

    p = subparsers.add_parser(
        "sweep",
        help="grid of cumulative-score parameters, each scored by the attention mass its pruning keeps",
        description="Values are START:STOP:COUNT (both ends included) or comma lists, e.g. "
        "--decay-rate 0.001:0.01:10 --boost 0.5,1,2 --distance none,linear,logarithmic.",
    )
    add_common(p)
    p.add_argument("--decay-rate", default="0.003")
    p.add_argument("--boost", default="1")
    p.add_argument("--distance", default="logarithmic", help="none, linear, logarithmic (comma list)")
    p.add_argument("--min-distance", default="20")
    p.add_argument("--scale", default="10")
    p.add_argument("--budget", type=float, default=30.0, help="percent of unprotected prompt tokens pruned")
    p.add_argument("--top", type=int, default=10, help="grid points listed (best first)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..analysis.sweep import parse_values, sweep
    from ..analysis.text import dump, table
    from .common import reduce_options, usage_errors

    with usage_errors():
        grid = {
            "decay_rate": parse_values(args.decay_rate),
            "boost": parse_values(args.boost),
            "distance": parse_values(args.distance, str),
            "min_distance": parse_values(args.min_distance),
            "scale": parse_values(args.scale),
        }
        result = sweep(args.source, budget=args.budget, kind=args.kind, reduce_options=reduce_options(args), **grid)
    out = result.to_json()
    if args.json:
        print(dump(out))
        return 0
    print(f"{out['points']} grid points in {out['seconds']:.3f} s; pruning {out['budget']:g}% of prompt tokens")
    print(
        table(
            out["results"][: args.top],
            ["decay_rate", "boost", "distance", "min_distance", "scale", "mass_retained_mean", "mass_retained_min"],
        )
    )
    return 0
