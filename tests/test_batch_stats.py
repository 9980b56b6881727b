"""Statistics across captures: the bootstrap interval against a plain twin, its properties, batch-stats."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from halo_fast.cli.main import main
from halo_fast.study.stats import bootstrap_ci, figure_stats, resample_indices


def twin_ci(values, level=0.95, resamples=10_000, seed=0):
    """The percentile bootstrap in plain Python, on the same resample indices."""
    if len(values) < 2:
        return None
    means = []
    for block in resample_indices(len(values), resamples, seed):
        for row in block.tolist():
            means.append(math.fsum(values[i] for i in row) / len(row))
    means.sort()

    def quantile(q):  # linear interpolation between order statistics (numpy's default)
        at = q * (len(means) - 1)
        low = math.floor(at)
        high = min(low + 1, len(means) - 1)
        return means[low] + (means[high] - means[low]) * (at - low)

    tail = (1 - level) / 2
    return quantile(tail), quantile(1 - tail)


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=2, max_size=40), st.floats(0.5, 0.99), st.integers(0, 2**32))
def test_bootstrap_matches_its_plain_twin(values, level, seed):
    got = bootstrap_ci(values, level, resamples=1500, seed=seed)  # two blocks, the second partial
    want = twin_ci(values, level, resamples=1500, seed=seed)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-9)
    assert min(values) - 1e-9 <= got[0] <= got[1] <= max(values) + 1e-9


def test_hand_cases():
    assert bootstrap_ci([]) is None and bootstrap_ci([3.0]) is None
    assert bootstrap_ci([2.5] * 7) == (2.5, 2.5)
    assert bootstrap_ci([0.0, 1.0], resamples=4000, seed=1) == twin_ci([0.0, 1.0], resamples=4000, seed=1)
    x = np.random.default_rng(2).normal(size=20).tolist()
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)  # a seed is a result
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)


def test_the_interval_of_a_normal_sample_is_about_two_standard_errors():
    x = np.random.default_rng(7).normal(10.0, 2.0, 400)
    low, high = bootstrap_ci(x)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert low < x.mean() < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)


def test_figure_stats_counts_values_of_ok_and_skipped_rows_only():
    rows = [
        {"status": "ok", "a": "1.0", "b": ""},
        {"status": "skipped", "a": "3.0", "b": "2"},
        {"status": "failed", "a": "100", "b": "100"},
        {"status": "ok", "a": "nan", "b": "4"},
    ]
    a, b = figure_stats(["a", "b"], rows)
    assert a == {"figure": "a", "n": 2, "mean": 2.0, "ci_low": a["ci_low"], "ci_high": a["ci_high"]}
    assert (a["ci_low"], a["ci_high"]) == bootstrap_ci([1.0, 3.0])
    assert b["n"] == 2 and b["mean"] == 3.0
    (c,) = figure_stats(["c"], [{"status": "ok", "c": "5"}])
    assert c == {"figure": "c", "n": 1, "mean": 5.0, "ci_low": None, "ci_high": None}


def _summary(tmp_path, rows):
    path = tmp_path / "summary.csv"
    columns = ["capture", "name", "status", "error", "seconds", "bytes", "worker", "rate[a]", "mass_mean[h2o@64]"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def test_batch_stats_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [
        {"capture": f"c{i}.json", "name": f"c{i}", "status": "ok", "rate[a]": rng.normal(), "mass_mean[h2o@64]": i}
        for i in range(6)
    ]
    rows.append({"capture": "bad.json", "name": "bad", "status": "failed", "error": "bad.json, byte 3: x"})
    _summary(tmp_path, rows)
    assert main(["batch-stats", str(tmp_path), "--json", "--resamples", "2000", "-o", str(tmp_path / "s.csv")]) == 0
    out = json.loads(capsys.readouterr().out)
    by_name = {r["figure"]: r for r in out["figures"]}
    assert list(by_name) == ["rate[a]", "mass_mean[h2o@64]"]
    values = [float(r["rate[a]"]) for r in rows[:6]]
    assert by_name["rate[a]"]["n"] == 6 and by_name["rate[a]"]["mean"] == pytest.approx(np.mean(values))
    assert (by_name["rate[a]"]["ci_low"], by_name["rate[a]"]["ci_high"]) == bootstrap_ci(values, resamples=2000)
    with open(tmp_path / "s.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert [r["figure"] for r in written] == ["rate[a]", "mass_mean[h2o@64]"] and written[1]["n"] == "6"
    assert main(["batch-stats", str(tmp_path / "summary.csv")]) == 0
    text = capsys.readouterr().out
    assert "rate[a]" in text and "95% bootstrap interval" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--level", "1.5"], "between 0 and 1"),
        (["--resamples", "0"], "at least 1"),
    ],
)
def test_batch_stats_usage_errors(args, message, tmp_path, capsys):
    _summary(tmp_path, [{"capture": "a", "status": "ok", "rate[a]": 1}])
    assert main(["batch-stats", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_batch_stats_refuses_a_csv_that_is_no_summary(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    assert main(["batch-stats", str(tmp_path / "x.csv")]) == 2
    assert "not a batch summary" in capsys.readouterr().err
    assert main(["batch-stats", str(tmp_path / "nothing")]) == 2
