"""``sweep``: the cumulative score over a parameter grid, scored by the attention mass its pruning keeps."""

from __future__ import annotations

from ..analysis.text import table
from .common import Output, open_for_analysis, printed


def add_parser(subparsers) -> None:
    from .common import add_common

    p = subparsers.add_parser(
        "sweep",
        help="grid of cumulative-score parameters, each scored by the attention mass its pruning keeps",
        description="Values are START:STOP:COUNT (both ends included) or comma lists, e.g. "
        "--decay-rate 0.001:0.01:10 --boost 0.5,1,2 --distance none,linear,logarithmic.",
    )
    add_common(p)
    grid = p.add_argument_group("the grid (each START:STOP:COUNT or a comma list)")
    grid.add_argument("--decay-rate", default="0.003", help="score lost per step (default 0.003)")
    grid.add_argument("--boost", default="1", help="weight of attention added per step (default 1)")
    grid.add_argument(
        "--distance", default="logarithmic", help="distance weighting: none, linear, logarithmic (default logarithmic)"
    )
    grid.add_argument("--min-distance", default="20", help="distance below which no weight applies (default 20)")
    grid.add_argument("--scale", default="10", help="distance scale of the weighting (default 10)")
    p.add_argument(
        "--budget", type=float, default=30.0, help="percent of unprotected prompt tokens pruned (default 30)"
    )
    p.add_argument("--top", type=int, default=10, help="grid points listed, best first (default 10)")
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..analysis.sweep import parse_values, sweep
    from .common import usage_errors

    red, recovery = open_for_analysis(args)
    with usage_errors():
        grid = {
            name: _values(f"--{name.replace('_', '-')}", getattr(args, name), parse_values, cast)
            for name, cast in (
                ("decay_rate", float),
                ("boost", float),
                ("distance", str),
                ("min_distance", float),
                ("scale", float),
            )
        }
        result = sweep(red, budget=args.budget, kind=args.kind, **grid)
    out = result.to_json()
    return Output(out, printed(lambda: render(out, args)), recovery=recovery)


def _values(option: str, text: str, parse, cast) -> list:
    """The grid values of one option; a bad value names the option."""
    try:
        return parse(text, cast)
    except ValueError as exc:
        raise ValueError(f"{option} {text!r}: {exc}") from None


def render(out: dict, args) -> None:
    from ..analysis.rule_decay import describe

    print(f"{out['points']} grid points in {out['seconds']:.3f} s; pruning {out['budget']:g}% of prompt tokens")
    print(
        table(
            out["results"][: args.top],
            ["decay_rate", "boost", "distance", "min_distance", "scale", "mass_retained_mean", "mass_retained_min"],
        )
    )
    if out["recommendation"]:
        print(describe(out["recommendation"]) + " (the swept rule; `decay --rule` names another)")
