"""``score``: replay a scoring rule -- Halo Weave's own, exactly, or halo_fast's -- and rank what it keeps."""

from __future__ import annotations

from ..analysis.text import table
from .common import Output, open_for_analysis, printed


def add_parser(subparsers) -> None:
    from .common import add_common, rule_options

    p = subparsers.add_parser(
        "score",
        help="replay a scoring rule (Halo Weave's own hw_*, exactly, or halo_fast's) and rank sentences and tokens",
        description="Replay RULE over every step and rank the sentences and tokens by final score. The hw_* rules "
        "are Halo Weave's own, giving its numbers exactly (hw_frontend: the front end's brightness, with the order "
        "pruneToFit deletes sentences in); magnitude, voting and cumulative are halo_fast's generalisations "
        "(docs/analysis.md). --json: rule, params, positions, final and peak per position, prune_order.",
    )
    add_common(p)
    rule_options(p, "the rule to replay")
    p.add_argument(
        "--top", type=int, default=10, metavar="K", help="sentences and tokens shown at each end (default 10)"
    )
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..analysis.conversation import context_tokens
    from ..analysis.hw_rules import AGGREGATION, SOURCE_FILES
    from ..analysis.scoring import ranked, score
    from .common import rule_params, usage_errors

    with usage_errors():
        params = rule_params(args)
    red, recovery = open_for_analysis(args, prefer_op=AGGREGATION.get(args.rule))
    with usage_errors():
        result = score(red, args.rule, kind=args.kind, **params)
    out = result.to_json()
    out["steps"] = len(result.steps)
    out["aggregation"] = f"{red.op} over {'+'.join(red.over)}"
    if args.rule in SOURCE_FILES:
        out["halo_weave_source"] = SOURCE_FILES[args.rule]
    out.update(ranked(result, context_tokens(red)))
    return Output(out, printed(lambda: render(out, args)), recovery=recovery)


def render(out: dict, args) -> None:
    params = ", ".join(f"{k}={v}" for k, v in out["params"].items()) or "no parameters"
    where = f"; Halo Weave's {out['halo_weave_source']}" if "halo_weave_source" in out else ""
    scored = sum(1 for f in out["final"] if f is not None)
    print(f"{out['rule']} ({params}) over {out['steps']} steps, attention = {out['aggregation']}{where}")
    print(f"{scored} of {len(out['positions'])} positions scored, {len(out['sentences'])} sentences")
    k = max(args.top, 1)
    for what, rows, columns in (
        ("sentences", out["sentences"], ["sentence", "role", "n_tokens", "score", "text"]),
        ("tokens", out["tokens"], ["position", "sentence", "final", "peak", "text"]),
    ):
        for r in rows:
            r.setdefault("sentence", f"{r.get('turn_id')}:{r.get('sentence_id')}")
            r["text"] = r["text"].replace("\n", "\\n")
            for name in ("score", "final", "peak"):  # integer rules: 9977, not 9.977e+03
                if isinstance(r.get(name), float) and r[name].is_integer() and abs(r[name]) < 1e15:
                    r[name] = int(r[name])
        if len(rows) <= 2 * k:
            print(f"\n{what} by final score:")
            print(table(rows, columns, {"text": 50}))
        else:
            print(f"\ntop {k} {what}:")
            print(table(rows[:k], columns, {"text": 50}))
            print(f"\nbottom {k} {what}:")
            print(table(rows[-k:], columns, {"text": 50}))
    if out.get("prune_order") is not None:
        order = " ".join(f"{t}:{s}" for t, s in out["prune_order"])
        print(f"\npruneToFit deletes, pruning as far as it goes: {order or 'nothing'}")
