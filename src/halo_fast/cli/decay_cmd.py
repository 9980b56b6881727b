"""``decay``: trend of every prompt token and sentence over steps; fitted decay rates (questions 2-4)."""

from __future__ import annotations

from ..analysis.text import table
from .common import Output, open_for_analysis, printed


def add_parser(subparsers) -> None:
    from .common import add_common, rule_options

    p = subparsers.add_parser(
        "decay",
        help="fitted decay of attention per token, sentence, group and role; recommended decay_rate",
        description="Probabilities: a*exp(-rate*step) by weighted log-linear least squares (rate, half-life, r2). "
        "Logits: a linear slope (rate = -slope). Answers: does irrelevant context fade, do negative logits act as "
        "natural decay, and the decay_rate for --rule (default hw_frontend, Halo Weave's front end) in that "
        "rule's units: what the attention's own fading takes from a median token's gains per step, next to the "
        "decay the rule itself applies.",
    )
    add_common(p)
    rule_options(p, "the rule the recommended decay_rate is for")
    p.add_argument("--group", action="append", metavar="NAME=T:S,T:S", help="a named group of sentences; repeatable")
    p.add_argument("--top", type=int, default=10, metavar="K", help="sentences listed (fastest fading first)")
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..analysis import parse_groups
    from ..analysis.decay import decay_analysis
    from .common import rule_params, usage_errors

    with usage_errors():
        params = rule_params(args)
    red, recovery = open_for_analysis(args)
    with usage_errors():
        groups = parse_groups(args.group) if args.group else None
        result = decay_analysis(red, groups=groups, kind=args.kind, rule=args.rule, params=params)
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
    from ..analysis.rule_decay import describe

    print(describe(out["recommendation"]))
