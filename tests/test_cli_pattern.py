"""One command pattern: option groups, --json (errors too), progress, exit codes, Ctrl-C, outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from builders import capture_doc, write
from halo_fast.cli.common import join_dash_values
from halo_fast.cli.main import build_parser, main
from halo_fast.synth import write_capture

CAPTURE_COMMANDS = ["reduce", "info", "check", "decode", "convert", "sentences", "decay", "distance", "stats", "evict"]
ANALYSES = ["sentences", "decay", "distance", "stats", "score", "prune", "compare", "sweep", "report", "heatmap"]


@pytest.fixture
def capture(tmp_path):
    rng = np.random.default_rng(5)
    tensors = [rng.dirichlet(np.ones(8 + i), (2, 3)).astype(np.float32) for i in range(8)]
    return write(tmp_path / "cap.json", capture_doc(tensors, null_first=True))


@pytest.fixture
def truncated(tmp_path, capture):
    text = Path(capture).read_bytes()
    cut = tmp_path / "trunc.json"
    cut.write_bytes(text[: int(len(text) * 0.8)])
    return str(cut)


def run_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "halo_fast", *args], capture_output=True, text=True, timeout=300, **kwargs
    )


# ----------------------------------------------------------------- the groups every command declares


def _options(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {opt for action in sub.choices[command]._actions for opt in action.option_strings}


@pytest.mark.parametrize("command", CAPTURE_COMMANDS + ANALYSES)
def test_every_capture_reading_command_takes_the_source_group_and_json(command):
    options = _options(command)
    assert {"--recover", "--strict", "--progress", "--no-progress", "--json"} <= options, command


@pytest.mark.parametrize("command", ["reduce"] + ANALYSES)
def test_reducing_commands_take_the_selection_group(command):
    assert {"--op", "--layers", "--heads", "--every", "--tokens"} <= _options(command), command


def test_op_choices_and_help_are_the_same_everywhere():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    seen = set()
    for command in ["reduce"] + ANALYSES:
        op = next(a for a in sub.choices[command]._actions if "--op" in a.option_strings)
        seen.add((tuple(op.choices), op.default, op.help))
    assert len(seen) == 1 and next(iter(seen))[1] == "mean" and "default" in next(iter(seen))[2]


# ----------------------------------------------------------------- defects 2, 3, 6, 9


def test_negative_selections_take_a_space(capture, tmp_path, capsys):
    assert join_dash_values(["reduce", "x", "--layers", "-4:", "--heads", "-1"]) == [
        "reduce",
        "x",
        "--layers=-4:",
        "--heads=-1",
    ]
    assert join_dash_values(["--layers", "--json"]) == ["--layers", "--json"]  # an option is not a value
    out = tmp_path / "late.h5"
    assert main(["reduce", capture, "--layers", "-1:", "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layers"] == [1]
    assert main(["sentences", capture, "--heads", "-2", "--json"]) == 0


@pytest.mark.parametrize(
    "command", ["report", "sentences", "decay", "stats", "distance", "info", "check", "decode", "evict"]
)
def test_analyses_accept_recover(command, truncated, tmp_path, capsys):
    args = [command, truncated, "--recover"]
    if command == "report":
        args += ["-o", str(tmp_path / "r.md")]
    code = main(args)
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err  # check may find problems in a cut capture; it must run
    assert "warning:" in captured.err and "truncated" in captured.err
    assert "unrecognized" not in captured.err


@pytest.mark.parametrize(
    "args",
    [
        ["reduce", "{c}", "--tokens", "5:2"],
        ["reduce", "{c}", "--tokens", "1000:2000"],
        ["convert", "{c}", "--tokens", "1000:2000", "-o", "{d}/x.h5"],
        ["sentences", "{c}", "--tokens", "1000:2000"],
        ["stats", "{c}", "--tokens", "3:3"],
        ["decay", "{c}", "--every", "0"],
        ["evict", "{c}", "--tokens", "1000:2000", "-o", "{d}/t.csv"],
        ["evict", "{c}", "--budgets", "0"],
    ],
)
def test_empty_selections_are_usage_errors(args, capture, tmp_path, capsys):
    args = [a.format(c=capture, d=tmp_path) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage error:") and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["cap.json"]  # nothing written


def test_npz_output_gets_its_suffix_and_the_path_is_printed(capture, tmp_path, capsys):
    name = tmp_path / "result"
    assert main(["reduce", capture, "--format", "npz", "-o", str(name), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["output"] == str(name) + ".npz" and os.path.exists(summary["output"])
    assert main(["stats", summary["output"], "--json"]) == 0  # every analysis takes it


def test_over_and_grid_errors_name_the_option(capture, capsys):
    assert main(["reduce", capture, "--over", "foo"]) == 2
    err = capsys.readouterr().err
    assert "--over" in err and "('foo',)" not in err
    assert main(["sweep", capture, "--decay-rate", "abc"]) == 2
    assert "--decay-rate" in capsys.readouterr().err


# ----------------------------------------------------------------- defect 5: the output folder first


@pytest.mark.parametrize("command", ["reduce", "convert", "evict"])
def test_an_unwritable_output_folder_is_found_before_the_read(command, capture, capsys, monkeypatch):
    import halo_fast.api

    def no_read(*args, **kwargs):
        raise AssertionError("the capture was read before the output folder was checked")

    monkeypatch.setattr(halo_fast.api, "open_capture", no_read)
    assert main([command, capture, "-o", "/proc/halo_fast_out.h5"]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the output folder /proc" in err and ".tmp" not in err


# ----------------------------------------------------------------- defect 8: --json errors


def test_json_errors_are_json_on_stdout_with_the_exit_code(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"generated_tokens": [{"step": 0, "attention": {"shape": [1, 1, 2], "data": [1, 2, 3]}}]}')
    assert main(["reduce", str(bad), "--json"]) == 1
    captured = capsys.readouterr()
    error = json.loads(captured.out)
    assert set(error) == {"error", "path", "offset", "step", "exit_code"}
    assert error["path"] == str(bad) and error["exit_code"] == 1 and isinstance(error["offset"], int)
    assert captured.err.startswith("error:")
    assert main(["stats", str(bad), "--tokens", "9:1", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["exit_code"] == 2


def test_a_bad_command_line_is_a_usage_error_in_json_too(capture, capsys):
    assert main(["reduce", capture, "--frobnicate", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["exit_code"] == 2 and "--frobnicate" in captured.out
    assert captured.err.startswith("usage:")
    assert main(["report", capture, "--op", "median"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_json_is_one_object_for_every_capture_command(capture, tmp_path, capsys):
    for command in CAPTURE_COMMANDS:
        args = [command, capture, "--json"]
        if command in ("reduce", "convert"):
            args += ["-o", str(tmp_path / f"{command}.h5")]
        code = main(args)
        out = capsys.readouterr().out
        assert code in (0, 1), command
        assert isinstance(json.loads(out), dict), command


# ----------------------------------------------------------------- defect 4: progress


def test_progress_can_be_forced_when_stderr_is_not_a_terminal(capture, tmp_path):
    gz = tmp_path / "cap.json.gz"
    import gzip

    gz.write_bytes(gzip.compress(Path(capture).read_bytes()))
    forced = run_cli("reduce", str(gz), "--progress", "-o", str(tmp_path / "a.h5"))
    assert forced.returncode == 0, forced.stderr
    assert "scan (gzip)" in forced.stderr and "reduce" in forced.stderr  # a line for each pass
    quiet = run_cli("reduce", str(gz), "-o", str(tmp_path / "b.h5"))
    assert quiet.returncode == 0 and quiet.stderr == ""
    sentences = run_cli("sentences", str(gz), "--progress")
    assert sentences.returncode == 0 and "scan (gzip)" in sentences.stderr


# ----------------------------------------------------------------- defect 13 (the small ones)


def test_info_of_a_directory_and_of_an_empty_capture(tmp_path, capsys):
    from halo_fast.synth.writers import write_directory

    folder = write_directory(tmp_path / "capdir", kind="bin", layers=2, heads=2, prompt=20, tokens=4)
    assert main(["info", folder]) == 0
    out = capsys.readouterr().out
    assert "(0.0 MB" not in out and " kB, directory)" in out
    assert main(["info", folder, "--json"]) == 0
    size = sum(p.stat().st_size for p in Path(folder).iterdir())
    assert json.loads(capsys.readouterr().out)["bytes"] == size
    empty = write(tmp_path / "empty.json", {"metadata": {}, "prompt_tokens": [], "generated_tokens": []})
    assert main(["info", empty]) == 0
    assert "-..-" not in capsys.readouterr().out


def test_help_texts_say_what_they_mean():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    prune_help = sub.choices["prune"].format_help()
    assert "%%" not in prune_help
    assert "single JSON" not in sub.choices["decode"].format_help()
    for command, option in (("synth", "--layers"), ("synth", "--heads"), ("sweep", "--boost"), ("sweep", "--scale")):
        action = next(a for a in sub.choices[command]._actions if option in a.option_strings)
        assert action.help and "default" in action.help, (command, option)


def test_decode_step_shows_what_one_step_attended_to(capture, capsys):
    assert main(["decode", capture, "--step", "3", "--json", "--top", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["top_attended_step"] == 3 and len(summary["top_attended"]) == 2
    assert main(["decode", capture, "--step", "0"]) == 2  # step 0 has no attention
    assert main(["decode", capture, "--step", "99"]) == 2


def test_distance_per_layer_respects_show(capture, capsys):
    assert main(["distance", capture, "--per-layer", "--show", "2"]) == 0
    out = capsys.readouterr().out
    assert "distance 1..2" in out and "1..3" not in out


def test_bench_caches_its_captures_in_the_user_cache(monkeypatch, tmp_path):
    from halo_fast.cli.bench_cmd import default_data_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_data_dir() == str(tmp_path / "halo_fast" / "bench")


@pytest.mark.parametrize(
    "name, fmt",
    [("s.json.gz", "json.gz"), ("s.jsonl", "jsonl"), ("s.jsonl.gz", "jsonl.gz"), ("d1", "dir-bin"), ("d2", "dir-json")],
)
def test_synth_writes_every_form_and_each_reads_back_the_same(name, fmt, tmp_path, capsys):
    import halo_fast

    reference = tmp_path / "ref.json"
    options = ["--layers", "2", "--heads", "2", "--prompt", "20", "--tokens", "5", "--workers", "0"]
    assert main(["synth", str(reference), *options]) == 0
    target = tmp_path / name
    extra = ["--format", fmt] if fmt.startswith("dir") else []
    assert main(["synth", str(target), *options, *extra, "--json"]) == 0
    capsys.readouterr()
    a, b = halo_fast.load(reference), halo_fast.load(target)
    assert np.array_equal(a.values.view(np.uint32), b.values.view(np.uint32))
    assert main(["synth", str(target), *options, *extra]) == 2  # exists: --force needed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"ref.json", name})


def test_synth_needs_a_format_it_can_tell(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "capture_dir")]) == 2
    assert "--format" in capsys.readouterr().err


# ----------------------------------------------------------------- defect 1: Ctrl-C, at many moments


@pytest.fixture(scope="module")
def medium_capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("interrupt") / "medium.json"
    write_capture(path, layers=16, heads=16, prompt=200, tokens=40, workers=0)
    return path


@pytest.mark.slow  # a dozen processes interrupted
def test_ctrl_c_at_any_moment_exits_130_cleanly(medium_capture, tmp_path):
    """SIGINT from the interpreter's start to the output's rename: imports, numba's cache loading (ctypes
    callbacks), pass 1, pass 2, the write. Exit 130, one line, nothing written -- or, when the signal
    came too late to matter (the process had finished), exit 0 with a whole output."""
    folder = tmp_path / "out"
    folder.mkdir()
    command = [sys.executable, "-m", "halo_fast", "reduce", str(medium_capture), "-o"]
    subprocess.run([*command, str(folder / "warm.h5")], check=True, capture_output=True)  # kernels cached
    started = time.monotonic()
    subprocess.run([*command, str(folder / "warm.h5"), "--force"], check=True, capture_output=True)
    full_run = time.monotonic() - started
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import runpy"], check=True)
    interpreter = time.monotonic() - started  # Python's own start and -m's runpy, before any halo_fast code runs
    delays = np.linspace(2 * interpreter, full_run, 16)
    interrupted = 0
    for k, delay in enumerate(delays):
        output = folder / f"r{k}.h5"
        process = subprocess.Popen([*command, str(output)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = process.communicate(timeout=120)
        after_signal = time.monotonic() - sent
        leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
        assert not leftovers, (delay, leftovers)
        assert "Traceback" not in err and "Exception ignored" not in err, (delay, err)
        if process.returncode == 0:  # only when it had already finished: it must not run on
            assert after_signal < 0.2 and h5py.is_hdf5(output), (delay, after_signal, err)
            continue
        interrupted += 1
        assert process.returncode == 130, (delay, process.returncode, err)
        assert err.strip().endswith("interrupted"), (delay, err)
        if output.exists():  # the signal came after the rename: the output is whole
            assert h5py.is_hdf5(output)
        else:
            assert out == "", (delay, out)
    assert interrupted >= len(delays) // 2


# ----------------------------------------------------------------- defect 13: what the plots and reports say


def test_report_on_logits_gives_the_falling_share_as_a_percentage(tmp_path, capsys):
    path = tmp_path / "logits.json"
    write_capture(path, layers=2, heads=2, prompt=40, tokens=12, seed=4, logits=True, workers=0)
    assert main(["report", str(path), "-o", str(tmp_path / "r.md")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("3."))
    assert "% of prompt tokens" in line and " 1 of " not in line


def test_heatmap_is_log_scaled_by_default_and_labels_carry_text(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from halo_fast.analysis import sentence_index
    from halo_fast.analysis.heatmap import _sentence_label

    path = tmp_path / "cap.json"
    write_capture(path, layers=2, heads=2, prompt=40, tokens=8, workers=0)
    assert main(["heatmap", str(path), "--json", "-o", str(tmp_path / "a.png")]) == 0
    assert json.loads(capsys.readouterr().out)["log"] is True
    assert main(["heatmap", str(path), "--linear", "--json", "-o", str(tmp_path / "b.png")]) == 0
    assert json.loads(capsys.readouterr().out)["log"] is False

    import halo_fast

    sentences = sentence_index(halo_fast.load(path).prompt_tokens)
    labels = [_sentence_label(sentences, s, {}) for s in range(len(sentences))]
    worded = [label for label in labels if "'" in label]
    assert worded and all(len(label) < 40 for label in labels)
    assert all(label.split()[0].count(":") == 1 for label in labels)  # turn:sentence first


def test_bench_ratio_column_says_what_it_divides():
    from halo_fast.benchmark.report import CONTENDER_HEADERS

    assert "time / halo_fast" in CONTENDER_HEADERS and "vs halo_fast" not in CONTENDER_HEADERS


def test_a_command_builds_only_its_own_parser(capture, tmp_path):
    """A short command does not pay for every other command's imports (the scoring rules pull in their
    kernels, evict its policies, bench its runner): only its own module is imported to parse its line."""
    parser = build_parser(only="reduce")
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == ["reduce"] and len(build_parser()._actions[-1].choices) > 10
    script = (
        "import sys; from halo_fast.cli.main import main; "
        f"code = main(['reduce', {str(capture)!r}, '-o', {str(tmp_path / 'r.h5')!r}]); "
        "print(code, sorted(m for m in sys.modules if m.startswith('halo_fast.cli.') and m.endswith('_cmd')), "
        "'halo_fast.analysis.scoring' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.split("\n")[-2] == "0 ['halo_fast.cli.reduce_cmd'] False", out.stderr


SETTLE_SCRIPT = """
import gc, sys
from halo_fast.cli import main as cli

