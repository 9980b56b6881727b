"""``sentences``: attention to each prompt sentence over generation steps, brightest first (question 1)."""

from __future__ import annotations

from ..analysis.text import table
from .common import Output, open_for_analysis, printed


def add_parser(subparsers) -> None:
    from .common import add_common

    p = subparsers.add_parser(
        "sentences",
        help="attention per prompt sentence over steps; which stay bright",
        description="Sum (and mean, max) of the reduced attention over each prompt sentence (turn_id, sentence_id) "
        "per generation step; ranked by mean, with peak and final-quarter mean. Synth captures compare their "
        "planted groups automatically. --json includes every sentence's per-step curve; --csv writes the curves.",
    )
    add_common(p)
    p.add_argument(
        "--group",
        action="append",
        metavar="NAME=T:S,T:S",
        help="a named group of sentences (turn:sentence) to compare over time; repeatable",
    )
    p.add_argument("--top", type=int, default=0, metavar="K", help="show only the K brightest sentences")
    p.add_argument(
        "--csv",
        metavar="FILE",
        help="write the per-step curves to FILE: one row per step; columns step, TURN:SENTENCE..., group:NAME...",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing --csv file")
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..analysis import parse_groups
    from ..analysis.sentences import sentence_attention
    from .common import check_output, usage_errors

    red, recovery = open_for_analysis(args)
    with usage_errors():
        if args.csv:
            check_output(args.csv, args.force)  # before the work: an existing file fails now, not after it
        groups = parse_groups(args.group) if args.group else None
        result = sentence_attention(red, groups=groups, kind=args.kind)
    out = result.to_json()
    if args.csv:
        result.to_csv(args.csv, force=args.force)
        columns = 1 + len(result.keys) + len(result.groups)  # step, the sentences, the groups
        out["written"] = {"path": args.csv, "rows": len(result.steps), "columns": columns}
    return Output(out, printed(lambda: render(out, args)), recovery=recovery)


def render(out: dict, args) -> None:
    rows = out["sentences"][: args.top or None]
    for r in rows:
        r["sentence"] = f"{r['turn_id']}:{r['sentence_id']}"
        r["text"] = r["text"].replace("\n", "\\n")
    print(
        f"{len(out['sentences'])} sentences, {len(out['steps'])} steps ({out['kind']}); attention = sum over the "
        "sentence's tokens per step"
    )
    print(table(rows, ["sentence", "role", "n_tokens", "mean", "peak", "final", "text"], {"text": 50}))
    if out["groups"]:
        print("\ngroups (summed attention):")
        grows = [
            {
                "group": k,
                "sentences": " ".join(f"{a}:{b}" for a, b in g["sentences"]),
                "mean": g["mean"],
                "peak": g["peak"],
                "final": g["final"],
                "first": g["per_step"][0] if g["per_step"] else None,
                "last": g["per_step"][-1] if g["per_step"] else None,
            }
            for k, g in out["groups"].items()
        ]
        print(table(grows, ["group", "mean", "peak", "final", "first", "last", "sentences"]))
        fading = [g["group"] for g in grows if g["first"] and g["last"] is not None and g["last"] < 0.5 * g["first"]]
        print(f"fading to under half their first-step attention: {', '.join(fading) or 'none'}")
    if "written" in out:
        written = out["written"]
        print(
            f"\nwrote the per-step curves ({written['rows']} steps x {written['columns']} columns) to {written['path']}"
        )
