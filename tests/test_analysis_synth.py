"""The analyses on synthetic captures with planted truth, through the library and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from halo_fast.synth import GROUP_DECAY_RATES, write_capture

NEW_COMMANDS = ["sentences", "decay", "distance", "stats", "prune", "sweep"]


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("analysis") / "synth.json"
    write_capture(path, layers=2, heads=3, prompt=200, tokens=128, seed=3, workers=0)
    return str(path)


@pytest.fixture(scope="module")
def logit_capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("analysis") / "synth_logits.json"
    write_capture(path, layers=2, heads=2, prompt=60, tokens=40, seed=4, logits=True, workers=0)
    return str(path)


@pytest.fixture(scope="module")
def reduced_files(capture, tmp_path_factory):
    from halo_fast import reduce
    from halo_fast.store import save_reduced

    folder = tmp_path_factory.mktemp("reduced")
    red = reduce(capture)
    return [save_reduced(red, str(folder / "c.reduced.h5"), "h5"), save_reduced(red, str(folder / "c.npz"), "npz")]


def cli(monkeypatch, capsys, *argv):
    from halo_fast.cli import main as entry

    code = entry.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_planted_decay_is_recovered_within_5_percent(capture):
    from halo_fast.analysis.decay import decay_analysis

    result = decay_analysis(capture)
    assert result.kind == "probabilities"
    for name, fit in result.groups.items():
        truth = GROUP_DECAY_RATES[name]
        assert abs(fit["rate"] - truth) <= 0.05 * truth, (name, fit)
        assert abs(fit["sentence_rate_median"] - truth) <= 0.05 * truth, (name, fit)
        assert fit["relative_error"] < 0.05
    assert result.recommended_decay_rate > 0
    assert result.recommendation["median_rate"] > 0


def test_irrelevant_sentences_fade_and_are_pruned_first(capture):
    from halo_fast.analysis import open_reduced, planted_groups
    from halo_fast.analysis.prune import prune
    from halo_fast.analysis.sentences import sentence_attention

    groups = planted_groups(open_reduced(capture).metadata)
    s = sentence_attention(capture)
    assert s.groups["irrelevant"]["final"] < s.groups["secondary"]["final"] < s.groups["critical"]["final"]
    irrelevant = {tuple(k) for k in groups["irrelevant"]}
    planted = {tuple(k) for members in groups.values() for k in members}
    candidates = sum(1 for role in s.roles if role != "system")
    red = open_reduced(capture)
    policies = ["mean", "cumulative"]  # magnitude and voting saturate: see docs/analysis.md
    for policy in policies:
        # grow the budget one sentence at a time: no other planted sentence goes before every irrelevant one
        for n in range(1, candidates + 1):
            result = prune(red, unit="sentence", budget=100.0 * n / candidates, policies=[policy])
            pruned = {tuple(u) for u in result.pruned_units[policy]} & planted
            if pruned - irrelevant:
                assert irrelevant <= pruned, (policy, n, pruned)
                break
    result = prune(red, unit="sentence", budget=30, policies=policies)
    for policy in policies:
        mass = result.mass[policy]
        assert np.all((mass > 0.5) & (mass <= 1.0))
    assert result.overlap()["mean/cumulative"] > 0.5


def test_reduce_outputs_give_the_same_answers(capture, reduced_files):
    from halo_fast.analysis.sentences import sentence_attention
    from halo_fast.analysis.stats import step_stats

    want = sentence_attention(capture)
    for path in reduced_files:
        got = sentence_attention(path)
        np.testing.assert_array_equal(got.sum, want.sum)
        assert got.texts == want.texts and list(got.groups) == list(want.groups)
        assert step_stats(path, every=2).steps.tolist() == [s for s in want.steps.tolist() if s % 2 == 0]
    with pytest.raises(ValueError, match="already reduced"):
        sentence_attention(reduced_files[0], layers="0")


def test_reduced_and_loaded_inputs_take_the_same_options(capture):
    """A Reduced is subset by every/tokens without being changed, refuses other options; a loaded Capture
    is reduced with them."""
    import halo_fast
    from halo_fast.analysis import open_reduced
    from halo_fast.analysis.distance import distance_analysis
    from halo_fast.analysis.stats import step_stats

    red = halo_fast.reduce(capture)
    steps = red.steps.copy()
    assert step_stats(red, every=2).steps.tolist() == [s for s in steps.tolist() if s % 2 == 0]
    assert np.array_equal(red.steps, steps)  # the caller's result is left whole
    assert open_reduced(red) is red
    for options in ({"layers": "0"}, {"op": "max"}, {"over": "heads"}):
        with pytest.raises(ValueError, match="already reduced"):
            open_reduced(red, **options)
    with pytest.raises(ValueError, match="already reduced"):
        distance_analysis(red, per_layer=True)
    loaded = halo_fast.load(capture)
    got = open_reduced(loaded, op="max", layers="0", tokens=(0, 5))
    want = halo_fast.reduce(capture, op="max", layers="0", tokens=(0, 5))
    assert np.array_equal(got.data, want.data, equal_nan=True) and got.steps.tolist() == want.steps.tolist()


def test_logits_are_detected_and_trend_linear(logit_capture):
    from halo_fast.analysis.decay import decay_analysis
    from halo_fast.analysis.stats import step_stats

    assert step_stats(logit_capture).kind == "logits"
    result = decay_analysis(logit_capture)
    assert result.kind == "logits" and np.all(np.isnan(result.tokens.half_life))
    assert 0 <= result.negative_trend_share <= 1
    assert decay_analysis(logit_capture, kind="probabilities").kind == "probabilities"


def test_distance_profile_shows_the_local_wave(capture):
    from halo_fast.analysis.distance import distance_analysis

    d = distance_analysis(capture, per_layer=True)
    assert d.profile[0] > d.profile[30] and d.local_share > d.uniform_local_share
    assert sorted(d.per_layer) == [0, 1]


def test_scores_and_sweep(capture):
    from halo_fast.analysis.scoring import score
    from halo_fast.analysis.sweep import parse_values, sweep

    mag = score(capture, "magnitude", prompt_only=True, trajectory=True, start=255.0)
    assert np.isnan(mag.final[0]) and mag.trajectory.shape[1] == len(mag.final)
    with pytest.raises(ValueError, match="takes"):
        score(capture, "voting", decay_rate=1.0)
    assert parse_values("0.001:0.01:10")[-1] == pytest.approx(0.01) and parse_values("0.5,1,2") == [0.5, 1.0, 2.0]
    result = sweep(capture, decay_rate=parse_values("0.001:0.01:5"), boost=[0.5, 1.0], distance=["none", "linear"])
    out = result.to_json()
    assert out["points"] == 20 and 0 < out["best"]["mass_retained_mean"] <= 1


def test_cli_json_fields(monkeypatch, capsys, capture, tmp_path):
    code, out, _ = cli(monkeypatch, capsys, "sentences", capture, "--json", "--group", "bad=1:3,1:4")
    row = json.loads(out)["sentences"][0]
    assert code == 0 and set(row) >= {"turn_id", "sentence_id", "role", "text", "n_tokens", "mean", "peak", "final"}
    code, out, _ = cli(monkeypatch, capsys, "decay", capture, "--json", "--every", "2")
    doc = json.loads(out)
    assert code == 0 and doc["kind"] == "probabilities" and doc["recommended_decay_rate"] > 0
    assert set(doc["tokens"][1]) == {"position", "rate", "half_life", "r2"}
    assert set(doc["sentences"][0]) == {"turn_id", "sentence_id", "rate", "half_life", "r2"}
    code, out, _ = cli(monkeypatch, capsys, "distance", capture, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["local_window"] == 20 and 0 < doc["local_share"] < 1 and doc["profile"]
    code, out, _ = cli(monkeypatch, capsys, "stats", capture, "--json")
    assert code == 0 and json.loads(out)["rows_sum_to_one"] is True
    target = tmp_path / "pruned.txt"
    code, out, _ = cli(
        monkeypatch,
        capsys,
        "prune",
        capture,
        "--json",
        "--unit",
        "sentence",
        "--write-prompt",
        target,
        "--policy",
        "mean",
    )
    doc = json.loads(out)
    assert code == 0 and doc["unit"] == "sentence" and doc["budget"] == 30
    assert set(doc["policies"]["peak"]) >= {"kept", "pruned", "mass_retained_mean", "mass_retained_min"}
    text = target.read_text(encoding="utf-8")
    assert "You are a careful analyst" in text and "nice day today" not in text
    code, _, err = cli(monkeypatch, capsys, "prune", capture, "--write-prompt", target)
    assert code == 2 and "--force" in err
    code, out, _ = cli(monkeypatch, capsys, "sweep", capture, "--decay-rate", "0.001:0.01:4", "--boost", "1,2")
    assert code == 0 and "8 grid points" in out


def test_cli_errors(monkeypatch, capsys, capture, tmp_path):
    code, _, err = cli(monkeypatch, capsys, "sentences", capture, "--group", "nope")
    assert code == 2 and "NAME=" in err
    code, _, err = cli(monkeypatch, capsys, "decay", capture, "--group", "x=9:9")
    assert code == 2 and "9:9" in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"metadata": {}, "prompt_tokens": [], "generated_tokens": [{"step": 0, "attention": ')
    code, _, err = cli(monkeypatch, capsys, "stats", broken)
    assert code == 1
    code, _, err = cli(monkeypatch, capsys, "sweep", capture, "--distance", "cubic")
    assert code == 2 and "cubic" in err


def test_cli_tables_are_readable(monkeypatch, capsys, capture):
    for command in NEW_COMMANDS:
        code, out, _ = cli(monkeypatch, capsys, command, capture)
        assert code == 0 and out.strip(), command
