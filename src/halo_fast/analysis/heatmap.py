"""Experiment 3 -- the attention heatmap: generation step x prompt position, sentences marked.

One PNG per call. The default picture is the reduced attention of every prompt token
(rows, position 0 at the top) at every kept generation step (columns), sentence
boundaries as thin lines, turn boundaries as thicker ones, and sentence labels
(``turn:sentence``, plus the group name for planted or given groups) on the right.
``sentences=True`` draws each sentence's summed attention over the steps as lines
instead (group members in the group's colour, else the 8 brightest sentences named).

Logit captures are softmaxed per row first (as ``distance`` and ``prune`` do); ``kind``
overrides the detection. The linear colour scale stops at the 99th percentile of the
prompt values, so the BOS attention sink does not wash out the rest; ``log=True``
uses a log scale from the 0.1th percentile of the positive values to the maximum.

matplotlib is optional (``pip install 'halo_fast[plot]'``): without it
:class:`MissingDependency` (an ``ImportError``) says how to install it. The figure
is drawn with the Agg canvas directly (no pyplot, no display, no global backend
change) and written atomically with :func:`halo_fast.store.atomic_path`.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from ..errors import MissingDependency
from ..store import atomic_path, output_beside
from . import matrix, open_reduced, planted_groups, prompt_length, sentence_index, to_probabilities, value_kind

INSTALL_HINT = "pip install 'halo_fast[plot]' (or pip install matplotlib)"
SIZE_INCHES = (12.0, 7.0)
DPI = 100
LINEAR_PERCENTILE = 99.0
LOG_FLOOR_PERCENTILE = 0.1
PALETTE = ("tab:green", "tab:red", "tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
NAMED_LINES = 8  # at most len(PALETTE)
MAX_SENTENCE_LABELS = 60


def require_matplotlib():
    """Import matplotlib or raise :class:`MissingDependency` with the install command."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency(f"drawing needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    return matplotlib


def heatmap(
    source, path=None, *, log=True, sentences=False, force=False, kind=None, groups=None, dpi=DPI, **reduce_options
) -> dict:
    """Draw the heatmap (or with ``sentences`` the per-sentence lines) of ``source`` to the PNG ``path``.

    ``source``: anything :func:`~halo_fast.analysis.open_reduced` takes, with its reduce options.
    ``path``: default ``CAPTURE.heatmap.png`` (``CAPTURE.sentences.png`` with ``sentences``) beside
    the input. An existing ``path`` raises FileExistsError unless ``force``. ``groups``:
    {name: [(turn_id, sentence_id), ...]} marked on the picture (default: a synth capture's planted
    groups). Returns a summary dict: ``path``, ``mode``, ``log``, ``kind``, ``steps``,
    ``prompt_tokens``, ``sentences``, ``width``, ``height`` (pixels), ``vmin``, ``vmax`` (colour
    range; value range of the lines) and ``plot_box`` (the data area: left, top, right, bottom pixels).
    """
    require_matplotlib()
    if path is None:
        origin = getattr(source, "source", source)
        if origin is None:
            raise ValueError("give the PNG path: this reduced input has no source file to put it beside")
        path = output_beside(origin, ".sentences.png" if sentences else ".heatmap.png")
    path = os.fspath(path)
    if os.path.exists(path) and not force:
        raise FileExistsError(f"{path} exists; pass force=True (--force) to overwrite it")
    red = open_reduced(source, **reduce_options)
    data, ctx = matrix(red)
    kind = value_kind(data, kind)
    probs = to_probabilities(data, ctx) if kind == "logits" else data
    n_prompt = prompt_length(red)
    if data.shape[0] == 0 or n_prompt == 0:
        raise ValueError(f"nothing to draw: {data.shape[0]} steps, {n_prompt} prompt tokens")
    sent = sentence_index(red.prompt, n_prompt)
    if groups is None:
        groups = planted_groups(red.metadata)
    member = _group_of(sent, groups)
    steps = np.asarray(red.steps)
    fig = _figure(dpi)
    if sentences:
        ax = _axes(fig, 0.3)
        vmin, vmax = _draw_lines(ax, steps, probs, ctx, sent, member, log)
    else:
        ax = _axes(fig, 2.45)
        vmin, vmax = _draw_heatmap(fig, ax, steps, probs[:, :n_prompt], sent, member, log)
    ax.set_title(_title(red, kind, sentences, log), fontsize=10)

    with atomic_path(path, force) as temporary, warnings.catch_warnings():
        # a character the font lacks (an emoji in a sentence label) is drawn as a box: no warning per glyph
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.savefig(temporary, format="png", dpi=dpi)
    width, height = (int(round(v * dpi)) for v in fig.get_size_inches())
    box = ax.get_position()
    return {
        "path": os.path.abspath(path),
        "mode": "sentences" if sentences else "heatmap",
        "log": bool(log),
        "kind": kind,
        "steps": int(len(steps)),
        "prompt_tokens": int(n_prompt),
        "sentences": len(sent),
        "width": width,
        "height": height,
        "vmin": vmin,
        "vmax": vmax,
        "plot_box": [
            round(box.x0 * width),
            round((1 - box.y1) * height),
            round(box.x1 * width),
            round((1 - box.y0) * height),
        ],
    }


