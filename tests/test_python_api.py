"""Python for notebooks: a Capture to index and iterate, tables as DataFrames, one-line reprs, a clean
``dir(halo_fast)``; and the per-step sentence curves of ``sentences --json`` / ``--csv``."""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pytest

import halo_fast
from builders import capture_doc, write
from halo_fast.cli.main import main
from halo_fast.errors import MissingDependency
from halo_fast.synth import write_capture


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    path = tmp_path_factory.mktemp("python_api") / "synth.json"
    write_capture(path, layers=2, heads=2, prompt=40, tokens=8, workers=0)
    return str(path)


@pytest.fixture
def small(tmp_path):
    """Four tokens, the first without attention; context 3..5; probabilities."""
    rng = np.random.default_rng(11)
    tensors = [rng.dirichlet(np.ones(3 + i), (2, 3)).astype(np.float32) for i in range(4)]
    return write(tmp_path / "small.json", capture_doc(tensors, null_first=True)), tensors


# ----------------------------------------------------------------- Capture: index and iterate


def test_capture_is_indexable_like_attention(small):
    path, tensors = small
    cap = halo_fast.load(path)
    assert len(cap) == 4
    assert cap[0] is None  # recorded without attention
    for i in range(1, 4):
        a = cap[i]
        assert a.dtype == np.float32 and a.shape == tensors[i].shape
        assert np.array_equal(a, tensors[i]) and np.shares_memory(a, cap.values)  # a view, not a copy
    assert np.array_equal(cap[-1], tensors[3]) and np.array_equal(cap[-3], tensors[1])
    assert cap[-4] is None
    assert np.array_equal(cap[np.int64(2)], tensors[2])  # numpy integers are indices too


@pytest.mark.parametrize("index", [4, 5, -5, -100])
def test_capture_index_past_either_end_is_an_index_error(small, index):
    cap = halo_fast.load(small[0])
    with pytest.raises(IndexError, match=f"token index {index} out of range for 4 generated tokens"):
        cap[index]


@pytest.mark.parametrize("index", [slice(0, 2), "step", 1.0])
def test_capture_refuses_what_is_not_one_token_index(small, index):
    cap = halo_fast.load(small[0])
    with pytest.raises(TypeError):
        cap[index]


def test_iterating_a_capture_yields_every_token_in_order(small):
    path, tensors = small
    cap = halo_fast.load(path)
    got = list(cap)
    assert len(got) == len(cap) and got[0] is None
    for a, want in zip(got[1:], tensors[1:]):
        assert np.array_equal(a, want) and np.shares_memory(a, cap.values)
    assert [a is None for a in cap] == [not x for x in cap.tokens["has_attention"].tolist()]


# ----------------------------------------------------------------- Table.to_pandas


def test_table_to_pandas_has_the_columns(small):
    pandas = pytest.importorskip("pandas")
    cap = halo_fast.load(small[0])
    for table in (cap.prompt_tokens, cap.tokens):
        frame = table.to_pandas()
        assert isinstance(frame, pandas.DataFrame)
        assert list(frame.columns) == table.columns and len(frame) == len(table)
        for name in table.columns:
            assert frame[name].tolist() == table[name].tolist(), name
    frame = cap.prompt_tokens.to_pandas()
    assert frame["text"].tolist()[:2] == [" p0", " p1"] and pandas.api.types.is_string_dtype(frame["message_role"])
    assert frame["position"].dtype == np.int64
    assert cap.tokens.to_pandas()["has_attention"].tolist() == [False, True, True, True]


def test_table_to_pandas_without_pandas_says_how_to_install(small, monkeypatch):
    cap = halo_fast.load(small[0])
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    with pytest.raises(MissingDependency, match=r"pip install 'halo_fast\[pandas\]'") as info:
        cap.tokens.to_pandas()
    assert isinstance(info.value, ImportError)


def test_the_pandas_extra_is_declared():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    assert extras["pandas"] == ["pandas>=1.5"]


# ----------------------------------------------------------------- one-line reprs


def _one_line(obj, starts: str) -> str:
    text = repr(obj)
    assert text.startswith(starts + "(") and text.endswith(")"), text
    assert "\n" not in text and "array(" not in text and len(text) < 240, text
    return text


