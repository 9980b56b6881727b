"""``decay``: trend of every prompt token and sentence over steps; fitted decay rates (questions 2-4)."""

from __future__ import annotations

from ..analysis.text import table
from .common import Output, open_for_analysis, printed


def add_parser(subparsers) -> None:
    from .common import add_common

    p = subparsers.add_parser(
        "decay",
        help="fitted decay of attention per token, sentence, group and role; recommended decay_rate",
        description="Probabilities: a*exp(-rate*step) by weighted log-linear least squares (rate, half-life, r2). "
        "Logits: a linear slope (rate = -slope). Answers: does irrelevant context fade, do negative logits act as "
        "natural decay, and the Halo Weave decay_rate reproducing the median fitted decay.",
    )
    add_common(p)
    p.add_argument("--group", action="append", metavar="NAME=T:S,T:S", help="a named group of sentences; repeatable")
    p.add_argument("--top", type=int, default=10, metavar="K", help="sentences listed (fastest fading first)")
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..analysis import parse_groups
    from ..analysis.decay import decay_analysis
    from .common import usage_errors

    red, recovery = open_for_analysis(args)
    with usage_errors():
        groups = parse_groups(args.group) if args.group else None
        result = decay_analysis(red, groups=groups, kind=args.kind)
    out = result.to_json()
    return Output(out, printed(lambda: render(out, args)), recovery=recovery)


def render(out: dict, args) -> None:
    unit = "per step" if out["kind"] == "probabilities" else "logit units per step"
    print(f"values: {out['kind']}; rate {unit}, positive = fading")
    if out["groups"]:
        rows = [dict(g, group=k) for k, g in out["groups"].items()]
        print(
            table(
                rows,
                ["group", "rate", "half_life", "r2", "sentence_rate_median"]
                + (["planted_rate", "relative_error"] if any("planted_rate" in r for r in rows) else []),
            )
        )
        print()
    print(
        table([dict(r, role=k) for k, r in out["by_role"].items()], ["role", "tokens", "rate_median", "fading_share"])
    )
    sents = sorted(out["sentences"], key=lambda r: -(r["rate"] if r["rate"] is not None else float("-inf")))
    print()
    print(
        table(
            [dict(r, sentence=f"{r['turn_id']}:{r['sentence_id']}") for r in sents[: args.top]],
            ["sentence", "rate", "half_life", "r2"],
        )
    )
    share = out["negative_trend_share"]
    what = "logit trend is negative" if out["kind"] == "logits" else "attention fades (rate > 0)"
    print(f"\nshare of prompt tokens (BOS excluded) whose {what}: {share:.1%}" if share is not None else "")
    rec = out["recommendation"]
    print(
        f"recommended Halo Weave decay_rate: {out['recommended_decay_rate']:.3g} "
        f"(median rate {rec['median_rate']:.3g}/step x median mean attention {rec['median_mean_attention']:.3g})"
        if out["recommended_decay_rate"] is not None
        else "recommended decay_rate: - (no fit)"
    )
