"""The causal KV-eviction replay: what each eviction policy would have kept, per layer and head.

A capture holds every step's full ``[layers, heads, context]`` attention, so every
policy can be replayed from it for many budgets at once, without a model or a GPU:

* The replayed steps are the tokens with attention kept by ``tokens`` / ``every``. The
  first is observed with its whole context and not scored (a capture has no prefill
  attention). Before each later step the positions new since the previous replayed step
  enter the cache unobserved; the policy evicts down to its budget using only the steps
  before this one; evicted positions never return. Then the step is scored:
  ``mass = sum over cached i of A[i] / sum over all i of A[i]`` per (layer, head) row
  (logit captures are softmaxed per row first), and top-k recall, the share of the row's
  ``top_k`` most attended positions that are cached.
* Causal policies never evict an unobserved (new) position; ties evict the earlier
  position first.
* What it measures: the attention mass the *full-cache* run put on the kept positions -- a
  proxy, since a real eviction changes the attention of every later step.

Policies (:data:`POLICIES`; the papers' defaults scaled to the budget ``B``):
``streaming`` (StreamingLLM: the first ``min(4, B - 1)`` positions and the most recent rest,
the newest among them), ``h2o`` (per head: the ``B // 2`` most recent positions protected, the
rest ranked by attention summed over the observed steps), ``tova`` (per layer: the last
observed step's attention averaged over the layer's heads), ``snapkv`` (per head: the attention
of the last ``window = max(1, min(32, B // 4))`` observed steps summed and average-pooled with
kernel 5, re-selected every ``window`` steps, the last ``window`` positions protected and the
positions that came after a re-selection kept until the next one scores them),
``scissorhands`` (per head: in how many of the last 32 observed steps the position's
attention exceeded ``1 / context``; the ``max(1, B // 8)`` most recent protected),
``pyramidkv`` (snapkv's scores, per-layer budgets falling linearly from
``window + 2 (B - window) - m`` at layer 0 to ``window + m`` at the capture's last layer,
``m = (B - window) // 20``, rounded, their mean ``B``, once the context exceeds ``B``: before,
nothing is evicted), ``random`` (per head, seeded), ``hw_frontend`` (Halo Weave's brightness,
``updateBrightness`` on the step's ``mean_js`` aggregate, as one cache for the whole model; the
system prompt is never evicted; with ``unit="sentence"`` whole sentences go by peak brightness
as ``pruneToFit`` deletes them), and the oracles ``oracle_step`` (per head, each step's own
top-``B``, readmission allowed: no policy whose cache holds at most ``B`` positions keeps more)
and ``oracle_future`` (per head, no readmission: evicts the cached position with the least
attention still to come, new ones included; a hindsight heuristic, not a bound -- a causal
policy can beat it on an odd capture).

Everything runs in one pass over the capture (two with ``oracle_future``, whose first pass
sums the attention to come); the state is allocated once, per policy rather than per budget
where the scores do not depend on it; one window of tokens (about ``window_bytes`` of file,
or one token for formats read token by token) is in memory at a time, never the capture.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..formats.base import CaptureSource
from ..kernels.reduce import reduce_decoded
from . import evict_kernels as ek
from .conversation import build_context, front_end_sentences, generated_tokens, prune_steps
from .evict_result import EvictResult, summarize
from .hw_kernels import frontend_step
from .hw_rules import FRONTEND_START

POLICIES = (
    "streaming",
    "h2o",
    "tova",
    "snapkv",
    "scissorhands",
    "pyramidkv",
    "random",
    "hw_frontend",
    "oracle_step",
    "oracle_future",
)
ORACLES = ("oracle_step", "oracle_future")
UNITS = ("token", "sentence")
DEFAULT_BUDGETS = (64, 128, 256)
TOP_K = 8
SINKS = 4
SNAP_MAX_WINDOW = 32
SNAP_KERNEL = 5
HISTORY = 32
PYRAMID_BETA = 20


@dataclass
class Instance:
    """One policy at one budget, and how the kernels run it."""

    policy: str
    spec: str  # the budget as asked ("64", "10%")
    budget: int  # tokens per cache (pyramidkv: the mean over layers)
    level: str  # "head", "layer", "model" or "sentence": what one cache serves
    kind: int
    slot: str | None  # the score array it ranks by
    sinks: int = 0
    recent: int = 0
    protect_new: bool = True
    window: int = 0  # snapkv / pyramidkv

    def params(self) -> dict:
        """The parameters this instance ran with, for the result's rows."""
        out: dict = {}
        if self.sinks:
            out["system_prompt" if self.policy == "hw_frontend" else "sinks"] = self.sinks
        if self.recent:
            out["recent"] = self.recent
        if self.window:
            out.update(window=self.window, interval=self.window, kernel=SNAP_KERNEL)
        if self.policy == "scissorhands":
            out["history"] = HISTORY
        if not self.protect_new:
            out["may_evict_new"] = True
        return out


