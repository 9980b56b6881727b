"""``batch-stats``: per key figure of a batch's summary.csv, the mean over captures and a bootstrap interval."""

from __future__ import annotations

from ..analysis.text import table
from .common import Output, check_output, json_option, output_options, usage_errors


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "batch-stats",
        help="mean and bootstrap confidence interval of each key figure over a batch's captures",
        description="Read OUT_DIR/summary.csv (or a summary CSV) of `batch` and give, per key figure, the number "
        "of captures with a value (ok and skipped rows), their mean and a percentile-bootstrap confidence "
        "interval of that mean (captures resampled with replacement). Needs numpy only: the table can be "
        "copied from the cluster and read anywhere.",
    )
    p.add_argument("summary", metavar="OUT_DIR", help="a batch's output folder, or its summary.csv")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    output_options(p, "write the table as CSV to PATH (figure, n, mean, ci_low, ci_high)")
    json_option(p)
    p.set_defaults(run=run)


def run(args) -> Output:
    import csv

    from ..store import atomic_path
    from ..study.stats import batch_stats

    with usage_errors():
        if args.output:
            check_output(args.output, args.force)
        rows = batch_stats(args.summary, args.level, args.resamples, args.seed)
    out = {
        "summary": args.summary,
        "level": args.level,
        "resamples": args.resamples,
        "seed": args.seed,
        "figures": rows,
    }
    if args.output:
        with atomic_path(args.output, force=args.force) as temporary:
            with open(temporary, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, ["figure", "n", "mean", "ci_low", "ci_high"])
                writer.writeheader()
                writer.writerows(rows)
        out["csv"] = args.output

    def text() -> str:
        if not rows:
            return f"{args.summary}: no key figures (no job results in the summary)"
        head = f"{len(rows)} key figures; mean over captures and {args.level:.0%} bootstrap interval ({args.resamples} resamples)"
        body = table(rows, ["figure", "n", "mean", "ci_low", "ci_high"])
        return head + "\n" + body + (f"\nwrote {args.output}" if args.output else "")

    return Output(out, text)
