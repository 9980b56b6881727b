"""A file ``convert --every N`` wrote says it is sampled, and ``check`` holds it to that series.

The steps between the sampled ones are not missing (``check`` exits 0), a step absent from the
sampled series still is, and a step the sampling would not have kept is reported too.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import halo_fast
from builders import capture_doc, write
from halo_fast import open_capture
from halo_fast.cli.main import main
from halo_fast.quality import check, sampling_grid, sampling_text
from halo_fast.store.capture_h5 import sampling_attributes
from halo_fast.synth import write_capture


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sampled") / "capture.json")
    write_capture(path, layers=2, heads=2, prompt=30, tokens=9, seed=3, workers=0)
    return path


def gapped(tmp_path, absent: int) -> str:
    """Steps 0..8 with one absent, each context one longer per step (so only the gap is wrong)."""
    steps = [s for s in range(9) if s != absent]
    rng = np.random.default_rng(absent)
    tensors = [rng.dirichlet(np.ones(4 + s), (1, 2)).astype(np.float32) for s in steps]
    return write(tmp_path / "gapped.json", capture_doc(tensors, steps=steps))


def problems_of(report: dict) -> dict:
    return {p["problem"]: p for p in report["problems"]}


def test_convert_every_2_then_check_is_clean_and_says_sampled(tmp_path, clean, capsys):
    h5 = str(tmp_path / "every2.h5")
    assert main(["convert", clean, "-o", h5, "--every", "2"]) == 0
    capsys.readouterr()
    with h5py.File(h5, "r") as f:
        assert int(f.attrs["every"]) == 2 and f.attrs["tokens"] == ""
    with open_capture(h5) as source:
        assert source.sampling == {"every": 2, "tokens": None}
    assert main(["check", h5, "--json"]) == 0  # steps 0, 2, 4, ...: nothing missing
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["problems"] == []
    assert report["sampling"] == {"every": 2, "tokens": None}
    assert main(["check", h5]) == 0
    assert "no problems found" in capsys.readouterr().out
    text = sampling_text(report["sampling"])
    assert text.startswith("sampled by convert") and "one step in 2 from step 0" in text


def test_every_and_tokens_are_recorded_and_checked_from_start(tmp_path, clean):
    h5 = str(tmp_path / "window.h5")
    assert main(["convert", clean, "-o", h5, "--every", "3", "--tokens", "1:9"]) == 0
    assert halo_fast.load(h5).tokens["step"].tolist() == [1, 4, 7]
    report = check(h5)
    assert report["ok"], report["problems"]
    assert report["sampling"] == {"every": 3, "tokens": "1:9"}
    assert "steps 1:9" in sampling_text(report["sampling"])


def test_a_file_that_does_not_say_it_is_sampled_has_missing_steps(tmp_path, clean):
    """What check said of every --every output before the attributes: still so for such a file."""
    h5 = str(tmp_path / "old.h5")
    assert main(["convert", clean, "-o", h5, "--every", "2"]) == 0
    with h5py.File(h5, "r+") as f:
        del f.attrs["every"], f.attrs["tokens"]
    report = check(h5)
    assert report["sampling"] is None
    assert problems_of(report)["missing_steps"]["steps"] == [1, 3, 5, 7]
    assert main(["check", h5]) == 1


def test_a_full_file_is_not_sampled(tmp_path, clean):
    h5 = str(tmp_path / "all.h5")
    assert main(["convert", clean, "-o", h5]) == 0
    with open_capture(h5) as source:
        assert source.sampling is None
    assert check(h5)["sampling"] is None and sampling_text(None) is None


@pytest.mark.parametrize(
    "absent, every, tokens, kept, missing",
    [
        (4, 2, None, [0, 2, 6, 8], [4]),
        (5, 2, "1:9", [1, 3, 7], [5]),
        (5, 2, None, [0, 2, 4, 6, 8], None),  # the lost step is one sampling skips anyway
    ],
)
def test_a_gap_in_the_sampled_series_is_still_flagged(tmp_path, absent, every, tokens, kept, missing):
    h5 = str(tmp_path / "gap.h5")
    args = ["convert", gapped(tmp_path, absent), "-o", h5, "--every", str(every)]
    assert main(args + (["--tokens", tokens] if tokens else [])) == 0
    assert halo_fast.load(h5).tokens["step"].tolist() == kept
    report = check(h5)
    found = problems_of(report)
    if missing is None:
        assert report["ok"], report["problems"]
        return
    assert found["missing_steps"]["steps"] == missing
    assert "sampled series" in found["missing_steps"]["description"]
    assert main(["check", h5]) == 1


def test_steps_off_the_recorded_sampling_are_reported(tmp_path, clean):
    h5 = str(tmp_path / "lying.h5")
    assert main(["convert", clean, "-o", h5]) == 0
    with h5py.File(h5, "r+") as f:
        f.attrs["every"] = 2  # says every 2nd step, holds them all
    found = problems_of(check(h5))
    assert found["unsampled_steps"]["steps"] == [1, 3, 5, 7]
    assert "missing_steps" not in found


def test_a_damaged_sampling_attribute_is_a_capture_error(tmp_path, clean):
    h5 = str(tmp_path / "bad.h5")
    assert main(["convert", clean, "-o", h5, "--every", "2"]) == 0
    with h5py.File(h5, "r+") as f:
        f.attrs["every"] = 0
    with pytest.raises(halo_fast.CaptureError, match="damaged HDF5 capture"):
        with open_capture(h5):
            pass


def test_sampling_attributes_and_grid():
    assert sampling_attributes() == {"every": 1, "tokens": ""}
    assert sampling_attributes(2, " 1 : 5 ") == {"every": 2, "tokens": "1:5"}
    assert sampling_attributes(3, (None, 8)) == {"every": 3, "tokens": ":8"}
    assert sampling_attributes(3, "4:") == {"every": 3, "tokens": "4:"}
    assert sampling_grid(None) == (1, 0)
    assert sampling_grid({"every": 3, "tokens": "4:"}) == (3, 4)
    assert sampling_grid({"every": 2, "tokens": ":8"}) == (2, 0)


def test_the_series_starts_where_the_sampling_says_not_at_the_first_step(tmp_path):
    """Held to one step in 2 from step 0, steps 1, 2, 4, 8: 1 is off the series, 6 is missing from it."""
    rng = np.random.default_rng(0)
    steps = [1, 2, 4, 8]
    tensors = [rng.dirichlet(np.ones(4 + s), (1, 2)).astype(np.float32) for s in steps]
    h5 = str(tmp_path / "odd.h5")
    assert main(["convert", write(tmp_path / "odd.json", capture_doc(tensors, steps=steps)), "-o", h5]) == 0
    with h5py.File(h5, "r+") as f:
        f.attrs["every"] = 2
    found = problems_of(check(h5))
    assert found["unsampled_steps"]["steps"] == [1]
    assert found["missing_steps"]["steps"] == [6]