def parse_budgets(budgets, n_prompt: int) -> list[tuple[str, int]]:
    """``(spec, tokens)`` per budget: ints, or ``"N%"`` of the prompt (rounded, at least 1)."""
    if isinstance(budgets, (str, int)):
        budgets = [budgets]
    out = []
    for b in budgets:
        for part in str(b).split(","):
            text = part.strip()
            if not text:
                continue
            bad = f"bad budget {text!r}: use tokens (64) or a positive share of the prompt (10%)"
            if text.endswith("%"):
                try:
                    share = float(text[:-1])
                except ValueError:
                    raise ValueError(bad) from None
                if not (math.isfinite(share) and share > 0):
                    raise ValueError(bad)
                if not n_prompt:
                    raise ValueError(f"budget {text}: the capture has no prompt to take a share of")
                tokens = max(1, int(round(share / 100.0 * n_prompt)))
            else:
                try:
                    tokens = int(text)
                except ValueError:
                    raise ValueError(bad) from None
            if tokens < 1:
                raise ValueError(f"a budget must be at least 1 token, got {text}")
            out.append((text, tokens))
    if not out:
        raise ValueError("no budget given")
    return list(dict.fromkeys(out))


def check_policies(policies) -> list[str]:
    names = [p.strip() for p in (policies.split(",") if isinstance(policies, str) else policies) if p.strip()]
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown eviction policy {', '.join(unknown)}; choose from {', '.join(POLICIES)}")
    if not names:
        raise ValueError("no eviction policy given")
    return list(dict.fromkeys(names))