def _figure(dpi):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_INCHES, dpi=dpi)  # fixed margins: a layout engine would double the drawing time
    FigureCanvasAgg(fig)
    return fig


def _axes(fig, right_inches: float):
    """Main axes with fixed margins (inches): room for the axis labels left and below, ``right_inches`` right."""
    width, height = fig.get_size_inches()
    left, bottom, top = 0.85, 0.6, 0.4
    return fig.add_axes((left / width, bottom / height, 1 - (left + right_inches) / width, 1 - (bottom + top) / height))


def _group_of(sent, groups) -> dict[int, str]:
    """Sentence index -> group name; a sentence that is not in the prompt raises ValueError."""
    out = {}
    for name, members in (groups or {}).items():
        for key in members:
            try:
                out[sent.index(key)] = name
            except ValueError as exc:
                raise ValueError(f"group {name!r}: {exc}") from None
    return out


def _group_colours(member: dict) -> dict[str, str]:
    names = list(dict.fromkeys(member.values()))
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _title(red, kind, sentences, log) -> str:
    what = "summed attention per prompt sentence" if sentences else "attention to each prompt token"
    source = os.path.basename(red.source or "") or "capture"
    converted = ", softmax of the logits" if kind == "logits" else ""
    return f"{source}: {what} ({red.op} over {'+'.join(red.over)}{converted}{', log scale' if log else ''})"


def _draw_heatmap(fig, ax, steps, values, sent, member, log):
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    image = np.ascontiguousarray(values.T, dtype=np.float32)  # [P, T]: one row per prompt position
    finite = image[np.isfinite(image)]
    if log:
        positive = finite[finite > 0]
        vmax = float(positive.max()) if len(positive) else 1.0
        vmin = float(np.percentile(positive, LOG_FLOOR_PERCENTILE)) if len(positive) else vmax * 1e-6
        vmin = min(vmin, vmax * 0.999) if vmin > 0 else vmax * 1e-6
        image = np.where(np.isfinite(image), np.maximum(image, vmin), np.nan)
        norm = LogNorm(vmin=vmin, vmax=vmax)
    else:
        vmin = float(min(0.0, finite.min())) if len(finite) else 0.0
        vmax = float(np.percentile(finite, LINEAR_PERCENTILE)) if len(finite) else 1.0
        vmax = vmax if vmax > vmin else vmin + 1.0
        norm = Normalize(vmin=vmin, vmax=vmax)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    shown = ax.imshow(image, aspect="auto", interpolation="nearest", origin="upper", cmap=cmap, norm=norm)
    width, height = fig.get_size_inches()
    box = ax.get_position()
    cax = fig.add_axes((box.x1 + 1.3 / width, box.y0, 0.18 / width, box.height))
    bar = fig.colorbar(
        shown, cax=cax, extend="neither" if log else "max", label="attention" + (" (log scale)" if log else "")
    )
    bar.ax.minorticks_off()
    n_steps = len(steps)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: str(int(steps[int(round(x))])) if 0 <= round(x) < n_steps else "")
    )
    ax.set_xlabel("generation step")
    ax.set_ylabel("prompt position")
    _mark_sentences(ax, sent, member, n_steps)
    return vmin, vmax


