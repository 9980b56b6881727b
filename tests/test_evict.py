"""The eviction replay (``analysis.evict``) against its plain twin (``evict_reference``), step by step
and row by row, and the properties the semantics promise: the oracles' bounds, mass 1 when nothing
has to go, streaming near the oracle where attention sits on sinks and recent positions."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evict_reference as ref
from builders import capture_doc, capture_in_memory, write
from halo_fast import CaptureError
from halo_fast.analysis import evict_kernels as ek
from halo_fast.analysis.evict import POLICIES, evict, parse_budgets, pyramid_budgets
from halo_fast.cli.main import main
from reference import examples

CAUSAL_TOKEN = [p for p in POLICIES if p not in ("oracle_step", "oracle_future")]


def tensors_of(draw_values, n_layers, n_heads, contexts):
    return [draw_values(n_layers, n_heads, c) for c in contexts]


def compare(path, tensors, policies, budgets, layers=None, heads=None, kind="probabilities", top=8, seed=0, **extra):
    """Run the replay with a trace and the twin on the same steps; equal step by step, row by row.
    ``path``: a capture file or a loaded Capture."""
    n_layers, n_heads = tensors[0].shape[:2]
    twin_options = extra.pop("twin", {})
    result = evict(
        path, policies, budgets, layers=layers, heads=heads, kind=None if kind == "probabilities" else kind,
        top_k=top, seed=seed, trace=True, **extra,
    )  # fmt: skip
    layer_ids = list(range(n_layers)) if layers is None else sorted(layers)
    head_ids = list(range(n_heads)) if heads is None else sorted(heads)
    js_rows = None
    if "hw_frontend" in policies:
        import halo_fast

        red = halo_fast.reduce(path, op="mean_js", layers=layer_ids, heads=head_ids)
        js_rows = [red.data[t, : red.context_lengths[t]] for t in range(len(red.steps))]
    twin = ref.replay(
        tensors, policies, [b for b in budgets], layer_ids, head_ids, n_layers, kind=kind, top=top, seed=seed,
        js_rows=js_rows, **twin_options,
    )  # fmt: skip
    assert result.trace["mass"].shape[0] == len(tensors) - 1
    for j, row in enumerate(result.rows):
        mass, recall = twin[(row["policy"], int(row["budget_spec"]))]
        where = f"{row['policy']} at {row['budget']}"
        np.testing.assert_allclose(result.trace["mass"][:, j], mass, rtol=0, atol=1e-12, err_msg=where)
        np.testing.assert_array_equal(result.trace["recall"][:, j], recall, err_msg=where)
    return result


@st.composite
def replays(draw):
    n_layers = draw(st.integers(1, 3))
    n_heads = draw(st.integers(1, 3))
    n_steps = draw(st.integers(2, 7))
    first = draw(st.integers(1, 12))
    growth = draw(st.lists(st.integers(0, 3), min_size=n_steps - 1, max_size=n_steps - 1))
    contexts = list(np.cumsum([first] + growth))
    tied = draw(st.booleans())  # values from a few eighths: ties everywhere, sums exact
    holes = draw(st.sampled_from([0.0, 0.0, 0.1]))  # a share of NaN values (rows without a total)
    seed = draw(st.integers(0, 2**32))
    rng = np.random.default_rng(seed)
    tensors = []
    for c in contexts:
        if tied:
            t = rng.integers(0, 4, size=(n_layers, n_heads, c)) / 8.0
        else:
            t = rng.dirichlet(np.full(c, 0.3), (n_layers, n_heads))
        t[rng.random(t.shape) < holes] = np.nan
        tensors.append(t.astype(np.float32))
    top = max(contexts)
    budgets = sorted(set(draw(st.lists(st.integers(1, top + 2), min_size=1, max_size=3))))
    layers = draw(st.none() | st.lists(st.integers(0, n_layers - 1), min_size=1, max_size=n_layers, unique=True))
    heads = draw(st.none() | st.lists(st.integers(0, n_heads - 1), min_size=1, max_size=n_heads, unique=True))
    return tensors, budgets, layers, heads, draw(st.integers(1, 4)), seed


@given(replays())
@settings(max_examples=examples(60))
def test_every_policy_matches_its_plain_twin_step_by_step(case):
    """On a loaded capture: this test runs in the NUMBA_DISABLE_JIT stage too."""
    tensors, budgets, layers, heads, top, seed = case
    cap = capture_in_memory(capture_doc(tensors))
    compare(cap, tensors, list(POLICIES), budgets, layers=layers, heads=heads, top=top, seed=seed % 1000)


def test_a_long_replay_reaches_the_history_and_window_limits():
    """40 steps, contexts beyond the budgets: scissorhands' 32-step history, SnapKV's 32-step window
    (B >= 128) and its re-selections, pyramidkv's per-layer budgets, all against the twin."""
    rng = np.random.default_rng(21)
    contexts = np.cumsum([150] + list(rng.integers(0, 3, 39)))
    tensors = [rng.dirichlet(np.full(c, 0.2), (2, 1)).astype(np.float32) for c in contexts]
    compare(capture_in_memory(capture_doc(tensors)), tensors, list(POLICIES), [33, 130])


