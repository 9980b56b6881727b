"""The analyses warn (DataWarning) on data ``check`` would flag -- rows that are not probabilities,
repeated steps -- and stay quiet on clean probabilities and on logits; the CLI shows one line each."""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np
import pytest

import halo_fast
from builders import capture_doc, write
from halo_fast.analysis import DataWarning, data_problems, open_reduced
from halo_fast.cli.main import main
from halo_fast.synth import write_capture

NOT_PROBABILITIES = "do not sum to 1 over their context"
REPEATED = "steps recorded more than once"


def _tensors(kind: str, n: int = 6, seed: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "probabilities":
        return [rng.dirichlet(np.ones(6 + i), (2, 3)).astype(np.float32) for i in range(n)]
    if kind == "garbage":  # non-negative, rows summing to ~3: neither probabilities nor logits
        return [rng.uniform(0.0, 1.0, (2, 3, 6 + i)).astype(np.float32) for i in range(n)]
    raise ValueError(kind)


@pytest.fixture
def clean(tmp_path):
    return write(tmp_path / "clean.json", capture_doc(_tensors("probabilities")))


@pytest.fixture
def garbage(tmp_path):
    return write(tmp_path / "garbage.json", capture_doc(_tensors("garbage")))


@pytest.fixture
def repeated(tmp_path):
    return write(tmp_path / "repeated.json", capture_doc(_tensors("probabilities"), steps=[0, 1, 1, 2, 3, 3]))


@pytest.fixture(scope="module")
def logits(tmp_path_factory):
    path = tmp_path_factory.mktemp("warnings") / "logits.json"
    write_capture(path, layers=2, heads=2, prompt=40, tokens=8, logits=True, workers=0)
    return str(path)


def _analyses():
    from halo_fast.analysis.decay import decay_analysis
    from halo_fast.analysis.distance import distance_analysis
    from halo_fast.analysis.prune import prune
    from halo_fast.analysis.scoring import score
    from halo_fast.analysis.sentences import sentence_attention
    from halo_fast.analysis.stats import step_stats
    from halo_fast.analysis.sweep import sweep

    return {
        "sentences": sentence_attention,
        "decay": decay_analysis,
        "distance": distance_analysis,
        "stats": step_stats,
        "prune": prune,
        "sweep": sweep,
        "score": lambda source: score(source, "cumulative"),
    }


ANALYSES = ["sentences", "decay", "distance", "stats", "prune", "sweep", "score"]


# ----------------------------------------------------------------- the library


@pytest.mark.parametrize("name", ANALYSES)
def test_every_analysis_warns_on_rows_that_are_not_probabilities(name, garbage):
    with pytest.warns(DataWarning, match=NOT_PROBABILITIES) as caught:
        _analyses()[name](garbage)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(f"{garbage}: 6 of 6 reduced rows") and "\n" not in message
    assert "neither probabilities nor logits" in message and "check" in message


@pytest.mark.parametrize("name", ANALYSES)
def test_every_analysis_warns_on_repeated_steps(name, repeated):
    with pytest.warns(DataWarning, match=REPEATED) as caught:
        _analyses()[name](repeated)
    assert [str(w.message) for w in caught] == [
        f"{repeated}: steps recorded more than once: 1 (x2), 3 (x2); each copy counts as a step of its own "
        "in every analysis (`python -m halo_fast check` says more)"
    ]


@pytest.mark.parametrize("name", ANALYSES)
def test_clean_probabilities_and_logits_do_not_warn(name, clean, logits):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        _analyses()[name](clean)
        _analyses()[name](logits)  # logits are a known kind: their rows need not sum to 1


def test_the_expected_sum_follows_the_op(clean, garbage):
    # a sum over 2 layers x 3 heads of probability rows sums to 6; max and min are not judged
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        for op in ("mean", "nanmean", "sum", "max", "min"):
            open_reduced(clean, op=op)
        open_reduced(clean, op="sum", layers="0", over=("layers", "heads"))  # 3 rows folded
        open_reduced(garbage, op="max")
    with pytest.warns(DataWarning, match="do not sum to 6 over"):
        open_reduced(garbage, op="sum")
    with pytest.warns(DataWarning, match="do not sum to 3 over"):
        open_reduced(garbage, op="sum", over="heads")  # [T, layers, C]: each row folds the 3 heads
    with pytest.warns(DataWarning, match="do not sum to 1 over"):
        open_reduced(garbage, over="layers")  # [T, heads, C]


def test_only_the_bad_rows_are_counted_and_nan_rows_are_left_to_check(tmp_path):
    tensors = _tensors("probabilities")
    tensors[2] = tensors[2] * 2  # one step off
    tensors[4][0, 0, 1] = np.nan  # a NaN row: `check` counts NaN; no claim about its sum
    path = write(tmp_path / "one_bad.json", capture_doc(tensors))
    with pytest.warns(DataWarning) as caught:
        open_reduced(path)
    assert len(caught) == 1 and "1 of 5 reduced rows" in str(caught[0].message)
    assert "(sums 1..2)" in str(caught[0].message)


def test_reduce_outputs_and_results_are_judged_too(garbage, tmp_path):
    from halo_fast.store import save_reduced

    with pytest.warns(DataWarning):
        red = open_reduced(garbage)
    saved = save_reduced(red, str(tmp_path / "g.npz"), "npz")
    with pytest.warns(DataWarning, match=f"^{saved}: "):
        open_reduced(saved)
    os.unlink(garbage)  # the judgement needs the matrix only, never the capture again
    loose = dataclasses.replace(red, source=None)
    with pytest.warns(DataWarning, match="^the reduced attention: 6 of 6"):
        open_reduced(loose)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert open_reduced(loose, check=False) is loose


def test_data_problems_lists_both_kinds_and_nothing_when_clean(clean):
    red = halo_fast.reduce(clean)
    assert data_problems(red) == []
    twice = dataclasses.replace(red, steps=np.zeros_like(red.steps))
    bad = dataclasses.replace(twice, data=red.data * 3)
    problems = data_problems(bad)
    assert len(problems) == 2 and NOT_PROBABILITIES in problems[0] and "more than once: 0 (x6);" in problems[1]
    pairs = dataclasses.replace(red, steps=np.repeat(np.arange(3), 2))
    (message,) = data_problems(pairs)
    assert "once: 0 (x2), 1 (x2), 2 (x2);" in message
    empty = dataclasses.replace(red, data=red.data[:0], steps=red.steps[:0], context_lengths=red.context_lengths[:0])
    assert data_problems(empty) == []


def test_more_than_five_repeated_steps_are_summarised(clean):
    red = halo_fast.reduce(clean)
    wide = dataclasses.replace(
        red,
        data=np.repeat(red.data, 3, axis=0)[:14],
        steps=np.repeat(np.arange(7), 2),
        context_lengths=np.repeat(red.context_lengths, 3)[:14],
    )
    (message,) = data_problems(wide)
    assert "0 (x2), 1 (x2), 2 (x2), 3 (x2), 4 (x2) and 2 more;" in message


def test_report_and_per_layer_distance_warn_once(garbage, tmp_path):
    from halo_fast.analysis.distance import distance_analysis
    from halo_fast.analysis.report import report

    with pytest.warns(DataWarning) as caught:
        distance_analysis(garbage, per_layer=True)
    assert len(caught) == 1
    pytest.importorskip("matplotlib")
    with pytest.warns(DataWarning) as caught:
        report(garbage, tmp_path / "r.md")
    assert len(caught) == 1


# ----------------------------------------------------------------- the command line


@pytest.mark.parametrize("command", ["stats", "sentences", "decay", "distance", "prune", "sweep"])
def test_the_cli_prints_one_warning_line_and_goes_on(command, garbage, capsys):
    assert main([command, garbage, "--json"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"warning: {garbage}: 6 of 6 reduced rows do not sum to 1")
    assert "DataWarning" not in captured.err and ".py:" not in captured.err
    assert captured.out.startswith("{")  # the result is still printed


def test_the_cli_report_warns_once_for_both_problems(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    tensors = _tensors("garbage")
    path = write(tmp_path / "both.json", capture_doc(tensors, steps=[0, 1, 2, 2, 3, 4]))
    assert main(["report", path, "-o", str(tmp_path / "r.md"), "--json"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("warning: ") and lines[1].startswith("warning: ")
    assert NOT_PROBABILITIES in lines[0] and f"{REPEATED}: 2 (x2)" in lines[1]


def test_the_cli_is_quiet_on_clean_data_and_logits(clean, logits, capsys):
    for path in (clean, logits):
        assert main(["stats", path, "--json"]) == 0
        assert capsys.readouterr().err == ""


def test_the_cli_restores_python_warnings_afterwards(garbage, capsys):
    before_show, before_filters = warnings.showwarning, list(warnings.filters)
    assert main(["stats", garbage]) == 0
    capsys.readouterr()
    assert warnings.showwarning is before_show and warnings.filters == before_filters
    with pytest.warns(DataWarning):  # the library still warns as ever
        open_reduced(garbage)


def test_the_cli_shows_other_warnings_as_one_line_too(tmp_path, capsys):
    from halo_fast.synth.writers import write_directory

    path = write_directory(tmp_path / "capture_1", kind="bin", skip={2}, layers=2, heads=2, prompt=12, tokens=5)
    assert main(["info", path, "--json"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "missing token indices 2" in lines[0]
