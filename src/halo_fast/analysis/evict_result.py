"""What an eviction replay found (``analysis.evict``): a row per policy and budget, as JSON, a
pandas table, a CSV file and a picture of mass retained against budget."""

from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

#: The columns of the table (and of the CSV, before the per-layer ones).
COLUMNS = (
    "policy",
    "budget",
    "budget_spec",
    "level",
    "cached_mean",
    "mass_mean",
    "mass_min",
    "recall_mean",
    "share_of_oracle",
)


@dataclass
class EvictResult:
    """``rows``: one dict per policy and budget -- ``policy``, ``budget`` (tokens per cache, at most
    the longest context; pyramidkv: the mean over layers it was asked for), ``budget_spec`` (as given: ``64``, ``10%``), ``level`` (what
    one cache serves: head, layer, model, sentence), ``cached_mean`` (positions a cache held, mean over
    scored steps and caches: above the budget where new or protected positions, or whole sentences,
    do not fit), ``mass_mean`` (over scored steps and rows),
    ``mass_min`` (the worst step's mean over rows), ``recall_mean`` (top-``top_k`` recall),
    ``share_of_oracle`` (``mass_mean`` over ``oracle_future``'s at the same budget, when it ran),
    ``params`` and ``layers`` (per replayed layer: its budget, ``mass_mean``, ``mass_min``).
    ``recovery``: what a truncated capture read with ``recover=True`` left out. ``trace`` (with ``trace=True``): ``mass`` and ``recall``, float64 ``[steps, instances, rows]``
    (instances in the order of ``rows``; rows layer-major over the replayed layers and heads)."""

    capture: str
    kind: str
    unit: str
    first_step: int
    steps: list[int]
    layers: list[int]
    heads: list[int]
    top_k: int
    seed: int
    rows: list[dict]
    trace: dict | None = field(default=None, repr=False)
    recovery: dict | None = None  # what a truncated capture gave up (recover=True)

    def to_json(self) -> dict:
        return {
            "capture": self.capture,
            "kind": self.kind,
            "unit": self.unit,
            "first_step": self.first_step,
            "steps_scored": len(self.steps),
            "layers": self.layers,
            "heads": self.heads,
            "top_k": self.top_k,
            "seed": self.seed,
            "results": self.rows,
            "recovery": self.recovery,
        }

    def table(self) -> list[dict]:
        """The rows without their nested parts (what the text table and the CSV show first)."""
        return [{c: r[c] for c in COLUMNS} for r in self.rows]

    def to_pandas(self):
        """The table as a pandas DataFrame (pandas is an optional extra)."""
        from ..errors import MissingDependency

        try:
            import pandas as pd
        except ImportError:
            raise MissingDependency("to_pandas needs pandas: pip install 'halo_fast[pandas]'") from None
        return pd.DataFrame(self.table(), columns=list(COLUMNS))

    def write_csv(self, path: str | os.PathLike[str], force: bool = False) -> str:
        """The table and, per replayed layer, ``layer{L}_mass_mean`` / ``layer{L}_mass_min``, written atomically."""
        from ..store import atomic_path

        extra = [f"layer{n}_{m}" for n in self.layers for m in ("mass_mean", "mass_min")]
        with atomic_path(path, force) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                out = csv.writer(f)
                out.writerow(list(COLUMNS) + extra)
                for r in self.rows:
                    per_layer = [x[m] for x in r["layers"] for m in ("mass_mean", "mass_min")]
                    out.writerow(
                        ["" if r[c] is None else r[c] for c in COLUMNS] + ["" if v is None else v for v in per_layer]
                    )
        return os.path.abspath(path)

    def plot(self, path: str | os.PathLike[str], force: bool = False, dpi: int = 110) -> str:
        """A PNG of mean mass retained against budget, one line per policy, the oracles dashed."""
        from ..store import atomic_path
        from .heatmap import PALETTE, require_matplotlib

        require_matplotlib()
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.5, 4.8), dpi=dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.1, 0.12, 0.62, 0.78))
        policies = list(dict.fromkeys(r["policy"] for r in self.rows))
        for n, policy in enumerate(policies):
            mine = sorted((r for r in self.rows if r["policy"] == policy), key=lambda r: r["budget"])
            x = [r["budget"] for r in mine]
            y = [np.nan if r["mass_mean"] is None else r["mass_mean"] for r in mine]
            oracle = policy.startswith("oracle")
            ax.plot(
                x,
                y,
                linestyle="--" if oracle else "-",
                marker="o",
                color="black" if policy == "oracle_step" else ("grey" if oracle else PALETTE[n % len(PALETTE)]),
                label=policy,
            )
        ax.set_xscale("log", base=2)
        budgets = sorted({r["budget"] for r in self.rows})
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.set_xlabel("budget (tokens per cache)")
        ax.set_ylabel("attention mass retained (mean)")
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.set_title(f"eviction replay: {os.path.basename(self.capture)} ({len(self.steps)} steps)", fontsize=10)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
        with atomic_path(path, force) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
        return os.path.abspath(path)


def _number(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def summarize(replay) -> EvictResult:
    """The :class:`EvictResult` of a finished :class:`~.evict.Replay`."""
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an instance with no scored row: None
        for j, inst in enumerate(replay.instances):
            per_step = replay.step_mass[:, j]
            layer_mass = replay.step_layer_mass[:, j, :]
            layer_budget = replay.layer_budgets(j)
            rows.append(
                {
                    "policy": inst.policy,
                    "budget": inst.budget,
                    "budget_spec": inst.spec,
                    "level": inst.level,
                    "cached_mean": _number(np.nanmean(replay.step_cached[:, j])),
                    "mass_mean": _number(np.nanmean(per_step)),
                    "mass_min": _number(np.nanmin(per_step)) if np.isfinite(per_step).any() else None,
                    "recall_mean": _number(np.nanmean(replay.step_recall[:, j])),
                    "share_of_oracle": None,
                    "params": inst.params(),
                    "layers": [
                        {
                            "layer": int(layer),
                            "budget": int(layer_budget[n]),
                            "mass_mean": _number(np.nanmean(layer_mass[:, n])),
                            "mass_min": _number(np.nanmin(layer_mass[:, n]))
                            if np.isfinite(layer_mass[:, n]).any()
                            else None,
                        }
                        for n, layer in enumerate(replay.layer_ids.tolist())
                    ],
                }
            )
    oracle = {r["budget_spec"]: r["mass_mean"] for r in rows if r["policy"] == "oracle_future"}
    for r in rows:
        o = oracle.get(r["budget_spec"])
        if o and r["mass_mean"] is not None:
            r["share_of_oracle"] = r["mass_mean"] / o
    trace = None
    if replay.trace:
        trace = {
            "mass": np.array([m for m, _ in replay.traced]),
            "recall": np.array([r for _, r in replay.traced]),
        }
    return EvictResult(
        capture=replay.path,
        kind=replay.kind,
        unit=replay.unit,
        first_step=int(replay.steps[0]),
        steps=[int(s) for s in replay.steps[1:]],
        layers=replay.layer_ids.tolist(),
        heads=replay.head_ids.tolist(),
        top_k=replay.top_k,
        seed=replay.seed,
        rows=rows,
        trace=trace,
        recovery=replay.recovery,
    )