def test_results_print_as_one_line(synth):
    from halo_fast.analysis import open_reduced, sentence_index
    from halo_fast.analysis.decay import decay_analysis
    from halo_fast.analysis.distance import distance_analysis
    from halo_fast.analysis.prune import prune
    from halo_fast.analysis.scoring import score
    from halo_fast.analysis.sentences import sentence_attention
    from halo_fast.analysis.stats import step_stats
    from halo_fast.analysis.sweep import sweep

    red = open_reduced(synth)
    n_steps = len(red.steps)
    assert _one_line(red, "Reduced") == (
        f"Reduced({synth!r}: mean over layers+heads, {n_steps} steps 1..{n_steps} x {red.data.shape[1]} context)"
    )
    by_layer = halo_fast.reduce(synth, over="heads")
    assert "x 2 layers x" in _one_line(by_layer, "Reduced")
    sentences = sentence_attention(red)
    groups = ", ".join(sentences.groups)
    assert _one_line(sentences, "SentenceAttention") == (
        f"SentenceAttention({len(sentences.keys)} sentences x {n_steps} steps, probabilities, groups {groups})"
    )
    assert _one_line(sentence_index(red.prompt), "Sentences").endswith(f"over {len(red.prompt)} prompt tokens)")
    decay = decay_analysis(red)
    assert "recommended decay_rate" in _one_line(decay, "DecayResult")
    _one_line(decay.tokens, "Trend")
    assert "2 layers" in _one_line(distance_analysis(synth, per_layer=True), "DistanceResult")
    assert _one_line(step_stats(red), "StepStats").startswith(f"StepStats({n_steps} steps, probabilities, rows sum")
    assert "30% of unprotected tokens by peak, mean" in _one_line(prune(red), "PruneResult")
    assert _one_line(score(red, "magnitude", trajectory=True), "Scores").endswith("with trajectory)")
    assert _one_line(sweep(red, boost=[0.5, 1.0]), "SweepResult").startswith("SweepResult(2 grid points")


def test_reduced_repr_without_steps_or_source(synth):
    import dataclasses

    red = halo_fast.reduce(synth)
    empty = dataclasses.replace(red, data=red.data[:0], steps=red.steps[:0], source=None)
    assert repr(empty) == f"Reduced(mean over layers+heads, 0 steps x {red.data.shape[1]} context)"


# ----------------------------------------------------------------- dir(halo_fast)


