"""Experiment 2 -- the pruning simulation: drop the bottom X% of prompt tokens or sentences by a policy.

Policies (higher score = kept): ``peak`` (peak attention over steps, the guide's rule),
``mean``, ``cumulative`` (accumulated attention as in H2O: the cumulative score with
no decay, no distance weighting -- see ``scoring``; ``params`` can change it), ``recent``
(StreamingLLM: ``sinks`` first positions plus the most recent ones), ``magnitude``
(halo_fast's generalised brightness, final score), ``voting`` (rolling-mean votes), and
every Halo Weave rule exactly (``hw_frontend``, ``hw_voting``, ... of :mod:`.hw_rules`).

Protected and never pruned: BOS (position 0), the chat template's tokens
(``<|im_start|>``, the role, ``<|im_end|>``: :func:`~.conversation.template_mask`) and,
by default, every system-role token; the budget is a share of the *unprotected* units
(``round(budget/100 * n)``). For
``--unit sentence`` a sentence's score is, for ``peak`` / ``mean``, the peak / mean of
its summed attention per step; for the score rules the best (maximum) score of its
tokens; for ``recent`` its last position. Ties are broken by mean attention, then by
position (earlier pruned first).

Mass retained at a step: the share of that step's attention on the prompt that falls on
kept tokens (protected ones included).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import matrix, open_reduced, prompt_length, sentence_index
from .conversation import context_tokens, int_column, messages, template_mask
from .hw_rules import HW_RULES, hw_scores, replay_input
from .scoring import probability_matrix, score_matrix
from .sentences import sentence_matrices

OWN_POLICIES = ("peak", "mean", "cumulative", "recent", "magnitude", "voting")
#: Every policy; the default set is halo_fast's plus the front end's own brightness.
POLICIES = OWN_POLICIES + HW_RULES
DEFAULT_POLICIES = OWN_POLICIES + ("hw_frontend",)
UNITS = ("token", "sentence")
H2O = {"decay_rate": 0.0, "distance": "none", "floor": False}


def token_scores(data, ctx, n_prompt: int, policy: str, sinks: int = 4, params=None) -> np.ndarray:
    """float64 [n_prompt] score of each prompt token under ``policy`` (higher: keep)."""
    params = dict(params or {})
    cols = data[:, :n_prompt].astype(np.float64)
    if policy in ("peak", "mean"):
        if not len(cols):
            return np.zeros(n_prompt)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmax(cols, axis=0) if policy == "peak" else np.nanmean(cols, axis=0)
    if policy == "recent":
        out = np.arange(n_prompt, dtype=np.float64)
        out[: max(0, sinks)] = np.inf
        return out
    if policy == "cumulative":
        final, _, _, _ = score_matrix(data, ctx, "cumulative", n_prompt, **{**H2O, **params})
        return final
    if policy in ("magnitude", "voting"):
        final, _, _, _ = score_matrix(data, ctx, policy, n_prompt, **params)
        return final
    raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")


def hw_policy_scores(red, policy: str, n_prompt: int, params, cache: dict):
    """(float64 [n_prompt] final score per prompt token, NaN where the rule scores none; its prune_order)
    of a Halo Weave rule, on the rule's own aggregation of the capture (:func:`~.hw_rules.replay_input`)."""
    own = replay_input(red, policy, cache)
    data, ctx = matrix(own)
    tokens = context_tokens(own) if policy == "hw_frontend" else None
    result = hw_scores(data, ctx, policy, len(own.prompt), tokens, **dict(params or {}))
    out = np.full(n_prompt, np.nan)
    inside = result.positions < n_prompt
    out[result.positions[inside]] = result.final[inside]
    return out, result.prune_order


def choose_pruned(scores: np.ndarray, tiebreak: np.ndarray, candidates: np.ndarray, budget: float) -> np.ndarray:
    """Indices (into ``scores``) of the ``round(budget% of candidates)`` lowest-scoring candidates."""
    n = int(round(len(candidates) * float(budget) / 100.0))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    s = np.nan_to_num(scores[candidates], nan=-np.inf)
    order = np.lexsort((candidates, np.nan_to_num(tiebreak[candidates], nan=-np.inf), s))
    return np.sort(candidates[order[:n]])