@pytest.mark.decodes
def test_a_capture_file_replays_as_its_loaded_capture(write_capture):
    rng = np.random.default_rng(6)
    tensors = [rng.dirichlet(np.full(c, 0.5), (2, 3)).astype(np.float32) for c in (9, 10, 10, 12, 13, 15)]
    doc = capture_doc(tensors)
    from_file = compare(write_capture(doc), tensors, list(POLICIES), [2, 5, 40])
    loaded = evict(capture_in_memory(doc), list(POLICIES), [2, 5, 40])
    assert from_file.rows == loaded.rows


def test_logits_are_softmaxed_per_row_first():
    rng = np.random.default_rng(3)
    tensors = [rng.normal(0, 3, (2, 2, c)).astype(np.float32) for c in (6, 7, 9, 10, 10)]
    result = compare(capture_in_memory(capture_doc(tensors)), tensors, list(POLICIES), [3, 5], kind="logits")
    assert result.kind == "logits"


def test_a_null_first_step_and_every_second_step():
    rng = np.random.default_rng(4)
    tensors = [rng.dirichlet(np.ones(5 + i), (2, 2)).astype(np.float32) for i in range(9)]
    path = capture_in_memory(capture_doc(tensors, null_first=True))
    result = evict(path, ["h2o", "oracle_step"], [4], every=2, trace=True)
    kept = tensors[2::2]  # steps 2, 4, 6, 8 (step 0 has no attention)
    twin = ref.replay(kept, ["h2o", "oracle_step"], [4], [0, 1], [0, 1], 2)
    assert result.first_step == 2 and result.steps == [4, 6, 8]
    np.testing.assert_allclose(result.trace["mass"][:, 0], twin[("h2o", 4)][0], atol=1e-12)


def test_many_evictions_at_once_take_the_sorted_path():
    """More than SCAN_LIMIT evictions in one step (a long first context, a jump in the context)."""
    rng = np.random.default_rng(8)
    contexts = [40, 41, 60, 61, 80]
    tensors = [rng.dirichlet(np.full(c, 0.2), (1, 2)).astype(np.float32) for c in contexts]
    compare(capture_in_memory(capture_doc(tensors)), tensors, list(POLICIES), [3, 12, 30])


def test_hw_frontend_by_sentence_matches_prune_to_fit():
    """System prompt, two earlier turns with sentences, the turn being generated: pruneToFit(budget)
    at every step, against the reference transcription of the front end."""
    from halo_fast.analysis.conversation import build_context

    rng = np.random.default_rng(11)
    roles = ["system"] * 3 + ["user"] * 6 + ["assistant"] * 6 + ["user"] * 4
    turns = [0] * 3 + [1] * 6 + [2] * 6 + [3] * 4
    sentences = [0] * 3 + [0, 0, 1, 1, 2, 2] + [0, 0, 0, 1, 1, 1] + [0, 0, 1, 1]
    contexts = [19, 20, 21, 22, 23, 24]
    tensors = [rng.dirichlet(np.full(c, 0.4), (2, 2)).astype(np.float32) for c in contexts]
    doc = capture_doc(tensors)
    doc["prompt_tokens"] = [
        {"token_id": i, "text": f" p{i}", "position": i, "turn_id": turns[i], "message_role": roles[i],
         "sentence_id": sentences[i]}
        for i in range(19)
    ]  # fmt: skip
    for k, token in enumerate(doc["generated_tokens"]):
        token["position"] = 19 + k
    path = capture_in_memory(doc)
    context = build_context(_table(doc["prompt_tokens"]), 24, np.array([19 + k for k in range(6)]), [" g"] * 6)
    groups: dict = {}
    for p in range(context.n_system, len(context)):
        key = (int(context.turn[p]), int(context.sentence[p]), context.role[p])
        groups.setdefault(key, []).append(p)
    listed = [(t, s, r, ps) for (t, s, r), ps in groups.items()]
    twin = {"n_system": 3, "sentences": listed, "current_turn": context.current_turn}
    for budgets in ([6, 12], [16]):
        compare(path, tensors, ["hw_frontend"], budgets, unit="sentence", twin=twin)
    result = evict(path, ["hw_frontend"], [6, 16], unit="sentence")
    tight, loose = result.rows
    assert tight["level"] == "sentence" and tight["cached_mean"] > 6  # what may not go does not fit
    assert tight["mass_min"] < loose["mass_min"] < 1.0  # sentences went, more of them at 6


