"""``check``: a data-quality report; exit status 1 when something is wrong."""

from __future__ import annotations

import json
import sys

from .common import warn_recovery


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="data-quality report: row sums, NaN/inf, dead rows, missing or repeated steps (exit 1 if wrong)",
        description="Check a capture token by token: probability rows that do not sum to ~1, NaN and "
        "infinite values, constant or all-zero rows, context lengths that do not grow by one per step, "
        "duplicated or missing steps, repeated prompt positions. Exit status 1 when anything is wrong.",
    )
    p.add_argument("capture", help="capture file")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--tolerance", type=float, default=1e-2, help="allowed |row sum - 1| (default 0.01)")
    p.add_argument("--recover", action="store_true", help="check the complete tokens of a truncated capture")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..quality import check

    report = check(args.capture, recover=args.recover, progress=sys.stderr.isatty(), tolerance=args.tolerance)
    warn_recovery(args.capture, report["recovery"])
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['path']}: {report['tokens']} tokens ({report['tokens_with_attention']} with attention), "
            f"values look like {report['kind']}"
        )
        if report["ok"]:
            print("no problems found")
        for problem in report["problems"]:
            where = problem["steps"] or problem.get("positions", [])
            shown = ", ".join(str(s) for s in where[:12]) + (" ..." if len(where) > 12 else "")
            label = "steps" if problem["steps"] else "positions"
            print(f"PROBLEM {problem['problem']}: {problem['description']}: {problem['count']} ({label} {shown})")
    return 0 if report["ok"] else 1
