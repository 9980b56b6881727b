"""Halo Weave's rules (hw_*): every kernel against a plain reading of Halo Weave's code (hw_reference),
on hand-made rows that hit each branch and on hypothesis-generated captures, token by token."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hw_reference as ref
from halo_fast.analysis import DataWarning
from halo_fast.analysis import hw_kernels as hk
from halo_fast.analysis.conversation import BoundaryReplay, ContextTokens, prune_order
from halo_fast.analysis.hw_rules import HW_RULES, hw_scores
from halo_fast.analysis.scoring import score
from test_reduce import js_mean_reference

STRATEGIES = {
    "hw_voting": ref.voting,
    "hw_symmetric_voting": ref.symmetric_voting,
    "hw_magnitude_v1": ref.magnitude_v1,
    "hw_magnitude_v2": ref.magnitude_v2,
    "hw_magnitude_v3": ref.magnitude_v3,
    "hw_cumulative": ref.cumulative,
}


def as_dict(result) -> dict:
    return {int(p): float(f) for p, f in zip(result.positions, result.final) if np.isfinite(f)}


def matrix(rows) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(r) for r in rows), default=0)
    data = np.full((len(rows), width), np.nan, dtype=np.float32)
    for t, r in enumerate(rows):
        data[t, : len(r)] = r
    return data, np.array([len(r) for r in rows], dtype=np.int64)


def tokens_for(n: int, n_system: int, turns=None, current=9) -> ContextTokens:
    turns = np.zeros(n, dtype=np.int64) if turns is None else np.asarray(turns, dtype=np.int64)
    roles = ["system"] * n_system + ["user"] * (n - n_system)
    return ContextTokens(turns, np.zeros(n, dtype=np.int64), roles, [""] * n, np.ones(n, bool), n_system, current)


# ---- the front end, hand-made rows -------------------------------------------------------------


def frontend_final(rows, n_system=0, n=None):
    data, ctx = matrix(rows)
    n = n or data.shape[1]
    return hw_scores(data, ctx, "hw_frontend", n, tokens_for(n, n_system))


def test_frontend_sink_is_the_largest_value_not_position_0():
    # sink 0.75 at position 1: threshold (1 - 0.75) / 4 = 0.0625, which 0.0625 is not strictly above
    row = np.array([0.0625, 0.75, 0.125, 0.0625], np.float32)
    result = frontend_final([row])
    assert as_dict(result) == ref.frontend([row], 0, 4) == {0: 9999, 1: 10000, 2: 10000, 3: 9999}


def test_frontend_skips_a_step_with_an_invalid_threshold():
    on_sink = np.array([0.0, 1.0, 0.0], np.float32)  # sink 1: threshold 0, skipped
    weak = np.array([0.1, 0.8, 0.1], np.float32)
    assert as_dict(frontend_final([on_sink, weak, on_sink])) == ref.frontend([on_sink, weak, on_sink], 0, 3)
    assert as_dict(frontend_final([on_sink] * 3)) == {0: 10000, 1: 10000, 2: 10000}


def test_frontend_caps_and_never_scores_the_system_prompt():
    low = np.array([0.3, 0.3, 0.001, 0.001, 0.398], np.float32)
    high = np.array([0.05, 0.05, 0.85, 0.001, 0.049], np.float32)
    rows = [low] * 5 + [high]
    result = frontend_final(rows, n_system=2)
    assert result.positions.tolist() == [2, 3, 4]
    got = as_dict(result)
    assert got == ref.frontend(rows, 2, 5)
    assert got[2] == 10000  # back to the cap after 5 losses
    assert got[3] == 9994


def test_frontend_generated_tokens_enter_at_10000():
    rows = [np.array([0.5, 0.3, 0.2], np.float32), np.array([0.4, 0.3, 0.2, 0.1], np.float32)]
    rows.append(np.array([0.4, 0.2, 0.2, 0.1, 0.1], np.float32))
    result = frontend_final(rows, n=6)  # position 5 is the last token generated: never in a context
    assert as_dict(result) == ref.frontend(rows, 0, 6)
    assert as_dict(result)[5] == 10000


@pytest.mark.parametrize(
    "x", [0.0, 1.9, -1.9, 2**31 - 0.5, 2**31 + 5.0, -(2**31) - 1.0, 2**32 + 7.0, 1e20, -1e20, np.nan, np.inf, -np.inf]
)
def test_js_int32_is_javascripts_or_zero(x):
    assert hk.js_int32(x) == ref.js_int32(x)


@pytest.mark.parametrize("x", [0.0, 2.9, -2.9, 2.0**31, 2.0**31 - 1, -(2.0**31) - 1, 3e9, np.nan, np.inf])
def test_x86_cast_matches_the_reference(x):
    assert hk.x86_int(x, -(2.0**31), 2.0**31 - 1) == ref._x86_cast(x, np.int32)
    assert hk.x86_int(x, -(2.0**63), 2.0**63 - 1) == ref._x86_cast(x, np.int64)


# ---- the strategies, hand-made rows -------------------------------------------------------------


def strategy(rule, rows, n_known, **params):
    data, ctx = matrix(rows)
    return as_dict(hw_scores(data, ctx, rule, n_known, None, **params))


def reference(rule, rows, n_known, **params):
    with np.errstate(all="ignore"):  # Halo Weave's code divides by zero there too, and goes on
        return {int(k): float(v) for k, v in STRATEGIES[rule](rows, n_known, **params).items()}


def test_voting_leaves_out_tokens_that_never_got_a_vote():
    rows = [np.array([0.5, 0.1, 0.3, 0.1], np.float32)] * 3
    got = strategy("hw_voting", rows, 4, min_distance=0)
    assert got == reference("hw_voting", rows, 4, min_distance=0) == {0: 3.0, 2: 3.0}


def test_voting_counts_only_far_tokens():
    rows = [np.array([0.4, 0.1, 0.4, 0.1], np.float32)]
    assert strategy("hw_voting", rows, 4, min_distance=3) == {0: 1.0}  # ctx - 2 = 2 < 3


def test_v2_v3_divide_by_the_known_tokens_and_skip_bos():
    rows = [np.array([0.2, 0.5, 0.2, 0.1, 0.0, 0.0], np.float32)]
    for rule in ("hw_magnitude_v2", "hw_magnitude_v3"):
        got = strategy(rule, rows, 3)  # threshold (1 - 0.2) / 2 over positions 1..2 only
        assert got == reference(rule, rows, 3) == {1: 256.0, 2: 254.0}  # 0.5 / 0.4 -> +1; 0.2 -> -1


def test_v2_and_v3_differ_in_their_integer_width():
    # threshold 0 (a[0] == 1): a / 0 is inf, which numpy casts to the integer minimum of each width
    rows = [np.array([1.0, 1e-30, 0.0], np.float32)]
    v2, v3 = strategy("hw_magnitude_v2", rows, 3), strategy("hw_magnitude_v3", rows, 3)
    assert v2 == reference("hw_magnitude_v2", rows, 3) and v2[1] == float(255 - 2**63)
    assert v3 == reference("hw_magnitude_v3", rows, 3) and v3[1] == float(255 - 2**31)
    # a second such step wraps both back (2 * the minimum is 0 modulo 2**64 and 2**32)
    assert strategy("hw_magnitude_v3", rows * 2, 3)[1] == 255.0 == reference("hw_magnitude_v3", rows * 2, 3)[1]


def test_v1_refuses_a_quotient_halo_weave_cannot_take():
    rows = [np.array([1e-45, 0.0, 0.0, 0.0], np.float32)]  # the mean underflows to 0
    data, ctx = matrix(rows)
    with pytest.raises(ValueError, match="not finite"):
        hw_scores(data, ctx, "hw_magnitude_v1", 4, None)


@pytest.mark.parametrize("decay_mode", ["none", "additive", "exponential"])
@pytest.mark.parametrize("distance_mode", ["none", "threshold", "linear", "logarithmic", "square_root"])
def test_cumulative_every_mode(decay_mode, distance_mode):
    rng = np.random.default_rng(3)
    rows = [rng.dirichlet(np.ones(20 + t)).astype(np.float32) for t in range(30)]
    params = {"decay_mode": decay_mode, "distance_mode": distance_mode, "decay_rate": 0.013, "min_distance": 7}
    assert strategy("hw_cumulative", rows, 25, **params) == reference("hw_cumulative", rows, 25, **params)


@pytest.mark.parametrize("rule", sorted(STRATEGIES))
def test_known_tokens_bounds_what_the_strategies_score(rule):
    rng = np.random.default_rng(4)
    rows = [rng.dirichlet(np.ones(8 + t)).astype(np.float32) for t in range(6)]
    params = {"min_distance": 2} if rule in ("hw_voting", "hw_cumulative") else {}
    got = strategy(rule, rows, 20, known_tokens=5, **params)
    assert got == reference(rule, rows, 5, **params)
    assert set(got) <= set(range(5))


def test_rules_refuse_unknown_parameters():
    data, ctx = matrix([np.array([0.5, 0.5], np.float32)])
    with pytest.raises(ValueError, match="takes min_distance, known_tokens, not start"):
        hw_scores(data, ctx, "hw_voting", 2, None, start=1)
    with pytest.raises(ValueError, match="unknown distance_mode"):
        hw_scores(data, ctx, "hw_cumulative", 2, None, distance_mode="cubic")


# ---- whole captures, hypothesis ----------------------------------------------------------------


@st.composite
def conversations(draw):
    """A prompt: system tokens, turns of user/assistant sentences, maybe an assistant prefix."""
    prompt = []

    def add(turn, role, sentence, n):
        for _ in range(n):
            k = len(prompt)
            prompt.append(
                {
                    "token_id": k,
                    "text": f" t{k}",
                    "position": k,
                    "turn_id": turn,
                    "message_role": role,
                    "sentence_id": sentence,
                }
            )

    add(0, "system", 0, draw(st.integers(0, 3)))
    for turn in range(1, draw(st.integers(1, 4)) + 1):
        for sentence in range(draw(st.integers(1, 3))):
            add(turn, "user" if turn % 2 else "assistant", sentence, draw(st.integers(1, 3)))
    if draw(st.booleans()):
        turn = prompt[-1]["turn_id"] + 1
        add(turn + (turn % 2), "assistant", 0, 2)
    if len(prompt) == 1:  # contexts of one position are mean_f32's documented exception (kernels.reduce)
        add(prompt[0]["turn_id"], prompt[0]["message_role"], 0, 1)
    return prompt


@st.composite
def captures(draw):
    prompt = draw(conversations())
    n_layers, n_heads, steps = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["probabilities", "sink_one", "ties", "logits"]))
    tensors = []
    for s in range(steps):
        ctx = len(prompt) + s
        if kind == "ties":
            t = np.full((n_layers, n_heads, ctx), 1.0 / ctx, np.float32)
        elif kind == "logits":
            t = rng.normal(0, 4, (n_layers, n_heads, ctx)).astype(np.float32)
        else:
            w = rng.gamma(0.4, size=(n_layers, n_heads, ctx))
            w[..., rng.integers(ctx)] += rng.uniform(1, 30)  # a sink anywhere
            t = (w / w.sum(axis=-1, keepdims=True)).astype(np.float32)
            if kind == "sink_one" and s % 2:
                t[:] = 0
                t[..., rng.integers(ctx)] = 1.0
        tensors.append(t)
    return prompt, tensors, draw(st.booleans())


def capture_document(prompt, tensors, null_first):
    generated = []
    for s, t in enumerate(tensors):
        attention = None
        if not (null_first and s == 0):
            attention = {"shape": list(t.shape), "context_length": t.shape[2], "data": [float(x) for x in t.ravel()]}
        generated.append(
            {
                "step": s,
                "token_id": 900 + s,
                "text": f" g{s}",
                "position": len(prompt) + s,
                "timestamp": 0,
                "attention": attention,
            }
        )
    return {"metadata": {"model": "test"}, "prompt_tokens": prompt, "generated_tokens": generated}


@pytest.mark.decodes
@settings(max_examples=60, deadline=None)
@given(capture=captures(), rule=st.sampled_from(HW_RULES), min_distance=st.integers(0, 8))
def test_every_rule_on_whole_captures_matches_the_reference(scratch, capture, rule, min_distance):
    prompt, tensors, null_first = capture
    path = scratch(capture_document(prompt, tensors, null_first))
    kept = tensors[1:] if null_first else tensors
    params = {"min_distance": min_distance} if rule in ("hw_voting", "hw_cumulative") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # logits and rows on one sink are meant to be here
        if rule == "hw_frontend":
            rows = [js_mean_reference(t, [(a, b) for a in range(t.shape[0]) for b in range(t.shape[1])]) for t in kept]
            n_system = sum(1 for p in prompt if p["message_role"] == "system")
            want = {p: float(v) for p, v in ref.frontend(rows, n_system, len(prompt) + len(tensors)).items()}
        else:
            rows = [np.mean(t, axis=(0, 1)) for t in kept]
            try:
                want = reference(rule, rows, len(prompt), **params)
            except (ValueError, OverflowError, ZeroDivisionError):
                with pytest.raises(ValueError):
                    score(path, rule, **params)
                return
        got = score(path, rule, **params)
    assert as_dict(got) == want


# ---- the front end's pruning order -------------------------------------------------------------


@st.composite
def conversation_tokens(draw):
    turns, sentences, roles = [], [], []
    n_system = draw(st.integers(0, 2))
    for _ in range(n_system):
        turns.append(0), sentences.append(0), roles.append("system")
    n_turns = draw(st.integers(1, 7))
    for turn in range(1, n_turns + 1):
        role = "user" if turn % 2 else "assistant"
        for sentence in range(draw(st.integers(1, 3))):
            for _ in range(draw(st.integers(1, 2))):
                turns.append(turn), sentences.append(sentence), roles.append(role)
    if draw(st.booleans()):  # a system-role sentence in the conversation
        turns.append(0), sentences.append(5), roles.append("system")
    n = len(turns)
    brightness = np.array(draw(st.lists(st.integers(9990, 10000), min_size=n, max_size=n)), dtype=np.float64)
    current = draw(st.integers(1, n_turns + 1))
    tokens = ContextTokens(np.array(turns), np.array(sentences), roles, [""] * n, np.ones(n, bool), n_system, current)
    return tokens, brightness


def reference_sentences(tokens, brightness):
    """getSentences, transcribed: one per (turn, sentence, role) in order of first token, peak of its tokens."""
    found = {}
    for p in range(tokens.n_system, len(tokens)):
        key = (int(tokens.turn[p]), int(tokens.sentence[p]), tokens.role[p])
        s = found.setdefault(key, {"turn_id": key[0], "sentence_id": key[1], "role": key[2], "peak": -np.inf})
        s["peak"] = max(s["peak"], brightness[p])
    return list(found.values())


@settings(max_examples=200, deadline=None)
@given(conversation_tokens())
def test_prune_order_matches_prune_to_fit(case):
    tokens, brightness = case
    want = ref.prune_to_fit(reference_sentences(tokens, brightness), tokens.current_turn)
    assert prune_order(tokens, brightness) == want


def test_prune_order_deletes_solo_anchor_pairs_together():
    # turn 1 user: one sentence (solo anchor); turn 2 assistant: one sentence (its solo pair); turn 3 user: two
    turns = [1, 2, 3, 3, 4]
    sentences = [0, 0, 0, 1, 0]
    roles = ["user", "assistant", "user", "user", "assistant"]
    tokens = ContextTokens(np.array(turns), np.array(sentences), roles, [""] * 5, np.ones(5, bool), 0, 4)
    brightness = np.array([5.0, 9.0, 1.0, 7.0, 0.0])
    # 3:0 is protected (its turn has two sentences); 1:0 is lowest and goes with 2:0; then 3:1 is the only one
    assert (
        prune_order(tokens, brightness)
        == [[1, 0], [2, 0]]
        == ref.prune_to_fit(reference_sentences(tokens, brightness), 4)
    )


def test_boundary_replay_needs_64_tokens_in_a_chunk():
    replay = BoundaryReplay()
    ids = []
    for k in range(70):
        ids.append(replay.sentence)
        replay.feed("\n\n" if k in (10, 68) else " w")
    assert ids[:69] == [0] * 69 and ids[69] == 1  # the break at token 10 comes too early to count
    code = BoundaryReplay()
    for _ in range(70):
        code.feed(" w")
    code.feed("\n```")
    assert code.sentence == 1 and code.in_code