def _table(records):
    from halo_fast.formats.base import prompt_table

    return prompt_table(records)


# ----------------------------------------------------------------- properties


def synth(tmp_path, name="cap.json", **options):
    from halo_fast.synth import write_capture

    path = str(tmp_path / name)
    write_capture(path, **options)
    return path


@pytest.mark.decodes
def test_oracle_step_bounds_every_policy_at_every_step(tmp_path):
    path = synth(tmp_path, layers=3, heads=4, prompt=50, tokens=24)
    result = evict(path, list(POLICIES), [6, 20], trace=True)
    mass = result.trace["mass"]
    checked = set()
    for budget in (6, 20):
        bound = next(j for j, r in enumerate(result.rows) if r["policy"] == "oracle_step" and r["budget"] == budget)
        for j, r in enumerate(result.rows):
            # pyramidkv gives some layers up to 2B; a cache holding more than B (hw_frontend's system
            # prompt is protected) is not bounded by a top-B
            if r["budget"] != budget or r["policy"] == "pyramidkv" or r["cached_mean"] > budget:
                continue
            checked.add(r["policy"])
            assert (mass[:, j] <= mass[:, bound] + 1e-12).all(), r["policy"]
    assert checked == set(POLICIES) - {"pyramidkv"}
    # oracle_future is a hindsight heuristic, not a bound: on this capture it beats every causal policy
    for budget in (6, 20):
        best = {r["policy"]: r["mass_mean"] for r in result.rows if r["budget"] == budget}
        for policy in POLICIES:
            if policy not in ("oracle_step", "oracle_future", "pyramidkv"):
                assert best[policy] <= best["oracle_future"] + 1e-12, policy


@pytest.mark.decodes
def test_a_budget_at_least_the_context_keeps_everything(tmp_path):
    import halo_fast

    path = synth(tmp_path, layers=2, heads=2, prompt=20, tokens=8)
    with halo_fast.open_capture(path) as cap:
        longest = int(cap.shapes[:, 2].max())
    result = evict(path, list(POLICIES), [longest, 64], trace=True)
    assert np.all(result.trace["mass"] == 1.0)
    assert all(r["mass_mean"] == 1.0 and r["mass_min"] == 1.0 and r["recall_mean"] == 1.0 for r in result.rows)


def test_streaming_is_near_the_oracle_when_attention_sits_on_sinks_and_recent_positions():
    rng = np.random.default_rng(2)
    tensors = []
    for c in range(40, 60):
        t = rng.random((2, 3, c)) * 0.02
        t[..., :4] += 1.0
        t[..., -8:] += 0.6
        tensors.append((t / t.sum(-1, keepdims=True)).astype(np.float32))
    result = evict(
        capture_in_memory(capture_doc(tensors)), ["streaming", "random", "oracle_step", "oracle_future"], [16]
    )
    share = {r["policy"]: r["mass_mean"] for r in result.rows}
    assert share["streaming"] >= 0.97 * share["oracle_step"]
    assert share["random"] < 0.8 * share["streaming"]


@pytest.mark.parametrize("layers", [2, 3, 28, 80])
def test_pyramid_budgets_fall_linearly_and_average_the_budget(layers):
    for budget in (1, 2, 5, 8, 16, 32, 64, 100, 128, 256, 1000):
        b = pyramid_budgets(budget, layers)
        assert len(b) == layers and np.all(np.diff(b) <= 0) and b.min() >= 1
        assert abs(b.mean() - budget) <= 0.5 + (budget < 4), (budget, b)  # only the rounding
        if budget >= 64:
            assert b[0] > 1.5 * budget and b[-1] < 0.5 * budget
    assert list(pyramid_budgets(10, 1)) == [10]


