"""``compare``: the generation on the full prompt against the one on the pruned prompt (experiment 2)."""

from __future__ import annotations

from ..analysis.text import table
from .common import Output, printed


def add_parser(subparsers) -> None:
    from .common import json_option, kind_option, selection_options, source_options

    p = subparsers.add_parser(
        "compare",
        help="what pruning changed: two generations side by side, token agreement, attention shares that moved",
        description="FULL is the capture of the run on the full prompt, PRUNED the rerun on the prompt "
        "`prune --write-prompt` wrote (captures in any format). Prints the generated texts from the first step "
        "whose tokens differ, the share of steps whose tokens agree, the edit distance of the token ids, and for "
        "every sentence both prompts hold (matched by text) its share of the attention in each run.",
    )
    p.add_argument("full", help="capture of the run on the full prompt")
    source_options(p, "pruned", help="capture of the run on the pruned prompt (the reading options apply to both)")
    selection_options(p)
    p.add_argument("--width", type=int, default=60, help="characters of each text shown side by side (default 60)")
    p.add_argument("--top", type=int, default=15, help="sentences listed, the largest changes first (default 15)")
    kind_option(p)
    json_option(p)
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..analysis.compare import compare
    from .common import reduce_options, usage_errors

    with usage_errors():
        result = compare(args.full, args.pruned, kind=args.kind, **reduce_options(args))
    out = result.to_json()
    return Output(out, printed(lambda: render(out, args)))


def render(out: dict, args) -> None:
    g = out["generated"]
    k = out["first_divergent_step"]
    agreement = "-" if out["token_agreement"] is None else f"{out['token_agreement']:.1%}"
    print(f"full: {out['full']} ({g['full']} tokens)\npruned: {out['pruned']} ({g['pruned']} tokens)")
    print(
        f"first divergent step: {'none (the same tokens)' if k is None else k}; token agreement {agreement}; "
        f"edit distance {out['edit_distance']} tokens"
    )
    texts = out["texts"]
    if texts["common"]:
        print(f"\nboth: {_line(texts['common'][-args.width * 2 :], args.width * 2)}")
    if k is not None:
        width = max(args.width, 10)
        print(f"\n{'full':<{width}}  pruned")
        left, right = _wrap(texts["full"], width), _wrap(texts["pruned"], width)
        for i in range(min(max(len(left), len(right)), 12)):
            a = left[i] if i < len(left) else ""
            b = right[i] if i < len(right) else ""
            print(f"{a:<{width}}  {b}")
    rows = sorted(out["sentences"], key=lambda r: -abs(r["change"] or 0.0))[: args.top]
    print(
        f"\n{len(out['sentences'])} sentences in both prompts ({out['sentences_only_in_full']} pruned away); share "
        "of the attention on the sentences both hold, per step, mean:"
    )
    print(
        table(
            [dict(r, text=_line(r["text"], 40)) for r in rows],
            ["sentence_full", "sentence_pruned", "common_share_full", "common_share_pruned", "change", "text"],
        )
    )


def _line(text: str, width: int) -> str:
    return text.replace("\n", "\\n")[:width]


def _wrap(text: str, width: int) -> list[str]:
    flat = text.replace("\n", "\\n")
    return [flat[i : i + width] for i in range(0, len(flat), width)] or [""]
