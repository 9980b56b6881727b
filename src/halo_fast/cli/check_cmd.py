"""``check``: a data-quality report; exit status 1 when something is wrong."""

from __future__ import annotations

from ..quality import sampling_text
from .common import Output, json_option, source_kwargs, source_options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="data-quality report: row sums, NaN/inf, dead rows, missing or repeated steps (exit 1 if wrong)",
        description="Check a capture token by token: probability rows that do not sum to ~1, NaN and "
        "infinite values, constant or all-zero rows, context lengths that do not grow by one per step, "
        "duplicated or missing steps, repeated prompt positions. Exit status 1 when anything is wrong.",
    )
    source_options(p, name="capture")
    p.add_argument("--tolerance", type=float, default=1e-2, help="allowed |row sum - 1| (default 0.01)")
    json_option(p)
    p.set_defaults(run=run)


def run(args) -> Output:
    from ..quality import check

    report = check(args.capture, tolerance=args.tolerance, **source_kwargs(args))
    return Output(
        report, lambda: render(report), code=0 if report["ok"] else 1, recovery=(args.capture, report["recovery"])
    )


def render(report: dict) -> str:
    lines = [
        f"{report['path']}: {report['tokens']} tokens ({report['tokens_with_attention']} with attention), "
        f"values look like {report['kind']}"
    ]
    if report.get("sampling"):
        lines.append(sampling_text(report["sampling"]))
    if report["ok"]:
        lines.append("no problems found")
    for problem in report["problems"]:
        where = problem["steps"] or problem.get("positions", [])
        shown = ", ".join(str(s) for s in where[:12]) + (" ..." if len(where) > 12 else "")
        label = "steps" if problem["steps"] else "positions"
        lines.append(f"PROBLEM {problem['problem']}: {problem['description']}: {problem['count']} ({label} {shown})")
    return "\n".join(lines)