def snap_window(budget: int) -> int:
    return max(1, min(SNAP_MAX_WINDOW, budget // 4))


def pyramid_budgets(budget: int, n_layers: int) -> np.ndarray:
    """PyramidKV's per-layer budgets for the capture's ``n_layers`` layers: from ``window + high`` at
    layer 0 down to ``window + low`` at the last, ``low = (B - window) // 20``, ``high = 2 (B - window)
    - low``, linear and rounded so that their mean is ``B`` (PyramidKV steps by an integer
    ``(high - low) // (layers - 1)``, which at small budgets gives every layer up to twice ``B``)."""
    window = snap_window(budget)
    usable = max(budget - window, 0)
    if n_layers < 2:
        return np.full(n_layers, budget, dtype=np.int64)
    low = usable // PYRAMID_BETA
    high = 2 * usable - low
    falling = high - (high - low) * np.arange(n_layers) / (n_layers - 1)
    return np.maximum(np.round(window + falling).astype(np.int64), 1)


def make_instance(policy: str, spec: str, budget: int, unit: str, n_system: int) -> Instance:
    if policy == "streaming":  # the recent window holds the new position: at least one of B
        sinks = min(SINKS, budget - 1)
        return Instance(policy, spec, budget, "model", ek.SCORE_POSITION, None, sinks, budget - sinks)
    if policy == "h2o":
        return Instance(policy, spec, budget, "head", ek.SCORE_ARRAY, "sum", 0, budget // 2)
    if policy == "tova":
        return Instance(policy, spec, budget, "layer", ek.SCORE_ARRAY, "layer_mean")
    if policy in ("snapkv", "pyramidkv"):
        w = snap_window(budget)
        return Instance(policy, spec, budget, "head", ek.SCORE_ARRAY, f"snap{w}", 0, w, window=w)
    if policy == "scissorhands":
        return Instance(policy, spec, budget, "head", ek.SCORE_BITS, None, 0, max(1, budget // 8))
    if policy == "random":
        return Instance(policy, spec, budget, "head", ek.SCORE_ARRAY, "random")
    if policy == "hw_frontend":
        if unit == "sentence":
            return Instance(policy, spec, budget, "sentence", ek.EXTERNAL, "bright", n_system)
        return Instance(policy, spec, budget, "model", ek.SCORE_ARRAY, "bright", n_system)
    if policy == "oracle_step":
        return Instance(policy, spec, budget, "head", ek.ORACLE_STEP, None)
    return Instance(policy, spec, budget, "head", ek.SCORE_ARRAY, "future", protect_new=False)


def evict(
    source,
    policies=POLICIES,
    budgets=DEFAULT_BUDGETS,
    *,
    unit: str = "token",
    layers=None,
    heads=None,
    every: int = 1,
    tokens=None,
    kind: str | None = None,
    top_k: int = TOP_K,
    seed: int = 0,
    trace: bool = False,
    recover: bool = False,
    strict: bool = False,
    progress: bool = False,
    window_bytes: int | None = None,
) -> EvictResult:
    """Replay eviction ``policies`` at every budget on the capture ``source`` (a path, or a loaded
    :class:`~halo_fast.Capture`; see the module docstring for the semantics); an :class:`~.evict_result.EvictResult` (``to_json``, ``to_pandas``).

    ``budgets``: tokens per cache, or ``"10%"`` of the prompt; ``unit``: ``"sentence"`` makes
    ``hw_frontend`` delete whole sentences; ``layers`` / ``heads`` / ``every`` / ``tokens``: which rows
    and steps are replayed; ``kind``: probabilities or logits (default: logits when the first step has
    a negative value); ``trace``: keep every step's mass and recall per instance and row.
    """
    from ..api import open_capture
    from ..capture import Capture
    from ..store import is_reduce_output

    names = check_policies(policies)
    if unit not in UNITS:
        raise ValueError(f"unit must be token or sentence, got {unit!r}")
    if kind is not None and kind not in ("probabilities", "logits"):
        raise ValueError(f"unknown kind {kind!r}; choose from probabilities, logits")
    if int(top_k) < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")

    def run(cap) -> EvictResult:
        replay = Replay.plan(cap, names, budgets, unit, layers, heads, every, tokens, kind, int(top_k), int(seed))
        replay.trace = bool(trace)
        replay.run(cap)
        return summarize(replay)

    if isinstance(source, Capture):
        return run(LoadedSource(source))
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"evict replays a capture (a path or a loaded Capture), not a {type(source).__name__}")
    path = os.fspath(source)
    if is_reduce_output(path):
        raise ValueError(f"{path} is a reduce output: eviction replays every head's attention, give the capture itself")
    with open_capture(path, progress=progress, window_bytes=window_bytes, recover=recover, strict=strict) as cap:
        return run(cap)


class LoadedSource(CaptureSource):
    """A loaded :class:`~halo_fast.Capture` as a source: its tables and shapes, its values by slicing
    (``token_windows`` is the generic one, a token at a time)."""

    format_name = "loaded"

    def __init__(self, cap) -> None:
        super().__init__(cap.path or "<capture>")
        self.capture = cap
        self.metadata, self.prompt_table, self.token_table = cap.metadata, cap.prompt_tokens, cap.tokens
        self.shapes, self.offsets, self.recovery = cap.shapes, cap.offsets, cap.recovery
        self.has_attention = np.asarray(cap.tokens["has_attention"])

    def token_values(self, i: int) -> np.ndarray:
        return self.capture.values[self.offsets[i] : self.offsets[i + 1]]


class Replay:
    """The state of one replay: instances, their caches and scores, and what was measured."""

    trace = False

    @classmethod
    def plan(cls, cap, names, budgets, unit, layers, heads, every, tokens, kind, top_k, seed) -> Replay:
        from ..errors import CaptureError
        from ..reduction import make_plan, parse_selection, select_tokens

        table = cap.token_table
        steps = np.asarray(table["step"])
        ids = select_tokens(steps, np.asarray(cap.has_attention), every, tokens)
        if len(ids) < 2:
            raise CaptureError(
                "eviction needs at least two steps with attention (the first is only observed)", cap.path, None
            )
        shapes = cap.shapes[ids]
        n_layers, n_heads = int(shapes[0, 0]), int(shapes[0, 1])
        odd = np.flatnonzero((shapes[:, 0] != n_layers) | (shapes[:, 1] != n_heads))
        if len(odd):
            i = int(ids[odd[0]])
            raise CaptureError(
                f"this step has {cap.shapes[i, 0]} layers x {cap.shapes[i, 1]} heads, the first {n_layers} x {n_heads}",
                cap.path,
                None,
                steps[i],
            )
        ctx = shapes[:, 2].astype(np.int64)
        shrink = np.flatnonzero(np.diff(ctx) < 0)
        if len(shrink):
            k = int(shrink[0]) + 1
            raise CaptureError(
                f"the context shrinks from {ctx[k - 1]} to {ctx[k]} positions: eviction needs a growing context",
                cap.path,
                None,
                steps[ids[k]],
            )
        self = cls()
        self.path, self.ids, self.steps, self.ctx = cap.path, ids, steps[ids], ctx
        self.recovery = getattr(cap, "recovery", None)
        self.layer_ids = parse_selection(layers, n_layers, "layers")
        self.head_ids = parse_selection(heads, n_heads, "heads")
        self.n_layers, self.n_heads = n_layers, n_heads
        self.rows = (self.layer_ids[:, None] * n_heads + self.head_ids[None, :]).ravel()
        self.kind, self.top_k, self.seed, self.unit = kind, top_k, seed, unit
        self.n_prompt = len(cap.prompt_table)
        self.width = int(ctx.max())
        self.context = None
        n_system = 0
        if "hw_frontend" in names:
            positions, _, texts = generated_tokens(table)
            self.context = build_context(cap.prompt_table, self.width, positions, texts)
            n_system = self.context.n_system
            self.bright_plan = make_plan("mean_js", ("layers", "heads"), layers, heads, n_layers, n_heads)
        # a budget beyond the longest context keeps everything: the context's length does the same
        specs = [(spec, min(b, self.width)) for spec, b in parse_budgets(budgets, self.n_prompt)]
        self.instances = [make_instance(p, s, b, unit, n_system) for p in names for s, b in specs]
        self._allocate()
        return self

    def _allocate(self) -> None:
        inst, R, C = self.instances, len(self.rows), self.width
        J, Hs, Ls = len(inst), len(self.head_ids), len(self.layer_ids)
        self.kinds = np.array([i.kind for i in inst], dtype=np.int64)
        self.slots = {}
        for i in inst:
            if i.slot is not None and i.slot not in self.slots:
                self.slots[i.slot] = len(self.slots)
        self.score_of = np.array([self.slots.get(i.slot, 0) for i in inst], dtype=np.int64)
        self.scores = np.zeros((max(len(self.slots), 1), R, C))
        if "bright" in self.slots:
            self.scores[self.slots["bright"], 0, :] = FRONTEND_START
        if "random" in self.slots:
            ek.random_scores(np.uint64(self.seed & ((1 << 64) - 1)), self.rows, self.scores[self.slots["random"]])
        self.windows = sorted({i.window for i in inst if i.window})
        self.window_acc = {w: np.zeros((R, C)) for w in self.windows}
        self.has_bits = any(i.kind == ek.SCORE_BITS for i in inst)
        self.bits = np.zeros((R if self.has_bits else 1, C), dtype=np.uint64)
        self.budget = np.zeros((J, R), dtype=np.int64)
        self.leader = np.zeros((J, R), dtype=np.int64)
        layer_of_row = np.repeat(np.arange(Ls), Hs)
        self.pyramids = {}
        for j, i in enumerate(inst):
            if i.policy == "pyramidkv":
                layered = np.minimum(pyramid_budgets(i.budget, self.n_layers), C)
                self.pyramids[j] = layered[self.layer_ids][layer_of_row]
                self.budget[j] = np.maximum(self.pyramids[j], i.budget)
            else:
                self.budget[j] = i.budget
            if i.level == "head":
                self.leader[j] = np.arange(R)
            elif i.level == "layer":
                self.leader[j] = layer_of_row * Hs
        self.sinks = np.array([i.sinks for i in inst], dtype=np.int64)
        self.recent = np.array([i.recent for i in inst], dtype=np.int64)
        self.protect_new = np.array([1 if i.protect_new else 0 for i in inst], dtype=np.int64)
        self.hist_mask = np.full(J, (1 << HISTORY) - 1, dtype=np.uint64)
        self.count = np.zeros((J, R), dtype=np.int64)
        self.incache = np.zeros((J, R, C), dtype=np.uint8)
        self.alive = {j: np.zeros(C, dtype=bool) for j, i in enumerate(inst) if i.kind == ek.EXTERNAL}
        self.oracle_order = np.array(
            sorted((j for j, i in enumerate(inst) if i.kind == ek.ORACLE_STEP), key=lambda j: -inst[j].budget),
            dtype=np.int64,
        )
        self.scratch = np.zeros((R if len(self.oracle_order) else 1, 2, C))
        self.probs = np.zeros((R, C))
        self.totals = np.zeros(R)
        self.top = np.zeros((R, min(self.top_k, C)), dtype=np.int64)  # a row has at most C positions
        self.n_top = np.zeros(R, dtype=np.int64)
        self.mass = np.zeros((J, R))
        self.recall = np.zeros((J, R))
        self.first_rows = np.arange(Ls, dtype=np.int64) * Hs
        K = len(self.ids) - 1
        self.step_mass = np.full((K, J), np.nan)
        self.step_recall = np.full((K, J), np.nan)
        self.step_layer_mass = np.full((K, J, Ls), np.nan)
        self.step_cached = np.full((K, J), np.nan)
        self.caches_of = [np.unique(self.leader[j]) for j in range(J)]
        self.traced: list[tuple[np.ndarray, np.ndarray]] = []
        if "bright" in self.slots:
            self.bright_row = np.zeros((1, C), dtype=np.float32)
            self.bright_acc = np.zeros((1, C))
            self.bright_counts = np.zeros((1, C), dtype=np.int64)

    # ------------------------------------------------------------------ the passes

    def layer_budgets(self, j: int) -> np.ndarray:
        """Instance ``j``'s budget for each replayed layer (pyramidkv's fall; the others' are all B)."""
        i = self.instances[j]
        if i.policy == "pyramidkv":
            return pyramid_budgets(i.budget, self.n_layers)[self.layer_ids]
        return np.full(len(self.layer_ids), i.budget, dtype=np.int64)

    def _tokens(self, cap, phase: str):
        """``(k, i, values)`` for the k-th replayed token ``i`` and its flat float32 values."""
        k = 0
        for batch, values, starts in cap.token_windows(self.ids, phase):
            for b, i in enumerate(batch.tolist()):
                yield k, i, values[starts[b] : starts[b + 1]]
                k += 1

    def _prepare(self, values, ctx: int) -> None:
        if self.kind is None:
            self.kind = "logits" if bool((values < 0).any()) else "probabilities"
        ek.prepare_rows(values, self.rows, ctx, self.kind == "logits", self.probs, self.totals)

    def run(self, cap) -> None:
        if "future" in self.slots:  # the attention still to come, summed once
            future = self.scores[self.slots["future"]]
            for k, _, values in self._tokens(cap, "evict: attention to come"):
                self._prepare(values, int(self.ctx[k]))
                ek.accumulate(self.probs, int(self.ctx[k]), future, 1.0)
        for k, i, values in self._tokens(cap, "evict: replay"):
            ctx = int(self.ctx[k])
            self._prepare(values, ctx)
            if k:
                self._decide(k, ctx, int(self.ctx[k - 1]))
                self._score(k, ctx)
            self._observe(values, ctx, int(cap.shapes[i, 0] * cap.shapes[i, 1]))

    def _decide(self, k: int, ctx: int, ctx_prev: int) -> None:
        for j, layered in self.pyramids.items():  # as PyramidKV: nothing evicted while the context fits B
            self.budget[j] = layered if ctx > self.instances[j].budget else self.instances[j].budget
        for w in self.windows:
            if (k - 1) % w == 0:  # re-select: the last w observed steps, pooled
                ek.pool_window(self.window_acc[w], ctx_prev, SNAP_KERNEL, self.scores[self.slots[f"snap{w}"]])
        ek.evict_step(
            ctx,
            ctx_prev,
            k == 1,
            self.kinds,
            self.score_of,
            self.budget,
            self.sinks,
            self.recent,
            self.protect_new,
            self.hist_mask,
            self.leader,
            self.scores,
            self.bits,
            self.count,
            self.incache,
        )
        for j in self.alive:
            self._prune_sentences(j, ctx, ctx_prev if k > 1 else 0)

    def _prune_sentences(self, j: int, ctx: int, ctx_prev: int) -> None:
        """``pruneToFit`` at this step for the sentence-unit instance ``j``: whole sentences by peak
        brightness until the context fits its budget (or nothing more may go)."""
        alive, budget = self.alive[j], int(self.budget[j, 0])
        alive[ctx_prev:ctx] = True
        kept = int(alive[:ctx].sum())
        if kept > budget:
            bright = self.scores[self.slots["bright"], 0]
            sentences = front_end_sentences(self.context, bright, alive, stop=ctx)
            for group in prune_steps(sentences, self.context.current_turn):
                for s in group:
                    alive[s.positions] = False
                    kept -= len(s.positions)
                if kept <= budget:
                    break
        self.count[j, 0] = kept
        self.incache[j, 0, :] = alive

    def _score(self, k: int, ctx: int) -> None:
        ek.top_positions(self.probs, ctx, self.top, self.n_top)
        ek.kept_mass(
            self.probs,
            self.totals,
            ctx,
            self.kinds,
            self.budget,
            self.leader,
            self.count,
            self.incache,
            self.top,
            self.n_top,
            self.oracle_order,
            self.scratch,
            self.mass,
            self.recall,
        )
        J, Ls = self.mass.shape[0], len(self.layer_ids)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a step whose rows all lack attention: NaN
            self.step_mass[k - 1] = np.nanmean(self.mass, axis=1)
            self.step_recall[k - 1] = np.nanmean(self.recall, axis=1)
            self.step_layer_mass[k - 1] = np.nanmean(self.mass.reshape(J, Ls, -1), axis=2)
        for j, i in enumerate(self.instances):  # what the caches hold (a sentence cache may not fit)
            if i.kind == ek.ORACLE_STEP:
                self.step_cached[k - 1, j] = np.minimum(self.budget[j], ctx).mean()
            else:
                self.step_cached[k - 1, j] = self.count[j, self.caches_of[j]].mean()
        if self.trace:
            self.traced.append((self.mass.copy(), self.recall.copy()))

    def _observe(self, values, ctx: int, n_rows: int) -> None:
        for slot, s in self.slots.items():
            if slot == "sum":
                ek.accumulate(self.probs, ctx, self.scores[s], 1.0)
            elif slot == "layer_mean":
                ek.layer_means(self.probs, ctx, self.first_rows, len(self.head_ids), self.scores[s])
            elif slot == "future":
                ek.accumulate(self.probs, ctx, self.scores[s], -1.0)
            elif slot == "bright":
                self._brighten(values, ctx, n_rows, self.scores[s, 0])
        for w in self.windows:
            ek.accumulate(self.probs, ctx, self.window_acc[w], 1.0)
        if self.has_bits:
            ek.persist(self.probs, ctx, self.bits)

    def _brighten(self, values, ctx: int, n_rows: int, score) -> None:
        """``updateBrightness`` with this step's ``mean_js`` aggregate over the replayed rows."""
        p = self.bright_plan
        reduce_decoded(
            values, n_rows, ctx, p.row_group, p.first_row, p.group_size, p.op_code,
            self.bright_acc, self.bright_counts, self.bright_row,
        )  # fmt: skip
        frontend_step(self.bright_row[0], ctx, self.context.n_system, FRONTEND_START, score)
