"""``evict``: the causal KV-eviction replay -- every policy, per head, at many budgets, against oracles."""

from __future__ import annotations

import os

from ..analysis.text import table
from .common import (
    Output,
    check_output,
    json_option,
    kind_option,
    output_options,
    printed,
    selection_options,
    source_kwargs,
    source_options,
    usage_errors,
)


def add_parser(subparsers) -> None:
    from ..analysis.evict import DEFAULT_BUDGETS, POLICIES, TOP_K

    p = subparsers.add_parser(
        "evict",
        help="replay KV-cache eviction policies on the recorded attention and score them against oracles",
        description="Replay each eviction policy causally on every (layer, head) of the capture, at every "
        "budget, in one streaming pass: the attention mass the full-cache run put on the positions each "
        "policy keeps (a proxy: a real eviction changes later attention), worst step, top-k recall and "
        "share of oracle_future's mass. See docs/analysis.md.",
    )
    source_options(p, name="capture")
    selection_options(p, op=False)
    group = p.add_argument_group("the replay")
    group.add_argument(
        "--policies",
        default=",".join(POLICIES),
        help=f"comma list of {', '.join(POLICIES)} (default: all)",
    )
    group.add_argument(
        "--budgets",
        default=",".join(str(b) for b in DEFAULT_BUDGETS),
        help="tokens per cache, comma separated, or shares of the prompt such as 10%% (default 64,128,256)",
    )
    group.add_argument(
        "--unit",
        choices=["token", "sentence"],
        default="token",
        help="sentence: hw_frontend deletes whole sentences as pruneToFit does (default token)",
    )
    group.add_argument(
        "--top-k",
        type=int,
        default=TOP_K,
        metavar="K",
        help=f"recall of each step's K most attended positions (default {TOP_K})",
    )
    group.add_argument("--seed", type=int, default=0, help="the random policy's seed (default 0)")
    kind_option(group)
    output_options(p, "write the table as CSV to PATH (one row per policy and budget, per-layer columns after)")
    p.add_argument("--plot", metavar="PNG", help="draw mass retained against budget to PNG (needs matplotlib)")
    json_option(p)
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..analysis.evict import evict

    with usage_errors():
        for path in (args.output, args.plot):
            if path:
                check_output(path, args.force)
        if args.output and args.plot and os.path.abspath(args.output) == os.path.abspath(args.plot):
            raise ValueError("-o and --plot name the same file: give the table and the picture a path each")
    if args.plot:  # before the replay: a missing matplotlib is found in a second, not after the work
        from ..analysis.heatmap import require_matplotlib

        require_matplotlib()
    with usage_errors():
        result = evict(
            args.capture,
            args.policies,
            args.budgets,
            unit=args.unit,
            layers=args.layers,
            heads=args.heads,
            every=args.every,
            tokens=args.tokens,
            kind=args.kind,
            top_k=args.top_k,
            seed=args.seed,
            **source_kwargs(args),
        )
    out = result.to_json()
    if args.output:
        out["csv"] = result.write_csv(args.output, force=args.force)
    if args.plot:
        out["plot"] = result.plot(args.plot, force=args.force)
    return Output(out, printed(lambda: render(out, result)), recovery=(args.capture, result.recovery))


def render(out: dict, result) -> None:
    print(
        f"eviction replay: {out['steps_scored']} steps scored after step {out['first_step']}, "
        f"{len(out['layers'])} layers x {len(out['heads'])} heads, {out['kind']}"
    )
    print(
        table(
            result.table(),
            ["policy", "budget", "level", "cached_mean", "mass_mean", "mass_min", "recall_mean", "share_of_oracle"],
        )
    )
    print(
        "\nmass: attention the full-cache run put on the kept positions (a proxy); share_of_oracle: "
        "mass_mean over oracle_future's at the same budget"
    )
    for key in ("csv", "plot"):
        if key in out:
            print(f"wrote {out[key]}")
