"""``sentences``: attention to each prompt sentence over generation steps, brightest first (question 1)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    from .common import add_common

    p = subparsers.add_parser(
        "sentences",
        help="attention per prompt sentence over steps; which stay bright",
        description="Sum (and mean, max) of the reduced attention over each prompt sentence (turn_id, sentence_id) "
        "per generation step; ranked by mean, with peak and final-quarter mean. Synth captures compare their "
        "planted groups automatically.",
    )
    add_common(p)
    p.add_argument(
        "--group",
        action="append",
        metavar="NAME=T:S,T:S",
        help="a named group of sentences (turn:sentence) to compare over time; repeatable",
    )
    p.add_argument("--top", type=int, default=0, metavar="K", help="show only the K brightest sentences")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..analysis import parse_groups
    from ..analysis.sentences import sentence_attention
    from ..analysis.text import dump, table
    from .common import reduce_options, usage_errors

    with usage_errors():
        groups = parse_groups(args.group) if args.group else None
        result = sentence_attention(args.source, groups=groups, kind=args.kind, **reduce_options(args))
    out = result.to_json()
    if args.json:
        print(dump(out))
        return 0
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
    return 0