seen = {}
settle = cli.settle_start


def spy(runs_kernels):
    seen["paused"] = not gc.isenabled()
    settle(runs_kernels)
    seen["numba"] = "numba" in sys.modules
    seen["frozen"] = gc.get_freeze_count()
    seen["enabled"] = gc.isenabled()


cli.settle_start = spy
gc.disable()  # as __main__ does
code = cli.main(sys.argv[1:], own_process=True)
print(code, seen["paused"], seen["numba"], seen["frozen"] > 10000, seen["enabled"], gc.isenabled())
"""


@pytest.mark.parametrize("command, numba", [("reduce", True), ("synth", False)])
def test_the_command_line_collects_no_garbage_while_it_starts(command, numba, capture, tmp_path):
    """``python -m halo_fast`` pauses the cyclic collector until its imports are done, then freezes
    what they loaded (numba's objects among them, for a command that runs kernels) and turns the
    collector back on before the command's work starts."""
    argv = [command, str(capture), "-o", str(tmp_path / "r.h5")] if command == "reduce" else None
    argv = argv or [command, str(tmp_path / "s.json"), "--tokens", "3", "--layers", "1", "--heads", "1"]
    out = subprocess.run([sys.executable, "-c", SETTLE_SCRIPT, *argv], capture_output=True, text=True, timeout=300)
    last_line = out.stdout.strip().split("\n")[-1]  # after the command's own output
    assert last_line.split() == ["0", "True", str(numba), "True", "True", "True"], out.stderr


def test_main_in_a_callers_process_leaves_its_garbage_collector_alone(capture, tmp_path):
    """Only ``python -m halo_fast`` owns its process: ``main`` called from other code (a test, a tool)
    freezes nothing and leaves the collector as it was."""
    import gc

    frozen = gc.get_freeze_count()
    assert main(["reduce", str(capture), "-o", str(tmp_path / "r.h5")]) == 0
    assert gc.get_freeze_count() == frozen and gc.isenabled()
    out = subprocess.run(
        [sys.executable, "-m", "halo_fast", "reduce", str(capture), "-o", str(tmp_path / "m.h5"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and json.loads(out.stdout)["tokens"] > 0, out.stderr
