"""heatmap and report: PNGs that are real pictures, a report holding the planted answers, atomic outputs."""

from __future__ import annotations

import functools
import json
import os
import sys

import numpy as np
import pytest

from halo_fast.synth import write_capture

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("plots") / "synth.json"
    write_capture(path, layers=2, heads=2, prompt=200, tokens=128, seed=3, workers=0)
    return str(path)


@pytest.fixture(scope="module")
def logit_capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("plots") / "logits.json"
    write_capture(path, layers=2, heads=2, prompt=60, tokens=40, seed=4, logits=True, workers=0)
    return str(path)


@pytest.fixture(scope="module")
def planted(capture):
    from halo_fast.analysis import open_reduced, planted_groups

    groups = planted_groups(open_reduced(capture).metadata)
    return {name: {tuple(k) for k in members} for name, members in groups.items()}


@pytest.fixture(scope="module")
def planted_positions(capture):
    from halo_fast.analysis import open_reduced

    return {g["name"]: g["positions"] for g in open_reduced(capture).metadata["synth"]["groups"]}


def cli(capsys, *argv):
    from halo_fast.cli.main import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", path
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def assert_picture(path, width, height, max_white=0.5):
    """A valid PNG of the given size that is a picture: many colours, not mostly background. Returns its pixels."""
    from matplotlib.image import imread

    assert png_size(path) == (width, height)
    pixels = imread(path)[..., :3]
    assert pixels.shape == (height, width, 3)
    rgb = (pixels * 255).astype(np.uint32).reshape(-1, 3)
    colours = np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2])
    assert len(colours) > 100, len(colours)
    assert np.mean(np.all(pixels > 0.97, axis=-1)) < max_white
    return pixels


def band(pixels, box, n_steps, n_prompt, positions, step_slice):
    """Median colour-scale level (0..1, read back through viridis) of the heatmap cells at prompt
    ``positions`` and step indices ``step_slice``."""
    import matplotlib

    left, top, right, bottom = box
    ys = [int(top + (p + 0.5) * (bottom - top) / n_prompt) for p in positions]
    xs = [int(left + (i + 0.5) * (right - left) / n_steps) for i in range(n_steps)[step_slice]]
    cells = pixels[np.ix_(ys, xs)].reshape(-1, 3)
    lut = matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3]
    level = np.argmin(((cells[:, None, :] - lut[None]) ** 2).sum(axis=-1), axis=1) / 255
    return float(np.median(level))


def test_heatmap_png_is_a_picture_of_the_capture(capture, planted_positions, tmp_path):
    pytest.importorskip("matplotlib")
    from halo_fast.analysis.heatmap import heatmap

    linear = heatmap(capture, tmp_path / "linear.png")
    assert linear["path"] == str(tmp_path / "linear.png") and linear["mode"] == "heatmap"
    assert (linear["steps"], linear["prompt_tokens"], linear["kind"]) == (127, 200, "probabilities")
    assert (linear["width"], linear["height"]) == (1200, 700) and 0 <= linear["vmin"] < linear["vmax"] < 1
    pixels = assert_picture(tmp_path / "linear.png", 1200, 700)
    # the pixels read back through the colour map: irrelevant rows fade to the bottom, critical ones stay up
    irrelevant, critical = planted_positions["irrelevant"], planted_positions["critical"]
    at = functools.partial(band, pixels, linear["plot_box"], 127, 200)
    assert at(irrelevant, slice(-5, None)) < at(irrelevant, slice(0, 5)) - 0.05
    assert at(critical, slice(-5, None)) > at(irrelevant, slice(-5, None)) + 0.1
    log = heatmap(capture, tmp_path / "log.png", log=True, dpi=50, layers="1", every=2)
    assert log["log"] and log["steps"] == 63 and (log["width"], log["height"]) == (600, 350)
    assert 0 < log["vmin"] < log["vmax"]
    at = functools.partial(band, assert_picture(tmp_path / "log.png", 600, 350), log["plot_box"], 63, 200)
    assert at(irrelevant, slice(-3, None)) < at(irrelevant, slice(0, 3)) - 0.3  # orders of magnitude
    assert at(critical, slice(-3, None)) > at(critical, slice(0, 3)) - 0.05
    lines = heatmap(capture, tmp_path / "lines.png", sentences=True, log=True, dpi=50)
    assert lines["mode"] == "sentences" and lines["sentences"] == 22
    assert_picture(tmp_path / "lines.png", 600, 350, max_white=0.98)  # lines on white
    with pytest.raises(FileExistsError, match="force"):
        heatmap(capture, tmp_path / "linear.png")