def test_dir_lists_the_public_names_only():
    import halo_fast.analysis  # noqa: F401  (leaves a submodule attribute on the package)

    names = dir(halo_fast)
    for noise in ("annotations", "TYPE_CHECKING", "analysis", "api", "errors", "capture", "reduction"):
        assert noise not in names, noise
    assert set(halo_fast.__all__) <= set(names)
    assert [n for n in names if not n.startswith("__")] == sorted(n for n in halo_fast.__all__ if n != "__version__")
    for name in halo_fast.__all__:
        assert getattr(halo_fast, name) is not None, name
    namespace: dict = {}
    exec("from halo_fast import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(halo_fast.__all__)


# ----------------------------------------------------------------- sentences --json / --csv: the curves


def _pair(capture) -> list[tuple[int, int]]:
    """The capture's last two sentences, as a group."""
    from halo_fast.analysis import open_reduced, sentence_index

    return sentence_index(open_reduced(capture).prompt).keys[-2:]


def _pair_option(capture) -> str:
    return "pair=" + ",".join(f"{t}:{s}" for t, s in _pair(capture))


def test_sentences_json_has_every_curve(synth, capsys):
    from halo_fast.analysis.sentences import sentence_attention

    assert main(["sentences", synth, "--json", "--group", _pair_option(synth)]) == 0
    doc = json.loads(capsys.readouterr().out)
    result = sentence_attention(synth, groups={"pair": _pair(synth)})
    steps = doc["steps"]
    assert steps == result.steps.tolist() and len(doc["sentences"]) == len(result.keys)
    for row in doc["sentences"]:
        s = result.keys.index((row["turn_id"], row["sentence_id"]))
        assert len(row["per_step"]) == len(steps)
        assert row["per_step"] == [None if not np.isfinite(v) else float(v) for v in result.sum[:, s]]
    assert doc["groups"]["pair"]["per_step"] == result.groups["pair"]["sum"].tolist()
    assert "written" not in doc


def test_sentences_per_step_is_null_where_a_sentence_has_no_value(tmp_path, capsys):
    tensors = [np.full((1, 1, 4), 0.25, np.float32) for _ in range(3)]
    tensors[1][0, 0, :3] = np.nan  # sentence 0:0 (prompt tokens 0-2) has no valid value at step 1
    path = write(tmp_path / "nan.json", capture_doc(tensors))
    assert main(["sentences", path, "--json"]) == 0
    rows = {(r["turn_id"], r["sentence_id"]): r for r in json.loads(capsys.readouterr().out)["sentences"]}
    assert rows[(0, 0)]["per_step"] == [0.75, None, 0.75] and rows[(0, 1)]["per_step"] == [0.25] * 3


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_sentences_csv_writes_the_curves(synth, tmp_path, capsys):
    from halo_fast.analysis.sentences import sentence_attention

    target = tmp_path / "curves.csv"
    assert main(["sentences", synth, "--csv", str(target), "--group", _pair_option(synth), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    result = sentence_attention(synth, groups={"pair": _pair(synth)})
    table = _read_csv(target)
    header, rows = table[0], table[1:]
    assert header == ["step"] + [f"{t}:{s}" for t, s in result.keys] + ["group:pair"]
    assert len(rows) == len(result.steps) and [int(r[0]) for r in rows] == result.steps.tolist()
    got = np.array([[float(x) if x else np.nan for x in r[1:]] for r in rows])
    want = np.column_stack([result.sum, result.groups["pair"]["sum"]])
    assert np.array_equal(got, want, equal_nan=True)  # the numbers read back exactly
    assert doc["written"] == {"path": str(target), "rows": len(rows), "columns": len(header)}
    assert sorted(os.listdir(tmp_path)) == ["curves.csv"]  # no temporary left behind
    assert main(["sentences", synth, "--csv", str(target), "--force"]) == 0  # the text says where it went
    out = capsys.readouterr()
    plain = sentence_attention(synth)  # no --group: a synth capture's planted groups
    columns = 1 + len(plain.keys) + len(plain.groups)
    assert f"wrote the per-step curves ({len(rows)} steps x {columns} columns) to {target}" in out.out


def test_sentences_csv_is_not_overwritten_without_force(synth, tmp_path, capsys, monkeypatch):
    import halo_fast.analysis.sentences as sentences

    target = tmp_path / "curves.csv"
    target.write_text("keep me\n", encoding="utf-8")

    def no_work(*args, **kwargs):
        raise AssertionError("the capture was analysed before the output was checked")

    monkeypatch.setattr(sentences, "sentence_attention", no_work)
    assert main(["sentences", synth, "--csv", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage error:") and "--force" in err
    assert target.read_text(encoding="utf-8") == "keep me\n"
    assert main(["sentences", synth, "--csv", str(tmp_path / "nowhere" / "c.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["sentences", synth, "--csv", str(target), "--force"]) == 0
    assert _read_csv(target)[0][0] == "step"
    assert sorted(os.listdir(tmp_path)) == ["curves.csv"]


def test_to_csv_refuses_an_existing_file_and_writes_empty_cells_for_none(tmp_path):
    from halo_fast.analysis.sentences import sentence_attention

    tensors = [np.full((1, 1, 4), 0.25, np.float32) for _ in range(2)]
    tensors[0][0, 0, :3] = np.nan
    result = sentence_attention(write(tmp_path / "c.json", capture_doc(tensors)))
    header, rows = result.curves()
    assert header == ["step", "0:0", "0:1"] and rows == [[0, None, 0.25], [1, 0.75, 0.25]]
    target = tmp_path / "c.csv"
    assert result.to_csv(target) == str(target)
    assert _read_csv(target) == [["step", "0:0", "0:1"], ["0", "", "0.25"], ["1", "0.75", "0.25"]]
    with pytest.raises(FileExistsError):
        result.to_csv(target)