def _turns(prompt, n_prompt: int):
    """int64 turn_id of each prompt token, or None when the prompt records none (a missing field reads as -1)."""
    if "turn_id" not in prompt:
        return None
    turns = int_column(prompt, "turn_id", n_prompt, -1)[:n_prompt]
    return None if len(turns) and (turns < 0).all() else turns


def _warn_unscored(policy: str, scores: np.ndarray, protected: np.ndarray) -> None:
    """A Halo Weave rule that leaves unprotected prompt tokens unscored prunes none of them: say so."""
    import warnings

    unscored = int(np.count_nonzero(~protected & ~np.isfinite(scores)))
    if unscored:
        sensible = " (halo_fast's voting scores them 0)" if policy == "hw_voting" else ""
        warnings.warn(
            f"{policy} leaves {unscored} unprotected prompt tokens unscored, so they are no pruning candidates, as "
            f"in Halo Weave's own ranking{sensible}",
            UserWarning,
            stacklevel=3,
        )


def front_end_choice(order, sent, candidates: np.ndarray, budget: float) -> np.ndarray:
    """Sentence indices ``pruneToFit`` deletes first (``order``: its [turn, sentence] list), candidates
    only, until ``round(budget% of candidates)`` are chosen; in the order it deletes them."""
    n = int(round(len(candidates) * float(budget) / 100.0))
    allowed = set(candidates.tolist())
    chosen: list[int] = []
    for turn, sentence in order or []:
        if len(chosen) >= n:
            break
        key = (int(turn), int(sentence))
        if key in sent.keys:
            s = sent.keys.index(key)
            if s in allowed and s not in chosen:
                chosen.append(s)
    return np.array(chosen, dtype=np.int64)


@dataclass
class PruneResult:
    unit: str
    budget: float
    positions: np.ndarray
    texts: list
    protected: np.ndarray  # bool [P]
    kept: dict  # policy -> bool [P]
    mass: dict  # policy -> float64 [T]
    pruned_units: dict  # policy -> list of pruned units (positions or [turn, sentence])
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    turns: np.ndarray | None = None  # turn_id of each prompt token (None: the prompt records no turns)
    roles: list = field(default_factory=list)

    def __repr__(self) -> str:
        """One line: the dataclass default prints every array, which floods a notebook."""
        return (
            f"PruneResult({self.budget:g}% of unprotected {self.unit}s by {', '.join(self.kept)}; "
            f"{len(self.positions)} prompt tokens ({int(np.sum(self.protected))} protected) x {len(self.steps)} steps)"
        )

    def overlap(self) -> dict:
        """Jaccard index of the kept token sets of every pair of policies."""
        names = list(self.kept)
        out = {}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                union = np.sum(self.kept[a] | self.kept[b])
                out[f"{a}/{b}"] = float(np.sum(self.kept[a] & self.kept[b]) / union) if union else 1.0
        return out

    def summary(self, policy: str) -> dict:
        m = self.mass[policy]
        finite = m[np.isfinite(m)]
        return {
            "kept": self.positions[self.kept[policy]].tolist(),
            "pruned": self.positions[~self.kept[policy]].tolist(),
            "pruned_units": self.pruned_units[policy],
            "mass_retained_mean": float(finite.mean()) if len(finite) else None,
            "mass_retained_min": float(finite.min()) if len(finite) else None,
        }

    def to_json(self) -> dict:
        return {
            "unit": self.unit,
            "budget": self.budget,
            "protected": self.positions[self.protected].tolist(),
            "policies": {p: self.summary(p) for p in self.kept},
            "overlap": self.overlap(),
        }

    def pruned_prompt(self, policy: str) -> str:
        """The kept prompt as text, its chat-template tokens intact: what a rerun feeds the model."""
        return "".join(self.texts[i] for i in np.flatnonzero(self.kept[policy]))

    def pruned_messages(self, policy: str) -> list[dict]:
        """The kept prompt as chat messages, ``[{role, content}, ...]`` per turn (:func:`.conversation.messages`);
        a ValueError when the prompt records no turns."""
        if self.turns is None:
            raise ValueError("the prompt has no turn_id column: --messages needs to know its turns")
        return messages(self.texts, self.turns, self.roles, self.kept[policy])


