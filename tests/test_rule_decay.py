"""The decay rate recommended for the rule a user runs: its arithmetic, and decay, report and sweep agreeing."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from halo_fast.analysis import matrix, open_reduced
from halo_fast.analysis.decay import decay_analysis, fit_series
from halo_fast.analysis.report import report
from halo_fast.analysis.rule_decay import describe, increments, own_decay, recommend
from halo_fast.analysis.scoring import rule_defaults
from halo_fast.analysis.sweep import sweep
from test_hw_prune import conversation_capture


@pytest.fixture
def capture(scratch):
    return conversation_capture(scratch, steps=40, seed=2)[0]


@pytest.mark.parametrize("rule", ["hw_frontend", "hw_cumulative", "hw_voting", "magnitude", "cumulative"])
def test_decay_and_report_agree_for_the_rule(capture, tmp_path, rule):
    want = decay_analysis(capture, rule=rule).recommendation
    assert want["rule"] == rule and want["rule_decay"] == own_decay(rule, rule_defaults(rule))
    # the report's pruning runs the rule too: hw_voting says which tokens it cannot prune
    expect = pytest.warns(UserWarning, match="unscored") if rule == "hw_voting" else contextlib.nullcontext()
    with expect:
        answers = report(capture, tmp_path / "r.md", rule=rule)["answers"]
    assert answers["rule"] == rule
    assert answers["recommended_decay_rate"] == want["decay_rate"]
    assert f"for the rule {rule}" in (tmp_path / "r.md").read_text()


def test_sweep_recommends_for_the_rule_it_sweeps(capture):
    swept = sweep(capture, decay_rate=[0.003]).to_json()
    assert swept["rule"] == "cumulative"
    assert swept["recommended_decay_rate"] == decay_analysis(capture, rule="cumulative").recommended_decay_rate


def test_recommendation_is_median_fade_times_median_increment(capture):
    red = open_reduced(capture)
    data, ctx = matrix(red)
    n = len(red.prompt)
    fades = fit_series(np.asarray(red.steps, float), data[:, :n], "probabilities").rate
    params = rule_defaults("hw_symmetric_voting")
    rec = recommend(red, "hw_symmetric_voting", params, fades, n, (data, ctx))
    inc = increments(red, "hw_symmetric_voting", params, n, (data, ctx))[:, 1:]
    assert set(np.unique(inc[np.isfinite(inc)])) <= {0.0, 1.0}
    level = np.nanmean(inc, axis=0)
    rewarded = level > 0
    expected = max(float(np.median(fades[1:n][rewarded])), 0.0) * float(np.median(level[rewarded]))
    assert rec["decay_rate"] == pytest.approx(expected) and rec["tokens_rewarded"] == int(rewarded.sum())
    assert rec["units"] == "votes per step" and rec["rule_decay"] == 1.0


def test_votes_count_only_far_tokens(capture):
    red = open_reduced(capture)
    data, ctx = matrix(red)
    n = len(red.prompt)
    inc = increments(red, "hw_voting", {"min_distance": 30, "known_tokens": None}, n, (data, ctx))
    near = (ctx[:, None] - np.arange(n)[None, :]) < 30
    assert np.all(inc[near & np.isfinite(inc)] == 0.0)
    assert np.nansum(inc[~near]) > 0


def test_no_fit_gives_no_number(scratch):
    path, _ = conversation_capture(scratch, steps=2)  # one step with attention: nothing to fit
    out = decay_analysis(path, rule="hw_frontend").to_json()
    assert out["recommended_decay_rate"] is None and out["recommendation"]["decay_rate"] is None
    assert describe(out["recommendation"]) == (
        "recommended decay_rate for hw_frontend: - (no prompt token could be fitted)"
    )