def test_heatmap_reads_reduce_outputs_and_logits(capture, logit_capture, tmp_path):
    pytest.importorskip("matplotlib")
    from halo_fast import reduce
    from halo_fast.analysis.heatmap import heatmap
    from halo_fast.store import save_reduced

    npz = save_reduced(reduce(capture), str(tmp_path / "c.npz"), "npz")
    out = heatmap(npz, dpi=40, every=4)  # default path beside the input
    assert out["path"] == str(tmp_path / "c.heatmap.png") and out["steps"] == 31
    assert png_size(out["path"]) == (480, 280)
    with pytest.raises(ValueError, match="already reduced"):
        heatmap(npz, tmp_path / "x.png", heads="0")
    assert not os.path.exists(tmp_path / "x.png")
    logits = heatmap(logit_capture, tmp_path / "logits.png", dpi=40)
    assert logits["kind"] == "logits" and 0 <= logits["vmin"] < logits["vmax"] <= 1  # softmaxed


def test_heatmap_cli_json_force_and_exit_codes(capture, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    target = tmp_path / "h.png"
    code, out, _ = cli(capsys, "heatmap", capture, "-o", target, "--json", "--dpi", "40", "--tokens", "0:50")
    doc = json.loads(out)
    assert code == 0 and doc["path"] == str(target) and doc["steps"] == 49
    before = target.read_bytes()
    code, _, err = cli(capsys, "heatmap", capture, "-o", target, "--log", "--dpi", "40")
    assert code == 2 and "--force" in err and target.read_bytes() == before
    code, out, _ = cli(capsys, "heatmap", capture, "-o", target, "--log", "--sentences", "--dpi", "40", "--force")
    assert code == 0 and "sentence lines" in out and target.read_bytes() != before
    assert png_size(target) == (480, 280)
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
    code, _, err = cli(capsys, "heatmap", capture, "-o", tmp_path / "g.png", "--group", "x=9:9")
    assert code == 2 and "9:9" in err and not os.path.exists(tmp_path / "g.png")


def test_without_matplotlib_heatmap_says_how_to_install_and_report_still_writes(capture, tmp_path, capsys, monkeypatch):
    from halo_fast.analysis.heatmap import MissingDependency, heatmap

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    with pytest.raises(ImportError, match=r"pip install 'halo_fast\[plot\]'") as info:
        heatmap(capture, tmp_path / "h.png")
    assert isinstance(info.value, MissingDependency)
    code, out, err = cli(capsys, "heatmap", capture, "-o", tmp_path / "h.png")
    assert code == 1 and "matplotlib" in err and "pip install 'halo_fast[plot]'" in err and not out
    assert not os.path.exists(tmp_path / "h.png")
    code, out, _ = cli(capsys, "report", capture, "-o", tmp_path / "r.md", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["heatmap"] is None and "matplotlib" in doc["heatmap_note"]
    text = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "_No heatmap: matplotlib is not installed (`pip install 'halo_fast[plot]'`)._" in text
    assert "![" not in text and "## 5. Distance" in text
    assert not os.path.exists(tmp_path / "r.heatmap.png")


def test_report_answers_the_planted_questions(capture, planted, tmp_path):
    pytest.importorskip("matplotlib")
    from halo_fast.analysis.decay import decay_analysis
    from halo_fast.analysis.report import report

    summary = report(capture, tmp_path / "report.md")
    assert summary["report"] == str(tmp_path / "report.md")
    assert summary["heatmap"] == str(tmp_path / "report.heatmap.png")
    assert_picture(summary["heatmap"], 1200, 700)
    a = summary["answers"]
    # 1. the critical sentences stay brightest (system prompt aside)
    assert {tuple(map(int, b["sentence"].split(":"))) for b in a["bright_sentences"][:3]} == planted["critical"]
    # 2. irrelevant context fades, fastest of all
    assert a["fastest_fading_group"] == "irrelevant"
    fastest = {tuple(map(int, f["sentence"].split(":"))) for f in a["fastest_fading"]}
    assert fastest <= planted["irrelevant"] and len(fastest) == 3
    assert {f"{t}:{s}" for t, s in planted["irrelevant"]} <= set(a["fading_sentences"])
    assert not {f"{t}:{s}" for t, s in planted["critical"]} & set(a["fading_sentences"])
    # 3. a probability capture cannot tell; 4. the decay analysis' own recommendation; 5. the local wave
    assert a["negative_logits"]["answerable"] is False and a["negative_logits"]["raw_falling_share"] is None
    want = decay_analysis(capture).recommended_decay_rate
    assert a["recommended_decay_rate"] == pytest.approx(want) and want > 0
    assert a["distance_weighting_needed"] is True and a["local_ratio"] > 2
    # experiment 2: pruning by mean attention takes every irrelevant sentence and no critical one
    pruned = a["pruning"]["policies"]["mean"]["pruned_groups"]
    assert pruned["irrelevant"] == 4 and pruned["critical"] == 0
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    for heading in (
        "## Answers",
        "## Heatmap",
        "## 1. Sentences",
        "## 2-4. Decay",
        "## 5. Distance",
        "## Pruning simulation",
        "## Stats",
    ):
        assert heading in text, heading
    for number in range(1, 6):
        assert f"\n{number}. **" in text
    assert "![attention heatmap: generation step x prompt position](report.heatmap.png)" in text
    assert "Of the groups, **irrelevant** fades fastest" in text
    assert "| irrelevant | 0.03 |" in text  # the fitted group rate, next to the planted one
    assert "2. **Does irrelevant context fade naturally?** **Yes.**" in text
    assert "5. **Is distance weighting needed?** **Yes.**" in text
    mean_row = next(line for line in text.splitlines() if line.startswith("| mean |"))
    assert "irrelevant 4/4" in mean_row and "critical 0/3" in mean_row
    assert "\\<\\|im\\_start\\|\\>" in text  # prompt text is escaped for Markdown tables
    assert json.loads(json.dumps(summary)) == summary


def test_report_cli_json_force_and_logits(capture, logit_capture, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    target = tmp_path / "out.md"
    code, out, _ = cli(capsys, "report", logit_capture, "-o", target, "--json", "--unit", "token")
    doc = json.loads(out)
    assert code == 0 and doc["kind"] == "logits" and doc["answers"]["negative_logits"]["answerable"] is True
    assert 0 <= doc["answers"]["negative_logits"]["raw_falling_share"] <= 1
    assert doc["answers"]["pruning"]["unit"] == "token"
    assert set(doc) >= {"report", "heatmap", "source", "steps", "answers", "seconds"}
    text, image = target.read_bytes(), (tmp_path / "out.heatmap.png").read_bytes()
    assert b"Raw logits: the linear trend falls" in text and image.startswith(PNG_SIGNATURE)
    code, _, err = cli(capsys, "report", capture, "-o", target)
    assert code == 2 and "--force" in err
    assert target.read_bytes() == text and (tmp_path / "out.heatmap.png").read_bytes() == image
    os.unlink(target)  # the image alone also blocks a report without --force
    code, _, err = cli(capsys, "report", capture, "-o", target)
    assert code == 2 and "out.heatmap.png" in err and not target.exists()
    code, out, _ = cli(capsys, "report", capture, "-o", target, "--force", "--every", "2", "--linear")
    assert code == 0 and "wrote" in out and "5. distance weighting needed: yes" in out
    assert b"63 steps (2..126)" in target.read_bytes() and (tmp_path / "out.heatmap.png").read_bytes() != image


def test_default_outputs_sit_beside_the_input(tmp_path, capsys):
    from halo_fast.analysis.heatmap import output_beside
    from halo_fast.analysis.report import image_beside

    assert output_beside("runs/cap.json", ".heatmap.png") == "runs/cap.heatmap.png"
    assert output_beside("runs/cap.reduced.h5", ".report.md") == "runs/cap.report.md"
    assert output_beside("runs/capdir/", ".heatmap.png") == "runs/capdir.heatmap.png"
    assert image_beside("out/report.md") == "out/report.heatmap.png"
    pytest.importorskip("matplotlib")
    path = tmp_path / "small.json"
    write_capture(path, layers=1, heads=2, prompt=40, tokens=12, seed=5, workers=0)
    assert cli(capsys, "report", path)[0] == 0
    assert (tmp_path / "small.report.md").exists() and png_size(tmp_path / "small.report.heatmap.png")


def test_report_failing_midway_replaces_neither_file(capture, tmp_path, monkeypatch):
    """The image and the Markdown are renamed into place together, after both are written."""
    pytest.importorskip("matplotlib")
    from halo_fast.analysis import report as report_module

    target, image = tmp_path / "r.md", tmp_path / "r.heatmap.png"
    target.write_text("old report")
    image.write_bytes(b"old image")

    def broken_markdown(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_module, "_markdown", broken_markdown)
    with pytest.raises(RuntimeError, match="disk full"):
        report_module.report(capture, target, force=True)
    monkeypatch.undo()

    real_open = open

    def open_that_fails_for_the_report(path, mode="r", *args, **kwargs):
        if "w" in str(mode) and os.path.basename(str(path)).startswith(".r.md."):
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", open_that_fails_for_the_report)
    with pytest.raises(OSError, match="No space"):
        report_module.report(capture, target, force=True)
    monkeypatch.undo()
    assert target.read_text() == "old report" and image.read_bytes() == b"old image"
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
    report_module.report(capture, target, force=True)
    assert target.read_text() != "old report" and image.read_bytes().startswith(PNG_SIGNATURE)
