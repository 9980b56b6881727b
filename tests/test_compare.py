"""compare: two generations (full prompt, pruned prompt) and the edit-distance kernel against its twin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from halo_fast.analysis.compare import compare, match_sentences
from halo_fast.analysis.kernels import edit_distance
from halo_fast.cli.main import main
from test_hw_rules import capture_document


def twin_edit_distance(a, b) -> int:
    """Levenshtein distance, the textbook table."""
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return table[len(a)][len(b)]


@given(st.lists(st.integers(0, 3), max_size=12), st.lists(st.integers(0, 3), max_size=12))
def test_edit_distance_matches_its_twin(a, b):
    scratch = np.empty(len(b) + 1, dtype=np.int64)
    assert edit_distance(np.array(a, np.int64), np.array(b, np.int64), scratch) == twin_edit_distance(a, b)


def test_edit_distance_refuses_short_scratch():
    assert edit_distance(np.zeros(2, np.int64), np.zeros(3, np.int64), np.empty(3, np.int64)) == -1


def run_capture(scratch, sentences, generated, seed):
    """A capture whose prompt holds ``sentences`` (texts, one user sentence each) and generates ``generated``."""
    prompt = []
    for s, words in enumerate(sentences):
        for w in words:
            k = len(prompt)
            prompt.append(
                {"token_id": k, "text": w, "position": k, "turn_id": 1, "message_role": "user", "sentence_id": s}
            )
    rng = np.random.default_rng(seed)
    tensors = []
    for step in range(len(generated)):
        w = rng.gamma(1.0, size=(1, 2, len(prompt) + step))
        tensors.append((w / w.sum(axis=-1, keepdims=True)).astype(np.float32))
    doc = capture_document(prompt, tensors, False)
    for token, (tid, text) in zip(doc["generated_tokens"], generated):
        token["token_id"], token["text"] = tid, text
    return scratch(doc)


SENTENCES = [["Hi", "."], [" Key", " X", "."], [" Idle", " chat", "."], [" Why", "?"]]


@pytest.mark.decodes
def test_compare_finds_the_divergence_and_matches_sentences(scratch, capsys):
    full = run_capture(scratch, SENTENCES, [(1, " A"), (2, " B"), (3, " C"), (4, " D")], 0)
    pruned = run_capture(scratch, [SENTENCES[0], SENTENCES[1], SENTENCES[3]], [(1, " A"), (2, " B"), (9, " Z")], 1)
    result = compare(full, pruned)
    out = result.to_json()
    assert out["first_divergent_step"] == 2
    assert out["token_agreement"] == 2 / 3 and out["edit_distance"] == 2  # substitute C, delete D
    assert out["texts"] == {"common": " A B", "full": " C D", "pruned": " Z"}
    assert [(r["sentence_full"], r["sentence_pruned"]) for r in out["sentences"]] == [
        ("1:0", "1:0"),
        ("1:1", "1:1"),
        ("1:3", "1:2"),
    ]
    assert out["sentences_only_in_full"] == 1
    for key in ("common_share_full", "common_share_pruned"):
        assert abs(sum(r[key] for r in out["sentences"]) - 1.0) < 1e-9
    assert main(["compare", full, pruned, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["edit_distance"] == 2
    assert main(["compare", full, pruned]) == 0
    text = capsys.readouterr().out
    assert "first divergent step: 2" in text and " C D" in text and " Z" in text


@pytest.mark.decodes
def test_identical_runs_never_diverge(scratch):
    full = run_capture(scratch, SENTENCES, [(1, " A"), (2, " B")], 0)
    out = compare(full, full).to_json()
    assert out["first_divergent_step"] is None and out["token_agreement"] == 1.0 and out["edit_distance"] == 0
    assert all(r["change"] == 0.0 for r in out["sentences"])


@pytest.mark.decodes
def test_a_shorter_rerun_diverges_where_it_stops(scratch):
    full = run_capture(scratch, SENTENCES, [(1, " A"), (2, " B"), (3, " C")], 0)
    short = run_capture(scratch, SENTENCES, [(1, " A"), (2, " B")], 0)
    out = compare(full, short).to_json()
    assert out["first_divergent_step"] == 2 and out["edit_distance"] == 1 and out["token_agreement"] == 1.0


def test_sentences_pair_in_order_and_skip_empty_texts():
    assert match_sentences(["a", "b", "a", ""], ["a", "", "a", "c"]) == [(0, 0), (2, 2)]


@pytest.mark.decodes
def test_runs_without_token_ids_are_refused(scratch, tmp_path):
    import halo_fast

    full = run_capture(scratch, SENTENCES, [(1, " A"), (2, " B")], 0)
    doc = json.loads(Path(full).read_text())
    for token in doc["generated_tokens"]:
        del token["token_id"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(doc))
    with pytest.raises(halo_fast.CaptureError, match="no token_id"):
        compare(full, str(bare))
