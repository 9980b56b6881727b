"""``stats``: per step min / max / mean / row sum and NaN counts; probabilities or logits."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    from .common import add_common

    p = subparsers.add_parser(
        "stats",
        help="per step min/max/mean/row sums, NaN counts, probabilities or logits",
        description="Statistics of each step's reduced attention row over its context.",
    )
    add_common(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ..analysis.stats import step_stats
    from ..analysis.text import dump, table
    from .common import reduce_options, usage_errors

    with usage_errors():
        result = step_stats(args.source, kind=args.kind, **reduce_options(args))
    out = result.to_json()
    if args.json:
        print(dump(out))
        return 0
    print(table(out["steps"], ["step", "context_length", "min", "max", "mean", "sum", "nan", "values_beyond_context"]))
    print(
        f"\nvalues: {out['kind']}; rows sum to 1: {'yes' if out['rows_sum_to_one'] else 'no'}; "
        f"NaN inside contexts: {out['nan_total']}"
    )
    return 0
