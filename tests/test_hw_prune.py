"""prune with Halo Weave's rules as policies, the chat template kept, and --write-prompt's two forms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from halo_fast.analysis.conversation import messages, template_mask
from halo_fast.analysis.prune import prune
from halo_fast.analysis.scoring import score
from halo_fast.cli.main import main
from test_hw_rules import capture_document


def conversation_capture(scratch, steps=12, seed=0):
    """System prompt, two user and one assistant turn in ChatML, an assistant prefix; the sink at position 4."""
    prompt = []

    def add(turn, role, sentence, texts):
        for text in texts:
            k = len(prompt)
            prompt.append(
                {
                    "token_id": k,
                    "text": text,
                    "position": k,
                    "turn_id": turn,
                    "message_role": role,
                    "sentence_id": sentence,
                }
            )

    add(0, "system", 0, ["<|im_start|>", "system", "\n", "Be", " kind", ".", "<|im_end|>", "\n"])
    add(1, "user", 0, ["<|im_start|>", "user", "\n", "Hi", "."])
    add(1, "user", 1, [" Key", " fact", " X", "."])
    add(1, "user", 2, [" Idle", " chat", ".", "<|im_end|>", "\n"])
    add(2, "assistant", 0, ["<|im_start|>", "assistant", "\n", "Ok", "."])
    add(2, "assistant", 1, [" Noted", ".", "<|im_end|>", "\n"])
    add(3, "user", 0, ["<|im_start|>", "user", "\n", "Why", " X", "?", "<|im_end|>", "\n"])
    add(4, "assistant", 0, ["<|im_start|>", "assistant", "\n"])
    rng = np.random.default_rng(seed)
    tensors = []
    for s in range(steps):
        ctx = len(prompt) + s
        w = rng.gamma(0.5, size=(2, 2, ctx))
        w[..., 4] += 20
        w[..., 15:17] += 3  # "Key fact"
        tensors.append((w / w.sum(axis=-1, keepdims=True)).astype(np.float32))
    return scratch(capture_document(prompt, tensors, True)), prompt


def test_template_tokens_are_marked_and_never_pruned(scratch):
    path, prompt = conversation_capture(scratch)
    texts = [p["text"] for p in prompt]
    mask = template_mask(texts)
    assert [t for t, m in zip(texts, mask) if m][:6] == [
        "<|im_start|>",
        "system",
        "\n",
        "<|im_end|>",
        "\n",
        "<|im_start|>",
    ]
    for unit in ("token", "sentence"):
        with pytest.warns(UserWarning, match="hw_voting leaves .* unscored"):
            result = prune(path, budget=100, unit=unit, policies=["peak", "hw_frontend", "hw_voting"])
        for policy, kept in result.kept.items():
            assert kept[mask].all(), (unit, policy)
        assert result.pruned_prompt("peak").count("<|im_start|>") == 5


def test_hw_frontend_sentences_go_in_prune_to_fit_order(scratch):
    path, _ = conversation_capture(scratch)
    order = score(path, "hw_frontend").prune_order
    result = prune(path, budget=100, unit="sentence", policies=["hw_frontend"])
    pruned = result.pruned_units["hw_frontend"]
    assert pruned and pruned == order[: len(pruned)]


def test_hw_voting_never_prunes_what_it_never_scored(scratch):
    path, _ = conversation_capture(scratch)
    votes = score(path, "hw_voting", min_distance=0)
    never = {int(p) for p, f in zip(votes.positions, votes.final) if not np.isfinite(f)}
    assert never
    with pytest.warns(UserWarning, match="hw_voting leaves .* unscored") as caught:
        result = prune(path, budget=100, policies=["hw_voting"], params={"hw_voting": {"min_distance": 0}})
    unprotected_never = {i for i in never if not result.protected[i]}
    assert f"leaves {len(unprotected_never)} unprotected" in str(caught[0].message) and unprotected_never
    assert never.isdisjoint(result.pruned_units["hw_voting"])
    assert result.pruned_units["hw_voting"]


def test_hw_token_ties_prune_the_earliest_first(scratch):
    path, prompt = conversation_capture(scratch, steps=2)
    result = prune(path, budget=10, policies=["hw_symmetric_voting"])  # after one step: scores 254 or 256
    final = score(path, "hw_symmetric_voting").final
    chosen = result.pruned_units["hw_symmetric_voting"]
    lowest = min(final[c] for c in chosen)
    candidates = [i for i in range(len(prompt)) if not result.protected[i] and final[i] == lowest]
    assert chosen == sorted(candidates)[: len(chosen)]


def test_messages_per_turn_without_the_template():
    texts = ["<|im_start|>", "system", "\n", "Be", " kind", "<|im_end|>", "\n", "<|im_start|>", "user", "\n", "Hi"]
    texts += ["<|im_end|>", "\n", "<|im_start|>", "assistant", "\n"]
    turns = [0] * 7 + [1] * 6 + [2] * 3
    roles = ["system"] * 7 + ["user"] * 6 + ["assistant"] * 3
    kept = np.ones(len(texts), dtype=bool)
    kept[4] = False
    assert messages(texts, turns, roles, kept) == [
        {"role": "system", "content": "Be"},
        {"role": "user", "content": "Hi"},
    ]


def test_write_prompt_names_its_policy_or_refuses(scratch, tmp_path, capsys):
    path, _ = conversation_capture(scratch)
    out = tmp_path / "p.txt"
    assert main(["prune", path, "--write-prompt", str(out)]) == 2
    assert "--policy" in capsys.readouterr().err and not out.exists()
    assert main(["prune", path, "--write-prompt", str(out), "--policy", "hw_frontend", "--unit", "sentence"]) == 0
    capsys.readouterr()
    text = out.read_text()
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    out_json = tmp_path / "m.json"
    code = main(["prune", path, "--policies", "hw_frontend", "--write-prompt", str(out_json), "--messages", "--json"])
    assert code == 0
    written = json.loads(capsys.readouterr().out)["written"]
    assert written == {"path": str(out_json), "policy": "hw_frontend", "format": "messages"}
    roles = [m["role"] for m in json.loads(out_json.read_text())]
    assert roles == ["system", "user", "assistant", "user"]


def test_messages_needs_write_prompt(scratch, capsys):
    path, _ = conversation_capture(scratch)
    assert main(["prune", path, "--messages"]) == 2
    assert "--write-prompt" in capsys.readouterr().err


@pytest.mark.parametrize("rule", ["hw_frontend", "hw_cumulative", "hw_magnitude_v3"])
def test_score_command_json_has_the_fields(scratch, rule, capsys):
    path, _ = conversation_capture(scratch)
    assert main(["score", path, "--rule", rule, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rule"] == rule and len(out["positions"]) == len(out["final"]) == len(out["peak"])
    assert out["final"] == [None if not np.isfinite(f) else f for f in score(path, rule).final.tolist()]
    assert ("prune_order" in out) == (rule == "hw_frontend")
    assert main(["score", path, "--rule", rule, "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{rule} (") and "top 2 sentences:" in text and "bottom 2 tokens:" in text
    assert ("pruneToFit deletes" in text) == (rule == "hw_frontend")


def test_score_reads_reduce_outputs_exactly_or_warns(scratch, tmp_path):
    import warnings

    from halo_fast.analysis import DataWarning

    path, _ = conversation_capture(scratch)
    want = score(path, "hw_frontend")
    js = tmp_path / "js.reduced.h5"
    assert main(["reduce", path, "--op", "mean_js", "-o", str(js)]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # made the front end's way: no warning
        got = score(str(js), "hw_frontend")
    np.testing.assert_array_equal(got.final, want.final)
    assert got.prune_order == want.prune_order
    plain = tmp_path / "plain.reduced.h5"
    assert main(["reduce", path, "-o", str(plain)]) == 0
    with pytest.warns(DataWarning, match="aggregated as mean_js"):
        score(str(plain), "hw_frontend")


def test_generated_texts_come_from_every_token_of_the_capture(scratch):
    from halo_fast.analysis import open_reduced
    from halo_fast.analysis.conversation import context_tokens

    path, prompt = conversation_capture(scratch)  # step 0 has no attention: no row of the reduction holds it
    red = open_reduced(path)
    assert int(red.steps[0]) == 1
    tokens = context_tokens(red)
    assert tokens.text[len(prompt)] == " g0" and tokens.turn[len(prompt)] == tokens.current_turn == 4


def test_hw_rules_warn_when_not_on_every_layer_head_and_step(scratch):
    from halo_fast.analysis import DataWarning

    path, _ = conversation_capture(scratch)
    with pytest.warns(DataWarning, match="some layers or heads only"):
        score(path, "hw_voting", reduce_options={"layers": [0]})
    with pytest.warns(DataWarning, match="some steps only"):
        score(path, "hw_frontend", reduce_options={"every": 2})


def test_messages_need_turns(scratch, tmp_path, capsys):
    path, prompt = conversation_capture(scratch)
    doc = json.loads(Path(path).read_text())
    for p in doc["prompt_tokens"]:
        del p["turn_id"]
    bare = tmp_path / "no_turns.json"
    bare.write_text(json.dumps(doc))
    out = tmp_path / "m.json"
    assert main(["prune", str(bare), "--policies", "peak", "--write-prompt", str(out), "--messages"]) == 2
    assert "turn_id" in capsys.readouterr().err and not out.exists()
