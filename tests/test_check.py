"""check: the row-statistics kernel against numpy, and each planted problem found at its step."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import halo_fast.synth
from builders import capture_doc, write
from halo_fast.cli.main import main
from halo_fast.kernels.rowstats import row_stats
from halo_fast.quality import check


def numpy_row_stats(values, n_rows, ctx):
    rows = values.reshape(n_rows, ctx).astype(np.float64)
    finite = np.isfinite(rows)
    sums = np.where(finite, rows, 0.0).sum(axis=1)
    nans = np.isnan(rows).sum(axis=1)
    infs = np.isinf(rows).sum(axis=1)
    clean = finite.all(axis=1)
    zero = clean & (ctx > 0) & np.all(rows == 0, axis=1)
    constant = clean & (ctx > 1) & np.array([len(np.unique(r)) <= 1 for r in rows]) & ~zero
    return sums, nans, infs, constant, zero


@given(n_rows=st.integers(1, 5), ctx=st.integers(0, 6), data=st.data())
def test_row_stats_matches_numpy(n_rows, ctx, data):
    elements = st.sampled_from([0.0, -0.0, 1.0, 0.25, -3.5, np.nan, np.inf, -np.inf, 1e-45])
    values = data.draw(arrays(np.float32, n_rows * ctx, elements=elements))
    outputs = (
        np.empty(n_rows),
        np.empty(n_rows, np.int64),
        np.empty(n_rows, np.int64),
        np.empty(n_rows, np.bool_),
        np.empty(n_rows, np.bool_),
    )
    row_stats(values, n_rows, ctx, *outputs)
    for got, want in zip(outputs, numpy_row_stats(values, n_rows, ctx)):
        np.testing.assert_array_equal(got, want)


def test_clean_synth_capture_is_ok(tmp_path, capsys):
    path = str(tmp_path / "synth.json")
    halo_fast.synth.write_capture(path, layers=2, heads=3, prompt=40, tokens=6, seed=1, workers=0)
    report = check(path)
    assert report["ok"] and report["kind"] == "probabilities" and report["tokens_with_attention"] == 5
    assert main(["check", path]) == 0
    assert "no problems" in capsys.readouterr().out


def test_planted_problems_are_found(tmp_path, capsys):
    rng = np.random.default_rng(2)
    tensors = [rng.dirichlet(np.ones(4 + i), (2, 2)).astype(np.float32) for i in range(7)]
    tensors[1][0, 0] *= 2  # a row summing to 2
    tensors[2][1, 1, 0] = np.nan
    tensors[3][0, 1, 1] = np.inf
    tensors[4][1, 0] = 0.25  # constant row (and off one)
    tensors[5][0, 0] = 0.0  # all-zero row
    steps = [0, 1, 2, 3, 4, 5, 5]  # step 5 twice; step 6 never
    doc = capture_doc(tensors, steps=steps)
    doc["generated_tokens"][6]["attention"]["shape"][2] = tensors[6].shape[2]
    doc["prompt_tokens"][3]["position"] = 2  # position 2 twice
    path = write(tmp_path / "bad.json", doc)
    report = check(path)
    found = {p["problem"]: p for p in report["problems"]}
    assert not report["ok"]
    assert found["row_sums"]["steps"] == [1, 2, 3, 4, 5]  # rows with NaN or inf sum their finite values
    assert found["nan"]["steps"] == [2] and found["nan"]["count"] == 1
    assert found["inf"]["steps"] == [3]
    assert found["constant_rows"]["steps"] == [4]
    assert found["zero_rows"]["steps"] == [5]
    assert found["duplicate_steps"]["steps"] == [5]
    assert found["repeated_prompt_positions"]["positions"] == [2]
    assert "missing_steps" not in found
    assert main(["check", path, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["problems"]


def test_missing_steps_and_context_growth(tmp_path):
    tensors = [np.full((1, 1, c), 1.0 / c, np.float32) for c in (4, 5, 7, 8)]
    path = write(tmp_path / "gaps.json", capture_doc(tensors, steps=[0, 1, 3, 5]))
    found = {p["problem"]: p for p in check(path)["problems"]}
    assert found["missing_steps"]["steps"] == [2, 4]
    assert found["context_growth"]["steps"] == [5]  # 7 -> 8 over two steps


def test_logits_are_not_held_to_row_sums(tmp_path):
    rng = np.random.default_rng(0)
    tensors = [(rng.standard_normal((2, 2, 3 + i)) * 10).astype(np.float32) for i in range(3)]
    report = check(write(tmp_path / "logits.json", capture_doc(tensors)))
    assert report["kind"] == "logits" and report["ok"]