def test_budgets_take_tokens_and_shares_of_the_prompt():
    assert parse_budgets("64,10%", 200) == [("64", 64), ("10%", 20)]
    assert parse_budgets([1, "0.1%"], 200) == [("1", 1), ("0.1%", 1)]
    for bad in ("0", "x", "-3%", ""):
        with pytest.raises(ValueError):
            parse_budgets(bad, 200)
    with pytest.raises(ValueError, match="no prompt"):
        parse_budgets("10%", 0)


# ----------------------------------------------------------------- kernels, one by one


@given(st.integers(0, 2**63), st.integers(0, 10**6), st.integers(0, 10**6))
def test_unit_hash_is_splitmix64(seed, row, pos):
    assert ek.unit_hash(np.uint64(seed), row, pos) == ref.splitmix_unit(seed, row, pos)


@given(st.integers(0, 2**64 - 1))
def test_popcount(x):
    assert ek.popcount(np.uint64(x)) == bin(x).count("1")


@given(st.lists(st.sampled_from([0.0, 0.125, 0.25, 0.5, math.nan]), min_size=1, max_size=30), st.integers(1, 9))
def test_top_positions_prefers_the_later_of_equal_values(values, k):
    probs = np.array([values])
    top = np.zeros((1, k), dtype=np.int64)
    n_top = np.zeros(1, dtype=np.int64)
    ek.top_positions(probs, len(values), top, n_top)
    assert sorted(top[0, : n_top[0]].tolist()) == sorted(ref.top_k(values, k))


