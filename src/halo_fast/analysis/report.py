"""``report``: one Markdown file answering the guide's five questions, with the analyses' tables and the heatmap.

The capture is reduced once; the existing analyses then run on that one matrix:
:func:`~.sentences.sentence_attention` (question 1), :func:`~.decay.decay_analysis` (2-4),
:func:`~.distance.distance_analysis` (5), :func:`~.prune.prune` (experiment 2),
:func:`~.stats.step_stats` and :func:`~.heatmap.heatmap` (experiment 3); the eviction replay
(:mod:`.report_eviction`) reads the capture itself again. Logit captures are
softmaxed per row for everything except the stats and question 3, which look at the raw logits.

How the short answers are read from the numbers (documented in docs/analysis.md):

1. bright: the sentences with the most summed attention in the last quarter of the steps,
   with the share of their peak they keep there (system sentences aside when there are others:
   they are never pruned, and the BOS attention sink is usually one of them);
2. fading: a sentence fades when its fitted half-life is shorter than the capture's span of
   steps (it loses more than half) with r2 >= 0.5; the fastest such sentences and group are named;
3. negative logits as decay: only a logit capture can tell; the share of prompt tokens whose raw
   logit falls, next to the share whose softmaxed attention fades;
4. the ``decay_rate`` recommended for ``rule`` (default ``hw_frontend``) by :mod:`.rule_decay`;
5. distance weighting is called for when the last ``window`` tokens get more than
   :data:`LOCAL_RATIO_NEEDED` times the share a uniform spread would give them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from urllib.parse import quote

import numpy as np

from ..store import atomic_path, output_beside
from . import matrix, open_reduced, to_probabilities, value_kind
from .report_eviction import REPORT_BUDGETS, evict_image_beside, eviction_part, eviction_section
from .text import fmt

LOCAL_RATIO_NEEDED = 2.0
FADING_MIN_R2 = 0.5
BRIGHT_LISTED = 5
TABLE_ROWS = 40


def image_beside(report_path) -> str:
    """``out/report.md`` -> ``out/report.heatmap.png``."""
    return os.path.splitext(os.fspath(report_path))[0] + ".heatmap.png"


def report(
    source,
    path=None,
    *,
    force=False,
    log=True,
    budget=30.0,
    unit="sentence",
    groups=None,
    kind=None,
    rule=None,
    params=None,
    evict_budgets=REPORT_BUDGETS,
    **reduce_options,
) -> dict:
    """Write the Markdown report of ``source`` to ``path`` (default ``CAPTURE.report.md`` beside the input)
    and its heatmap to :func:`image_beside` ``(path)``; return a JSON-ready summary (paths and answers).

    Existing outputs raise FileExistsError unless ``force``. Without matplotlib the report is still
    written, with a one-line note instead of the image (``summary["heatmap"]`` is None).
    ``rule`` / ``params``: the scoring rule the answers are for (the recommended decay rate; default
    ``hw_frontend``, Halo Weave's front end), which also joins the pruning policies compared.
    ``evict_budgets``: the eviction replay's budgets (its section and ``REPORT.evict.png``); empty to
    leave it out. It reads the capture again (twice: ``oracle_future``'s totals), so it needs the
    capture, not a reduce output.
    """
    from .decay import decay_analysis
    from .distance import distance_analysis
    from .heatmap import MissingDependency, heatmap, require_matplotlib
    from .prune import prune
    from .sentences import sentence_attention
    from .stats import step_stats

    started = time.perf_counter()
    if path is None:
        origin = getattr(source, "source", source)
        if origin is None:
            raise ValueError("give the report path: this reduced input has no source file to put it beside")
        path = output_beside(origin, ".report.md")
    path = os.fspath(path)
    image = image_beside(path)
    evict_image = evict_image_beside(path)
    for target in (path, image, evict_image) if evict_budgets else (path, image):
        if os.path.exists(target) and not force:
            raise FileExistsError(f"{target} exists; pass force=True (--force) to overwrite it")
    red = open_reduced(source, **reduce_options)
    data, ctx = matrix(red)
    kind = value_kind(data, kind)
    probs = red if kind == "probabilities" else dataclasses.replace(red, data=to_probabilities(data, ctx))
    once = {"check": False}  # open_reduced above warned about the data already: the parts need not repeat it
    replays: dict = {}  # a Halo Weave rule's own aggregation, read once for decay and prune
    parts = {
        "red": red,
        "kind": kind,
        "sentences": sentence_attention(probs, groups=groups, kind="probabilities", **once),
        "decay": decay_analysis(
            probs,
            groups=groups,
            kind="probabilities",
            rule=rule,
            params=params,
            rule_input=red,
            replay_cache=replays,
            **once,
        ),
        "raw_decay": decay_analysis(red, groups=groups, kind="logits", **once) if kind == "logits" else None,
        "distance": distance_analysis(probs, kind="probabilities", **once),
        "prune": prune(
            red,
            budget=budget,
            unit=unit,
            kind=kind,
            policies=_policies(rule),
            params={rule: params} if rule and params else None,
            reduce_options=once,
            replay_cache=replays,
        ),
        "stats": step_stats(red, kind=kind, **once),
    }
    parts["evict"], evict_note = eviction_part(red, evict_budgets, kind)
    parts["groups"] = {name: [tuple(k) for k in g["sentences"]] for name, g in parts["sentences"].groups.items()}
    answers = _answers(parts)
    note = note_md = None
    if not len(red.steps) or not parts["sentences"].keys:
        note = "no heatmap: the capture has no steps or no prompt tokens to draw"
        note_md = "_No heatmap: the capture has no steps or no prompt tokens to draw._"
    else:
        try:
            require_matplotlib()
        except MissingDependency as exc:
            note = f"no heatmap: {exc}"
            note_md = "_No heatmap: matplotlib is not installed (`pip install 'halo_fast[plot]'`)._"
    draw_evict = parts["evict"] is not None and note_md is None  # matplotlib is there
    parts["evict_lines"] = eviction_section(
        parts["evict"], evict_note, os.path.basename(evict_image) if draw_evict else None, _table
    )
    text = _markdown(parts, answers, None if note else os.path.basename(image), note_md)
    # Both files are made as temporaries and renamed, one right after the other, only once
    # both are written: a failure while writing either leaves both previous files as they were.
    with contextlib.ExitStack() as outputs:
        if note is None:
            heatmap(
                red,
                outputs.enter_context(atomic_path(image, force)),
                log=log,
                force=True,
                kind=kind,
                groups=parts["groups"],
                **once,
            )
        if draw_evict:
            parts["evict"].plot(outputs.enter_context(atomic_path(evict_image, force)), force=True)
        with open(outputs.enter_context(atomic_path(path, force)), "w", encoding="utf-8") as f:
            f.write(text)
    return {
        "report": os.path.abspath(path),
        "heatmap": None if note else os.path.abspath(image),
        "heatmap_note": note,
        "source": red.source,
        "kind": kind,
        "steps": int(len(red.steps)),
        "prompt_tokens": _prompt_tokens(parts),
        "sentences": len(parts["sentences"].keys),
        "answers": answers,
        "eviction": parts["evict"].table() if parts["evict"] is not None else None,
        "eviction_note": evict_note,
        "evict_plot": os.path.abspath(evict_image) if draw_evict else None,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _policies(rule) -> tuple:
    from .prune import DEFAULT_POLICIES

    if rule is None or rule in DEFAULT_POLICIES:
        return DEFAULT_POLICIES
    return DEFAULT_POLICIES + (rule,)


def _prompt_tokens(parts) -> int:
    return int(np.sum(parts["sentences"].n_tokens))


# --------------------------------------------------------------------------- answers


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _key(k) -> str:
    return f"{k[0]}:{k[1]}"


def _answers(parts) -> dict:
    s, d, dist = parts["sentences"], parts["decay"], parts["distance"]
    steps = np.asarray(s.steps)
    span = float(steps[-1] - steps[0]) if len(steps) > 1 else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        retention = s.score_final / s.score_peak
    others = [i for i, role in enumerate(s.roles) if role != "system"]
    candidates = np.array(others or range(len(s.keys)), dtype=np.int64)
    bright = candidates[np.argsort(-np.nan_to_num(s.score_final[candidates], nan=-np.inf), kind="stable")]
    bright = bright[:BRIGHT_LISTED]
    rate, half, r2 = d.sentences.rate, d.sentences.half_life, d.sentences.r2
    fading = np.flatnonzero(np.isfinite(half) & (half < span) & (np.nan_to_num(r2) >= FADING_MIN_R2))
    fastest = fading[np.argsort(-rate[fading], kind="stable")][:3]
    group_rates = {k: g["rate"] for k, g in d.groups.items() if math.isfinite(g["rate"])}
    raw = parts["raw_decay"]
    rec = d.recommendation
    result = {
        "bright_sentences": [
            {
                "sentence": _key(s.keys[i]),
                "role": s.roles[i],
                "text": s.texts[i],
                "final": _num(s.score_final[i]),
                "retention": _num(retention[i]),
            }
            for i in bright
        ],
        "fading_sentences": [_key(s.keys[i]) for i in fading],
        "fading_token_share": _num(d.negative_trend_share),
        "fastest_fading": [
            {
                "sentence": _key(s.keys[i]),
                "text": s.texts[i],
                "rate": _num(rate[i]),
                "half_life": _num(half[i]),
                "r2": _num(r2[i]),
            }
            for i in fastest
        ],
        "fastest_fading_group": max(group_rates, key=group_rates.get) if group_rates else None,
        "negative_logits": {
            "answerable": raw is not None,
            "raw_falling_share": _num(raw.negative_trend_share) if raw is not None else None,
            "softmax_fading_share": _num(d.negative_trend_share),
        },
        "rule": rec.get("rule"),
        "recommended_decay_rate": _num(d.recommended_decay_rate),
        "decay_rate_units": rec.get("units"),
        "rule_decay": _num(rec.get("rule_decay")),
        "median_rate": _num(rec.get("median_rate")),
        "median_half_life": _num(rec.get("median_half_life")),
        "local_share": _num(dist.local_share),
        "uniform_local_share": _num(dist.uniform_local_share),
        "local_ratio": _num(dist.local_ratio),
        "distance_weighting_needed": bool(math.isfinite(dist.local_ratio) and dist.local_ratio > LOCAL_RATIO_NEEDED),
        "pruning": _pruning(parts),
    }
    return result


def _pruning(parts) -> dict:
    p, groups = parts["prune"], parts["groups"]
    out = {"unit": p.unit, "budget": p.budget, "policies": {}}
    sent = parts["sentences"]
    for policy in p.kept:
        summary = p.summary(policy)
        if p.unit == "sentence":
            pruned = {tuple(u) for u in summary["pruned_units"]}
        else:  # a sentence counts as pruned when all its tokens are
            labels = _labels(parts)
            kept = np.zeros(len(sent.keys), dtype=bool)
            np.logical_or.at(kept, labels, p.kept[policy])
            pruned = {sent.keys[i] for i in np.flatnonzero(~kept)}
        out["policies"][policy] = {
            "mass_retained_mean": _num(summary["mass_retained_mean"]),
            "mass_retained_min": _num(summary["mass_retained_min"]),
            "pruned_units": len(summary["pruned_units"]),
            "pruned_groups": {g: sum(1 for k in members if tuple(k) in pruned) for g, members in groups.items()},
        }
    return out


def _labels(parts) -> np.ndarray:
    from . import sentence_index

    red = parts["red"]
    return sentence_index(red.prompt, len(parts["prune"].positions)).labels


# --------------------------------------------------------------------------- Markdown


def _cell(text, limit=60) -> str:
    text = str(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    out = "".join("\\" + c if c in "\\`*_[]<>|~#" else c for c in text)
    return out.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")


def _table(rows: list[dict], columns: list[str], headers: list[str] | None = None) -> str:
    headers = headers or columns
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        cells = [row.get(c) for c in columns]
        lines.append("| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in cells) + " |")
    return "\n".join(lines)


def _pct(x) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.0%}"


def _ranges(values) -> str:
    values = sorted(int(v) for v in values)
    if not values:
        return "all"
    spans, start = [], values[0]
    for a, b in zip(values, values[1:] + [None]):
        if b != a + 1:
            spans.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ",".join(spans)


def _group_of(parts) -> dict:
    return {tuple(k): name for name, members in parts["groups"].items() for k in members}


def _markdown(parts, answers, image, note) -> str:
    red, kind, s = parts["red"], parts["kind"], parts["sentences"]
    steps = np.asarray(red.steps)
    from .._version import __version__

    name = os.path.basename(red.source or "") or "capture"
    step_text = f"{len(steps)} steps ({steps[0]}..{steps[-1]})" if len(steps) else "no steps"
    selection = f"layers {_ranges(red.layers)}, heads {_ranges(red.heads)}"
    sampling = (f", every {red.every}th step" if red.every != 1 else "") + (
        f", steps {':'.join('' if t is None else str(t) for t in red.tokens)}" if red.tokens else ""
    )
    out = [
        f"# Attention report: {_cell(name, 200)}",
        "",
        f"{step_text}; prompt of {_prompt_tokens(parts)} tokens in {len(s.keys)} sentences; values: {kind}"
        + (" (softmaxed per row for the analyses; raw logits for the stats and question 3)" if kind == "logits" else "")
        + f". Attention = {red.op} over {' and '.join(red.over)} ({selection}{sampling}). "
        f"The decay rate answers are for the rule {parts['decay'].recommendation.get('rule')}. "
        f"Written by halo_fast {__version__}; formulas in docs/analysis.md.",
        "",
    ]
    out += _answer_section(parts, answers)
    out += ["## Heatmap (experiment 3)", ""]
    if image:
        out += [
            f"![attention heatmap: generation step x prompt position]({quote(image)})",
            "",
            "Generation step across, prompt position down; thin lines between sentences, thick lines "
            "between turns; sentence labels (turn:sentence) on the right.",
            "",
        ]
    else:
        out += [note, ""]
    out += _sentence_section(parts) + _decay_section(parts) + _distance_section(parts)
    out += _prune_section(parts, answers) + parts.get("evict_lines", []) + _stats_section(parts)
    return "\n".join(out).rstrip() + "\n"


def _answer_section(parts, a) -> list[str]:
    s, kind = parts["sentences"], parts["kind"]
    steps = np.asarray(s.steps)
    span = int(steps[-1] - steps[0]) if len(steps) > 1 else 0
    bright = "; ".join(
        f"`{b['sentence']}` “{_cell(b['text'], 40)}” {fmt(b['final'], 3)} ({_pct(b['retention'])} of its peak)"
        for b in a["bright_sentences"][:3]
    )
    system = (
        " (the system prompt aside: it is never pruned)"
        if any(r == "system" for r in s.roles) and any(r != "system" for r in s.roles)
        else ""
    )
    groups = s.groups
    group_line = ""
    if groups:
        group_line = (
            " Groups at the end: "
            + ", ".join(
                f"{k} {fmt(g['final'], 3)} ({_pct(g['final'] / g['peak'] if g['peak'] else float('nan'))} of peak)"
                for k, g in sorted(groups.items(), key=lambda kv: -np.nan_to_num(kv[1]["final"], nan=-np.inf))
            )
            + "."
        )
    n_fading = len(a["fading_sentences"])
    fastest = ", ".join(
        f"`{f['sentence']}` “{_cell(f['text'], 40)}” (half-life {fmt(f['half_life'], 3)} steps)"
        for f in a["fastest_fading"]
    )
    fade = (
        f"**{'Yes' if n_fading else 'No'}.** {n_fading} of {len(s.keys)} sentences lose more than half their "
        f"attention within the {span} steps (fitted half-life shorter than that, r2 ≥ {FADING_MIN_R2})"
        + (f"; fastest: {fastest}" if fastest else "")
        + f". {_pct(a['fading_token_share'])} of prompt tokens "
        "(BOS excluded) fade at all."
    )
    group = a["fastest_fading_group"]
    if group:
        g = parts["decay"].groups[group]
        fade += (
            f" Of the groups, **{group}** fades fastest (rate {fmt(g['rate'], 3)}/step, half-life "
            f"{fmt(g['half_life'], 3)} steps)."
        )
    neg = a["negative_logits"]
    if neg["answerable"]:
        share = neg["raw_falling_share"]
        verdict = (
            "Mostly"
            if share is not None and share >= 2 / 3
            else "Partly"
            if share is not None and share >= 1 / 3
            else "No"
        )
        logits = (
            f"**{verdict}.** The raw logit of {_pct(share)} of prompt tokens falls over the steps (linear "
            f"trend, BOS excluded); after the softmax {_pct(neg['softmax_fading_share'])} fade."
        )
    else:
        logits = (
            f"**Not from this capture:** it holds {kind} (after the softmax), not logits; capture raw logits "
            f"to answer. The attention itself fades for {_pct(neg['softmax_fading_share'])} of prompt tokens."
        )
    rec = parts["decay"].recommendation
    rate = a["recommended_decay_rate"]
    own = rec.get("rule_decay")
    decay = (
        f"**decay_rate ≈ {fmt(rate, 3)}** {rec.get('units')} for {rec.get('rule')}: median fitted fade "
        f"{fmt(rec.get('median_rate'), 3)}/step (half-life {fmt(rec.get('median_half_life'), 3)} steps, "
        f"×{fmt(rec.get('per_step_factor'), 5)} per step) × the median increment it gives a prompt token per "
        f"step, {fmt(rec.get('median_increment'), 3)}; "
        + (f"the rule itself subtracts {fmt(own)} per step." if own else "the rule has no decay of its own.")
        + " `python -m halo_fast sweep` tests alternatives for halo_fast's cumulative score."
        if rate is not None
        else f"**No estimate** for {rec.get('rule')}: no prompt token could be fitted."
    )
    dist = parts["distance"]
    needed = a["distance_weighting_needed"]
    distance = (
        f"**{'Yes' if needed else 'No'}.** The last {dist.local_window} tokens get "
        f"{_pct(a['local_share'])} of each step's attention, ×{fmt(a['local_ratio'], 3)} the "
        f"{_pct(a['uniform_local_share'])} a uniform spread would give them (weighting is called for above "
        f"×{LOCAL_RATIO_NEEDED:g})."
    )
    return [
        "## Answers",
        "",
        f"1. **Which prompt sentences stay bright?** Brightest in the last quarter of the steps{system}: {bright}."
        + group_line,
        f"2. **Does irrelevant context fade naturally?** {fade}",
        f"3. **Do negative logits act as natural decay?** {logits}",
        f"4. **What is the optimal decay rate?** {decay}",
        f"5. **Is distance weighting needed?** {distance}",
        "",
    ]


def _limit(rows: list[dict], columns: list[str]) -> list[dict]:
    if len(rows) <= TABLE_ROWS:
        return rows
    head, tail = rows[: TABLE_ROWS - 10], rows[-10:]
    gap = {c: "…" for c in columns}
    return head + [gap] + tail


def _sentence_section(parts) -> list[str]:
    s, member = parts["sentences"], _group_of(parts)
    rows = []
    for rank, i in enumerate(s.ranking, start=1):
        peak = s.score_peak[i]
        rows.append(
            {
                "rank": rank,
                "sentence": _key(s.keys[i]),
                "role": _cell(s.roles[i]),
                "group": member.get(tuple(s.keys[i]), ""),
                "tokens": int(s.n_tokens[i]),
                "mean": s.score_mean[i],
                "peak": peak,
                "final": s.score_final[i],
                "kept": _pct(s.score_final[i] / peak if peak else float("nan")),
                "text": _cell(s.texts[i]),
            }
        )
    columns = (
        ["rank", "sentence", "role"]
        + (["group"] if member else [])
        + ["tokens", "mean", "peak", "final", "kept", "text"]
    )
    out = [
        "## 1. Sentences",
        "",
        "Attention summed over each sentence's tokens per step: mean over the steps, peak, mean over the last "
        "quarter (`final`) and `kept` = final / peak; brightest (by mean) first.",
        "",
        _table(_limit(rows, columns), columns),
        "",
    ]
    if s.groups:
        grows = [
            {
                "group": k,
                "sentences": " ".join(_key(m) for m in g["sentences"]),
                "mean": g["mean"],
                "peak": g["peak"],
                "final": g["final"],
            }
            for k, g in s.groups.items()
        ]
        out += ["Groups (summed attention):", "", _table(grows, ["group", "sentences", "mean", "peak", "final"]), ""]
    return out


def _decay_section(parts) -> list[str]:
    d, s, member = parts["decay"], parts["sentences"], _group_of(parts)
    out = [
        "## 2-4. Decay",
        "",
        "Fits of `a·exp(−rate·step)` (weighted log-linear least squares); positive rate = fading; r2 in log space.",
        "",
    ]
    if d.groups:
        rows = [dict(g, group=k) for k, g in d.groups.items()]
        columns = ["group", "rate", "half_life", "r2", "sentence_rate_median"] + (
            ["planted_rate", "relative_error"] if any("planted_rate" in r for r in rows) else []
        )
        out += [_table(rows, columns), ""]
    out += [
        _table(
            [dict(r, role=_cell(k)) for k, r in d.by_role.items()], ["role", "tokens", "rate_median", "fading_share"]
        ),
        "",
    ]
    order = np.argsort(-np.nan_to_num(d.sentences.rate, nan=-np.inf), kind="stable")[:10]
    rows = [
        {
            "sentence": _key(d.sentence_keys[i]),
            "group": member.get(tuple(d.sentence_keys[i]), ""),
            "rate": d.sentences.rate[i],
            "half_life": d.sentences.half_life[i],
            "r2": d.sentences.r2[i],
            "text": _cell(s.texts[i]),
        }
        for i in order
    ]
    columns = ["sentence"] + (["group"] if member else []) + ["rate", "half_life", "r2", "text"]
    out += ["Fastest-fading sentences:", "", _table(rows, columns), ""]
    raw = parts["raw_decay"]
    if raw is not None:
        out += [
            f"Raw logits: the linear trend falls for {_pct(raw.negative_trend_share)} of prompt tokens (BOS "
            "excluded); by role, median slope in logit units per step:",
            "",
            _table(
                [dict(r, role=_cell(k)) for k, r in raw.by_role.items()],
                ["role", "tokens", "rate_median", "fading_share"],
            ),
            "",
        ]
    rec = d.recommendation
    out += [
        f"Recommended decay_rate for {rec.get('rule')} {fmt(d.recommended_decay_rate, 4)} {rec.get('units', '')}: "
        f"{rec.get('derivation', '')} "
        f"({rec.get('tokens_fitted', 0)} tokens fitted).",
        "",
    ]
    return out


def _distance_section(parts) -> list[str]:
    dist = parts["distance"]
    marks = [d for d in (1, 2, 3, 5, 10, 15, 20, 21, 30, 50, 100, 200, 500, 1000, 2000, 5000) if d <= len(dist.profile)]
    rows = [{"distance": d, "mean attention": dist.profile[d - 1], "steps": int(dist.counts[d - 1])} for d in marks]
    return [
        "## 5. Distance from the generation head",
        "",
        f"Local share (last {dist.local_window} tokens) {fmt(dist.local_share)}, uniform spread "
        f"{fmt(dist.uniform_local_share)} (×{fmt(dist.local_ratio, 3)}); prompt share {fmt(dist.prompt_share)}. "
        "Mean attention at distance d (1 = the newest context token):",
        "",
        _table(rows, ["distance", "mean attention", "steps"]),
        "",
    ]


def _prune_section(parts, answers) -> list[str]:
    p = parts["prune"]
    info = answers["pruning"]["policies"]
    member = _group_of(parts)

    def unit(u):
        if isinstance(u, list):
            g = member.get(tuple(u))
            return _key(u) + (f" ({g})" if g else "")
        return str(u)

    rows = []
    for policy in p.kept:
        summary = p.summary(policy)
        units = summary["pruned_units"]
        rows.append(
            {
                "policy": policy,
                "kept": int(p.kept[policy].sum()),
                "pruned": len(summary["pruned"]),
                "mass_mean": summary["mass_retained_mean"],
                "mass_min": summary["mass_retained_min"],
                "groups": ", ".join(
                    f"{g} {n}/{len(parts['groups'][g])}" for g, n in info[policy]["pruned_groups"].items()
                ),
                "pruned_units": _cell(" ".join(unit(u) for u in units[:12]) + (" …" if len(units) > 12 else ""), 200),
            }
        )
    columns = (
        ["policy", "kept", "pruned", "mass_mean", "mass_min"]
        + (["groups"] if parts["groups"] else [])
        + ["pruned_units"]
    )
    return [
        "## Pruning simulation (experiment 2)",
        "",
        f"{p.budget:g}% of the unprotected {p.unit}s pruned by each policy (BOS and system tokens protected); "
        "`kept` / `pruned` in tokens; mass = share of each step's prompt attention on kept tokens"
        + ("; `groups` = sentences of each group pruned" if parts["groups"] else "")
        + ".",
        "",
        _table(rows, columns),
        "",
    ]


def _stats_section(parts) -> list[str]:
    st = parts["stats"]
    n = len(st.steps)
    pick = np.unique(np.linspace(0, n - 1, min(n, 7)).round().astype(int)) if n else np.zeros(0, int)
    rows = [st.rows()[i] for i in pick] if n else []
    sums = st.sum[st.valid > 0]
    return [
        "## Stats",
        "",
        f"Values: {st.kind}; rows sum to 1: {'yes' if st.rows_sum_to_one else 'no'} (row sums "
        f"{fmt(float(sums.min()) if len(sums) else None)}..{fmt(float(sums.max()) if len(sums) else None)}); "
        f"NaN inside contexts: {int(st.nan_inside.sum())}; values beyond contexts: {int(st.values_beyond.sum())}. "
        "Sampled steps:",
        "",
        _table(rows, ["step", "context_length", "min", "max", "mean", "sum", "nan"]),
        "",
    ]
