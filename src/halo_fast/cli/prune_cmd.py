"""``prune``: the pruning simulation -- drop the bottom X% of prompt tokens or sentences, compare policies."""

from __future__ import annotations

import json

from ..analysis.text import table
from .common import Output, open_for_analysis, printed


def add_parser(subparsers) -> None:
    from ..analysis.prune import DEFAULT_POLICIES, POLICIES
    from .common import add_common

    p = subparsers.add_parser(
        "prune",
        help="simulate pruning the bottom X%% of the prompt by several policies and compare them",
        description="Prune the bottom --budget % of unprotected prompt tokens or sentences by each policy; report "
        "kept/pruned units, the attention mass kept per step (mean, min) and the overlap of kept sets.",
    )
    add_common(p)
    p.add_argument("--budget", type=float, default=30.0, help="percent of unprotected units to prune (default 30)")
    p.add_argument("--unit", choices=["token", "sentence"], default="token", help="what is pruned (default token)")
    p.add_argument(
        "--policies",
        default=",".join(DEFAULT_POLICIES),
        help=f"comma list of {', '.join(POLICIES)} (default {','.join(DEFAULT_POLICIES)}; hw_*: Halo Weave's own rules)",
    )
    p.add_argument("--sinks", type=int, default=4, help="sink tokens kept by the recent policy (default 4)")
    p.add_argument("--no-protect-system", action="store_true", help="let system-prompt tokens be pruned")
    p.add_argument(
        "--write-prompt",
        metavar="FILE",
        help="write the prompt kept by --policy to FILE, chat-template tokens intact, to rerun the model on",
    )
    p.add_argument(
        "--messages",
        action="store_true",
        help="with --write-prompt: write a JSON list of {role, content}, one per turn, for a chat template",
    )
    p.add_argument("--policy", help="the policy --write-prompt writes (needed when --policies names several)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --write-prompt file")
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..analysis.prune import prune
    from ..store import atomic_path
    from .common import check_output, usage_errors

    policies = [x.strip() for x in args.policies.split(",") if x.strip()]
    with usage_errors():
        if args.messages and not args.write_prompt:
            raise ValueError("--messages says how --write-prompt writes: give --write-prompt FILE too")
        if args.write_prompt:
            check_output(args.write_prompt, args.force)
            if args.policy is None:
                if len(policies) != 1:
                    raise ValueError(
                        f"--write-prompt writes one policy's prompt: name it with --policy (one of {', '.join(policies)})"
                    )
                args.policy = policies[0]
            if args.policy not in policies:
                policies.append(args.policy)
    red, recovery = open_for_analysis(args)
    with usage_errors():
        result = prune(
            red,
            budget=args.budget,
            unit=args.unit,
            policies=policies,
            protect_system=not args.no_protect_system,
            sinks=args.sinks,
            kind=args.kind,
        )
    out = result.to_json()
    if args.write_prompt:
        with usage_errors():
            if args.messages:
                text = json.dumps(result.pruned_messages(args.policy), ensure_ascii=False, indent=1) + "\n"
            else:
                text = result.pruned_prompt(args.policy)
        with atomic_path(args.write_prompt, args.force) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
        out["written"] = {
            "path": args.write_prompt,
            "policy": args.policy,
            "format": "messages" if args.messages else "text",
        }
    return Output(out, printed(lambda: render(out, args)), recovery=recovery)


def render(out: dict, args) -> None:
    print(f"pruning {out['budget']:g}% of unprotected {out['unit']}s ({len(out['protected'])} protected tokens)")
    rows = [
        {
            "policy": k,
            "kept": len(v["kept"]),
            "pruned": len(v["pruned"]),
            "mass_mean": v["mass_retained_mean"],
            "mass_min": v["mass_retained_min"],
            "first_pruned": " ".join(
                f"{u[0]}:{u[1]}" if isinstance(u, list) else str(u) for u in v["pruned_units"][:8]
            ),
        }
        for k, v in out["policies"].items()
    ]
    print(table(rows, ["policy", "kept", "pruned", "mass_mean", "mass_min", "first_pruned"]))
    print("\noverlap of kept sets (Jaccard):")
    for pair, j in out["overlap"].items():
        print(f"  {pair:<24} {j:.3f}")
    if args.write_prompt:
        what = "the messages" if args.messages else "the prompt"
        print(f"\nwrote {what} kept by {args.policy} to {args.write_prompt}")
