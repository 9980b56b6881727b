"""The report's section "What eviction would keep": the eviction replay (:mod:`.evict`) of every
policy on the capture the report reads, its table and its picture."""

from __future__ import annotations

import os

#: The budgets the report replays: shares of the prompt, so that they suit any capture.
REPORT_BUDGETS = ("10%", "25%", "50%")
COLUMNS = ["policy", "budget", "level", "cached_mean", "mass_mean", "mass_min", "recall_mean", "share_of_oracle"]


def evict_image_beside(report_path) -> str:
    """``out/report.md`` -> ``out/report.evict.png``."""
    return os.path.splitext(os.fspath(report_path))[0] + ".evict.png"


def eviction_part(red, budgets, kind: str | None):
    """``(EvictResult or None, note)``: the replay on ``red``'s capture with its layers, heads and steps;
    None with the reason when there is no capture to replay (a reduce output), ``budgets`` is empty or
    the capture cannot be replayed (one step with attention, a shrinking context, shares of a prompt
    it does not have): the rest of the report stands without it."""
    from ..errors import CaptureError
    from ..store import is_reduce_output
    from .evict import POLICIES, evict

    if not budgets:
        return None, "not run (no budgets asked for)"
    origin = red.source
    if not origin or not os.path.exists(origin) or is_reduce_output(origin):
        return None, "needs the capture itself: a reduce output holds no per-head attention to replay"
    try:
        result = evict(
            origin,
            POLICIES,
            budgets,
            layers=red.layers,
            heads=red.heads,
            every=red.every,
            tokens=red.tokens,
            kind=kind,
            recover=bool(red.extra.get("recovery")),
        )
    except (CaptureError, ValueError) as exc:
        message = str(exc)
        if message.startswith(f"{origin}: "):  # a CaptureError names the file: the report already does
            message = message[len(origin) + 2 :]
        return None, f"not possible on this capture: {message}"
    return result, None


def eviction_section(result, note: str | None, image: str | None, table) -> list[str]:
    """The Markdown lines; ``table(rows, columns)`` renders a table as the rest of the report does."""
    out = ["## What eviction would keep", ""]
    if result is None:
        return out + [f"_Eviction replay {note}._", ""]
    out += [
        f"Every KV-cache eviction policy replayed causally on each (layer, head) of the capture over "
        f"{len(result.steps)} steps, at budgets {_budgets(result.rows)}. `mass` = share of each step's attention the full-cache run put on the positions the "
        "policy keeps -- a proxy: a real eviction changes later attention. `share_of_oracle` = mass over "
        "`oracle_future`'s (evicts the least attention still to come); `oracle_step` (each step's own top "
        "budget) bounds every policy whose cache holds at most the budget; `cached_mean` above the budget: "
        "protected positions (new ones, the system prompt, whole sentences) did not fit. Semantics in "
        "docs/analysis.md (evict).",
        "",
        table(result.table(), COLUMNS),
        "",
    ]
    if image:
        from urllib.parse import quote

        out += [f"![attention mass retained against budget, one line per policy]({quote(image)})", ""]
    return out


def _budgets(rows) -> str:
    """``10% (6 tokens), 64 (64 tokens)``."""
    seen = dict.fromkeys((r["budget_spec"], r["budget"]) for r in rows)
    return ", ".join(spec if spec == str(tokens) else f"{spec} ({tokens} tokens)" for spec, tokens in seen)