def _mark_sentences(ax, sent, member, n_steps):
    labels = sent.labels
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    turns = np.array([sent.keys[s][0] for s in labels])
    turn_change = np.flatnonzero(turns[1:] != turns[:-1]) + 1
    x0, x1 = -0.5, n_steps - 0.5
    if len(change) <= 400:
        ax.hlines(change - 0.5, x0, x1, colors="white", linewidth=0.4, alpha=0.5)
    ax.hlines(turn_change - 0.5, x0, x1, colors="white", linewidth=1.2, alpha=0.9)
    ax.set_xlim(x0, x1)
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(labels)]])
    every = max(1, int(np.ceil(len(starts) / MAX_SENTENCE_LABELS)))
    chosen = list(range(0, len(starts), every))
    right = ax.secondary_yaxis("right")
    right.set_yticks(
        [(starts[i] + ends[i] - 1) / 2 for i in chosen],
        labels=[_sentence_label(sent, labels[starts[i]], member) for i in chosen],
    )
    right.tick_params(labelsize=6 if len(chosen) > 30 else 7, length=2)
    colours = _group_colours(member)
    for tick, i in zip(right.get_yticklabels(), chosen):
        name = member.get(int(labels[starts[i]]))
        if name:
            tick.set_color(colours[name])


LABEL_TEXT = 18  # characters of a sentence's text in its label


def _sentence_label(sent, s, member) -> str:
    """``turn:sentence``, the group it belongs to, and the start of its text (what a reader recognises)."""
    turn, sid = sent.keys[s]
    name = member.get(int(s))
    text = " ".join(str(sent.texts[s]).split())
    if len(text) > LABEL_TEXT:
        text = text[: LABEL_TEXT - 1] + "…"
    return " ".join(part for part in (f"{turn}:{sid}", name, repr(text) if text else "") if part)


def _draw_lines(ax, steps, probs, ctx, sent, member, log):
    from .sentences import sentence_matrices, summarize

    total, _, _ = sentence_matrices(probs, ctx, sent.labels, len(sent))
    mean, _, _ = summarize(total)
    order = np.argsort(-np.nan_to_num(mean, nan=-np.inf), kind="stable")
    colours = _group_colours(member)
    named = {int(s): PALETTE[rank] for rank, s in enumerate(order[:NAMED_LINES])} if not member else {}
    seen = set()
    for s in order[::-1]:  # brightest drawn last, on top
        curve = total[:, s]
        if log:
            curve = np.where(curve > 0, curve, np.nan)
        name = member.get(int(s))
        if name is not None:
            label = name if name not in seen else None
            seen.add(name)
            ax.plot(steps, curve, color=colours[name], linewidth=1.2, label=label)
        elif s in named:
            text = sent.texts[s].replace("\n", " ").strip()
            text = text if len(text) <= 32 else text[:31] + "…"
            ax.plot(steps, curve, color=named[s], linewidth=1.2, label=f"{sent.keys[s][0]}:{sent.keys[s][1]} {text}")
        else:
            ax.plot(steps, curve, color="0.6", linewidth=0.6, alpha=0.6)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("generation step")
    ax.set_ylabel("attention summed over the sentence's tokens" + (" (log scale)" if log else ""))
    handles, labels = ax.get_legend_handles_labels()
    if member:  # legend in the groups' order of appearance
        pairs = sorted(zip(handles, labels), key=lambda p: list(colours).index(p[1]))
        handles, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        handles, labels = handles[::-1], labels[::-1]
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="upper right", title="other sentences: grey", title_fontsize=7)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    finite = total[np.isfinite(total)]
    return (float(finite.min()) if len(finite) else None), (float(finite.max()) if len(finite) else None)
