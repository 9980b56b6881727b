"""``stats``: per step min / max / mean / row sum and NaN counts; probabilities or logits."""

from __future__ import annotations

from ..analysis.text import table
from .common import Output, open_for_analysis, printed


def add_parser(subparsers) -> None:
    from .common import add_common

    p = subparsers.add_parser(
        "stats",
        help="per step min/max/mean/row sums, NaN counts, probabilities or logits",
        description="Statistics of each step's reduced attention row over its context.",
    )
    add_common(p)
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..analysis.stats import step_stats
    from .common import usage_errors

    red, recovery = open_for_analysis(args)
    with usage_errors():
        result = step_stats(red, kind=args.kind)
    out = result.to_json()
    return Output(out, printed(lambda: render(out, args)), recovery=recovery)


def render(out: dict, args) -> None:
    print(table(out["steps"], ["step", "context_length", "min", "max", "mean", "sum", "nan", "values_beyond_context"]))
    print(
        f"\nvalues: {out['kind']}; rows sum to 1: {'yes' if out['rows_sum_to_one'] else 'no'}; "
        f"NaN inside contexts: {out['nan_total']}"
    )
