"""``report``: one Markdown report answering the guide's five questions, with the tables and the heatmap."""

from __future__ import annotations

from ..analysis.text import fmt
from .common import Output, open_for_analysis, printed


def add_parser(subparsers) -> None:
    from .common import add_common, rule_options

    p = subparsers.add_parser(
        "report",
        help="Markdown report answering the guide's five questions, with tables and the heatmap",
        description="Reduce the capture once and write REPORT.md with short answers to the guide's questions and "
        "the tables of sentences, decay, distance, prune and stats, plus REPORT.heatmap.png beside it (log colour "
        "scale; --linear for linear). Without matplotlib the report is written with a note instead of the image.",
    )
    add_common(p)
    p.add_argument(
        "-o",
        "--output",
        help="Markdown file to write (default: CAPTURE.report.md beside the input); "
        "the heatmap goes beside it as REPORT.heatmap.png",
    )
    p.add_argument("--linear", action="store_true", help="linear colour scale in the heatmap (default log)")
    p.add_argument("--budget", type=float, default=30.0, help="percent of unprotected units pruned (default 30)")
    p.add_argument("--unit", choices=["token", "sentence"], default="sentence", help="pruning unit (default sentence)")
    p.add_argument(
        "--group",
        action="append",
        metavar="NAME=T:S,T:S",
        help="a named group of sentences to follow (default: a synth capture's planted groups); repeatable",
    )
    p.add_argument(
        "--evict-budgets",
        default="10%,25%,50%",
        metavar="B,...",
        help="budgets of the section 'what eviction would keep' (tokens or shares of the prompt; default "
        "10%%,25%%,50%%); it reads the capture again, twice",
    )
    p.add_argument("--no-evict", action="store_true", help="leave the eviction replay out (and REPORT.evict.png)")
    p.add_argument("--force", action="store_true", help="overwrite an existing report and its pictures")
    rule_options(p, "the rule the answers (the decay rate) are for; it joins the pruning policies")
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..analysis import parse_groups
    from ..analysis.report import image_beside, report
    from ..analysis.report_eviction import evict_image_beside
    from ..store import output_beside
    from .common import check_output, rule_params, usage_errors

    output = args.output or output_beside(args.source, ".report.md")
    with usage_errors():
        check_output(output, args.force)
        check_output(image_beside(output), args.force)
        if not args.no_evict:
            check_output(evict_image_beside(output), args.force)
        if not 0 <= args.budget <= 100:
            raise ValueError(f"--budget must be a percentage in 0..100, got {args.budget:g}")
        groups = parse_groups(args.group) if args.group else None
        params = rule_params(args)
    red, recovery = open_for_analysis(args)
    with usage_errors():
        result = report(
            red,
            output,
            force=args.force,
            log=not args.linear,
            budget=args.budget,
            unit=args.unit,
            groups=groups,
            kind=args.kind,
            rule=args.rule,
            params=params,
            evict_budgets=() if args.no_evict else [b for b in args.evict_budgets.split(",") if b.strip()],
        )
    return Output(result, printed(lambda: render(result, output, image_beside(output))), recovery=recovery)


def render(result: dict, output: str, image: str) -> None:
    a = result["answers"]
    print(
        f"wrote {output}"
        + (f" and {image}" if result["heatmap"] else "")
        + f" ({result['steps']} steps, {result['seconds']:.1f} s)"
    )
    if result["heatmap_note"]:
        print(result["heatmap_note"])
    print("1. bright: " + (", ".join(b["sentence"] for b in a["bright_sentences"]) or "-"))
    print(
        f"2. fading: {len(a['fading_sentences'])} of {result['sentences']} sentences"
        + (f", fastest group {a['fastest_fading_group']}" if a["fastest_fading_group"] else "")
    )
    neg = a["negative_logits"]
    print(
        "3. negative logits as decay: "
        + (
            f"raw logits fall for {percent(neg['raw_falling_share'])} of prompt tokens"
            if neg["answerable"]
            else "needs a logit capture"
        )
    )
    print(f"4. decay_rate for {a['rule']}: {fmt(a['recommended_decay_rate'], 3)} {a['decay_rate_units']}")
    print(
        f"5. distance weighting needed: {'yes' if a['distance_weighting_needed'] else 'no'} "
        f"(local share x{fmt(a['local_ratio'], 3)} uniform)"
    )
    # the causal policies whose caches held no more than their budget (a fair comparison)
    fair = [
        r
        for r in result["eviction"] or []
        if not r["policy"].startswith("oracle") and r["mass_mean"] is not None and r["cached_mean"] <= r["budget"]
    ]
    if fair:
        top = max(fair, key=lambda r: (r["budget"], r["mass_mean"]))
        print(
            f"eviction: at {top['budget']} tokens {top['policy']} keeps the most attention mass "
            f"({fmt(top['mass_mean'], 3)}) of the policies within the budget"
        )
    elif result["eviction_note"]:
        print(f"eviction replay {result['eviction_note']}")


def percent(share) -> str:
    return "-" if share is None or share != share else f"{share:.0%}"