def prune(
    source,
    budget: float = 30.0,
    unit: str = "token",
    policies=DEFAULT_POLICIES,
    protect_system: bool = True,
    sinks: int = 4,
    params=None,
    kind=None,
    reduce_options=None,
    replay_cache=None,
) -> PruneResult:
    """Simulate pruning ``budget`` % of the unprotected prompt units by each policy and compare them.

    ``params``: {policy: {rule parameter: value}} for the score policies. ``replay_cache``: a dict
    shared with other analyses of the same capture, so that a Halo Weave rule's own aggregation is
    read once (:func:`~.hw_rules.replay_input`).
    """
    from .kernels import mass_retained

    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; choose from {', '.join(UNITS)}")
    if not 0 <= float(budget) <= 100:
        raise ValueError(f"budget must be a percentage in 0..100, got {budget}")
    red = open_reduced(source, **(reduce_options or {}))
    data, ctx = probability_matrix(red, kind)
    n_prompt = prompt_length(red)
    roles = (
        np.array([str(r) for r in red.prompt["message_role"][:n_prompt]], dtype=object)
        if "message_role" in red.prompt
        else np.array([""] * n_prompt, dtype=object)
    )
    texts = [str(t) for t in red.prompt["text"][:n_prompt]] if "text" in red.prompt else [""] * n_prompt
    template = template_mask(texts)
    protected = template.copy()
    protected[:1] = True
    if protect_system:
        protected |= roles == "system"
    sent = sentence_index(red.prompt, n_prompt)
    token_mean = token_scores(data, ctx, n_prompt, "mean")
    if unit == "sentence":
        total, _, _ = sentence_matrices(data, ctx, sent.labels, len(sent))
        sent_protected = np.zeros(len(sent), dtype=bool)
        np.logical_or.at(sent_protected, sent.labels, protected & ~template)  # a template token spares itself only
        protected = sent_protected[sent.labels] | template
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sent_mean = np.nanmean(total, axis=0) if len(total) else np.zeros(len(sent))
            sent_peak = np.nanmax(total, axis=0) if len(total) else np.zeros(len(sent))
    kept, pruned_units = {}, {}
    cache: dict = {} if replay_cache is None else replay_cache
    no_tiebreak = np.zeros(max(n_prompt, len(sent)))
    for policy in policies:
        own = (params or {}).get(policy)
        hw = policy in HW_RULES
        if hw:
            per_token, order = hw_policy_scores(red, policy, n_prompt, own, cache)
            _warn_unscored(policy, per_token, protected)
        else:
            per_token = order = None
        if unit == "token":
            scores = per_token if hw else token_scores(data, ctx, n_prompt, policy, sinks, own)
            candidates = np.flatnonzero(~protected & (np.isfinite(scores) if hw else True))
            chosen = choose_pruned(scores, no_tiebreak if hw else token_mean, candidates, budget)
            mask = np.ones(n_prompt, dtype=bool)
            mask[chosen] = False
            pruned_units[policy] = chosen.tolist()
        else:
            if policy in ("peak", "mean"):
                scores = sent_peak if policy == "peak" else sent_mean
            else:
                if per_token is None:
                    per_token = token_scores(data, ctx, n_prompt, policy, sinks, own)
                scores = np.full(len(sent), -np.inf)
                np.maximum.at(scores, sent.labels, np.nan_to_num(per_token, nan=-np.inf))
            candidates = np.flatnonzero(~sent_protected & (scores > -np.inf if hw else True))
            if policy == "hw_frontend":
                chosen = front_end_choice(order, sent, candidates, budget)
            else:
                chosen = choose_pruned(scores, no_tiebreak if hw else sent_mean, candidates, budget)
            mask = ~np.isin(sent.labels, chosen) | template
            pruned_units[policy] = [list(sent.keys[s]) for s in chosen]
        kept[policy] = mask
    names = list(kept)
    masks = np.array([kept[p] for p in names], dtype=np.bool_).reshape(len(names), n_prompt)
    mass = np.empty((len(names), data.shape[0]))
    mass_retained(data, ctx, masks, mass)
    positions = np.asarray(red.prompt["position"])[:n_prompt] if "position" in red.prompt else np.arange(n_prompt)
    return PruneResult(
        unit,
        float(budget),
        positions,
        texts,
        protected,
        kept,
        {p: mass[k] for k, p in enumerate(names)},
        pruned_units,
        np.asarray(red.steps),
        _turns(red.prompt, n_prompt),
        [str(r) for r in roles],
    )