@given(st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_pool_window_is_avg_pool_with_zero_padding(values):
    acc = np.array([values])
    out = np.zeros_like(acc)
    ek.pool_window(acc, len(values), 5, out)
    assert out[0].tolist() == ref.pooled(values, len(values)) and not acc.any()


@pytest.mark.decodes
def test_frontend_step_is_the_brightness_replay_step_by_step(tmp_path):
    """One step at a time, the same brightness as hw_scores' trajectory over the whole matrix."""
    import halo_fast
    from halo_fast.analysis.conversation import context_tokens
    from halo_fast.analysis.hw_kernels import frontend_step
    from halo_fast.analysis.hw_rules import FRONTEND_START, hw_scores

    red = halo_fast.reduce(synth(tmp_path, layers=2, heads=2, prompt=40, tokens=20), op="mean_js")
    tokens = context_tokens(red)
    data, ctx = np.ascontiguousarray(red.data), red.context_lengths.astype(np.int64)
    traj = hw_scores(data, ctx, "hw_frontend", len(red.prompt), tokens, trajectory=True).trajectory
    score = np.full(len(tokens), FRONTEND_START)
    for t in range(len(ctx)):
        frontend_step(data[t], int(ctx[t]), tokens.n_system, FRONTEND_START, score)
        inside = int(ctx[t]) - tokens.n_system  # the trajectory has NaN where a position is yet to come
        np.testing.assert_array_equal(score[tokens.n_system : ctx[t]], traj[t, :inside])
        assert np.isnan(traj[t, inside:]).all()


# ----------------------------------------------------------------- errors and the command


@pytest.mark.decodes
def test_what_cannot_be_replayed_is_a_clear_error(write_capture, tmp_path):
    rng = np.random.default_rng(1)
    one = write_capture(capture_doc([rng.dirichlet(np.ones(4), (1, 1)).astype(np.float32)]))
    with pytest.raises(CaptureError, match="at least two steps"):
        evict(one, ["h2o"], [2])
    shrinking = [rng.dirichlet(np.ones(c), (1, 1)).astype(np.float32) for c in (5, 6, 4)]
    with pytest.raises(CaptureError, match="shrinks") as info:
        evict(write_capture(capture_doc(shrinking)), ["h2o"], [2])
    assert info.value.step == 2
    two = write_capture(capture_doc([rng.dirichlet(np.ones(c), (1, 1)).astype(np.float32) for c in (4, 5)]))
    with pytest.raises(ValueError, match="unknown eviction policy"):
        evict(two, ["lru"], [2])
    with pytest.raises(ValueError, match="unit"):
        evict(two, ["h2o"], [2], unit="word")
    reduced = tmp_path / "x.reduced.h5"
    assert main(["reduce", two, "-o", str(reduced)]) == 0
    with pytest.raises(ValueError, match="reduce output"):
        evict(reduced, ["h2o"], [2])


@pytest.mark.decodes
def test_the_command_prints_json_and_writes_the_table_and_picture(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = synth(tmp_path, layers=2, heads=2, prompt=30, tokens=10)
    csv_path, png = tmp_path / "t.csv", tmp_path / "t.png"
    args = ["evict", path, "--budgets", "4,20%", "--policies", "h2o,streaming,oracle_future", "--json"]
    assert main(args + ["-o", str(csv_path), "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["policy"], r["budget_spec"]) for r in out["results"]] == [
        (p, b) for p in ("h2o", "streaming", "oracle_future") for b in ("4", "20%")
    ]
    row = out["results"][0]
    assert {"policy", "budget", "mass_mean", "mass_min", "recall_mean", "share_of_oracle", "layers"} <= set(row)
    assert len(row["layers"]) == 2 and out["results"][-1]["share_of_oracle"] == 1.0
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header[:3] == ["policy", "budget", "budget_spec"] and "layer1_mass_min" in header
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(args + ["-o", str(csv_path)]) == 2  # no overwrite without --force
    assert "exists" in capsys.readouterr().err
    for bad in ("0", "inf%", "nan%", "1e400%", "x"):
        assert main(["evict", path, "--budgets", bad, "--json"]) == 2, bad
        assert "bad budget" in json.loads(capsys.readouterr().out)["error"] or bad == "0"
    assert main(["evict", path, "--budgets", "99999999999999999999", "--top-k", "1000000000000", "--json"]) == 0
    huge = json.loads(capsys.readouterr().out)["results"]
    assert all(r["mass_mean"] == 1.0 for r in huge)  # a budget beyond the context keeps everything
    same = str(tmp_path / "same.png")
    assert main(["evict", path, "-o", same, "--plot", same]) == 2
    assert "same file" in capsys.readouterr().err and not os.path.exists(same)
    assert main(["evict", path, "--layers", "1", "--policies", "tova", "--budgets", "3"]) == 0
    text = capsys.readouterr().out
    assert "tova" in text and "share_of_oracle" in text


@pytest.mark.decodes
def test_every_format_replays_the_same(tmp_path):
    """The single-JSON decoder's windows, and every other format's token by token, give the same rows."""
    path = synth(tmp_path, layers=2, heads=3, prompt=30, tokens=12)
    h5, lines, folder = (str(tmp_path / name) for name in ("cap.h5", "cap.jsonl.gz", "cap_bin"))
    assert main(["convert", path, "-o", h5]) == 0
    for out, form in ((lines, "jsonl.gz"), (folder, "dir-bin")):
        shape = ["--layers", "2", "--heads", "3", "--prompt", "30", "--tokens", "12"]
        assert main(["synth", out, "--format", form, *shape]) == 0
    policies, budgets = list(POLICIES), [4, 16]
    expected = evict(path, policies, budgets, window_bytes=1 << 16).rows  # windows of a few tokens
    for other in (lines, h5, folder):
        assert evict(other, policies, budgets).rows == expected, other
    assert evict(path, policies, budgets).rows == expected


@pytest.mark.decodes
def test_report_stands_when_the_capture_cannot_be_replayed(tmp_path, capsys):
    """One step with attention: the report is written, its eviction section says why it is empty."""
    rng = np.random.default_rng(2)
    doc = capture_doc([rng.dirichlet(np.ones(6), (1, 2)).astype(np.float32)])
    path = write(tmp_path / "one.json", doc)
    out = tmp_path / "r.md"
    assert main(["report", path, "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["eviction"] is None and "at least two steps" in summary["eviction_note"]
    assert "What eviction would keep" in out.read_text() and not (tmp_path / "r.evict.png").exists()
    (tmp_path / "r.evict.png").write_text("an older picture")  # --no-evict neither needs nor touches it
    assert main(["report", path, "-o", str(out), "--force", "--no-evict"]) == 0
    assert (tmp_path / "r.evict.png").read_text() == "an older picture"


@pytest.mark.decodes
def test_report_has_the_eviction_section_and_picture(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = synth(tmp_path, layers=2, heads=2, prompt=40, tokens=12)
    out = tmp_path / "r.md"
    assert main(["report", path, "-o", str(out), "--evict-budgets", "8,25%", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = summary["eviction"]
    assert [(r["policy"], r["budget_spec"]) for r in rows] == [(p, b) for p in POLICIES for b in ("8", "25%")]
    text = out.read_text()
    assert "## What eviction would keep" in text and "| oracle_future | 10 |" in text
    assert "r.evict.png" in text and (tmp_path / "r.evict.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["evict_plot"] == str(tmp_path / "r.evict.png")
