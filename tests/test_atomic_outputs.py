"""Atomic outputs: folders replaced in one step, the previous one kept on any failure, Ctrl-C's cleanup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import halo_fast
from halo_fast import _cleanup
from halo_fast.cli.main import main
from halo_fast.store import atomic
from halo_fast.store.atomic import atomic_directory, output_beside


def _folder(path: Path, text: str) -> None:
    path.mkdir()
    (path / "a.txt").write_text(text)


def test_force_replaces_a_folder_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "out"
    _folder(target, "old")
    with atomic_directory(target, force=True) as new:
        Path(new, "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.parametrize("exchange", [True, False])
def test_a_failed_swap_keeps_the_previous_folder(tmp_path, monkeypatch, exchange):
    target = tmp_path / "out"
    _folder(target, "old")
    if not exchange:  # the path taken where the system cannot swap two paths in one step
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real_replace = os.replace

    def failing_replace(src, dst):
        if os.path.abspath(dst) == str(target) and ".tmp" in os.path.basename(src):
            raise OSError("disk on fire")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    if exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: (_ for _ in ()).throw(OSError("disk on fire")))
    with pytest.raises(OSError, match="disk on fire"):
        with atomic_directory(target, force=True) as new:
            Path(new, "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_ctrl_c_in_the_middle_of_a_swap_puts_the_previous_folder_back(tmp_path, monkeypatch):
    """What the SIGINT handler does (discard_all) at the worst moment: between moving the old folder
    aside and renaming the new one in."""
    target = tmp_path / "out"
    _folder(target, "old")
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real_replace = os.replace

    def interrupted(src, dst):
        if os.path.abspath(dst) == str(target) and ".tmp" in os.path.basename(src):
            _cleanup.discard_all()  # the handler's work, then os._exit: nothing after it runs
            raise SystemExit(130)
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", interrupted)
    with pytest.raises(SystemExit):
        with atomic_directory(target, force=True) as new:
            Path(new, "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_exists_without_force_names_the_file(tmp_path):
    target = tmp_path / "out"
    _folder(target, "old")
    with pytest.raises(FileExistsError) as info:
        with atomic_directory(target):
            pass
    assert info.value.filename == str(target) and "--force" in info.value.strerror


def test_output_names_drop_every_input_suffix():
    assert output_beside("runs/cap.reduced.npz", ".report.md") == "runs/cap.report.md"
    assert output_beside("runs/cap.reduced.h5", ".report.md") == "runs/cap.report.md"
    assert output_beside("runs/cap.jsonl.gz", ".h5") == "runs/cap.h5"


@pytest.mark.parametrize(
    "name, content",
    [("bad.npz", b"not a zip"), ("other.npz", None), ("other.reduced.h5", None)],
)
def test_a_damaged_or_foreign_reduce_output_is_a_capture_error(tmp_path, name, content, capsys):
    import h5py
    import numpy as np

    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    elif name.endswith(".npz"):
        np.savez(path, x=np.zeros(3))
    else:
        with h5py.File(path, "w") as f:
            f["steps"] = np.arange(3)
    from halo_fast.store import load_reduced

    with pytest.raises(halo_fast.CaptureError, match="not a reduce output"):
        load_reduced(path)
    assert main(["stats", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_a_temporary_is_registered_before_it_exists(tmp_path):
    """Ctrl-C's clean-up (``discard_all``) at the instant the temporary is made: it is removed, whatever
    threads the process runs (no signal mask to rely on)."""
    made = []

    def create_then_interrupted(path):
        atomic._make_file(path)
        made.append(path)
        _cleanup.discard_all()

    atomic._reserve(str(tmp_path / "out.h5"), str(tmp_path), create_then_interrupted)
    assert made and not os.path.exists(made[0])


def test_a_taken_temporary_name_is_skipped_and_left_alone(tmp_path, monkeypatch):
    taken = tmp_path / f".out.h5.{'00' * 8}.tmp"
    taken.write_text("someone else's")
    draws = iter([b"\0" * 8, b"\1" * 8])
    monkeypatch.setattr(atomic.os, "urandom", lambda n: next(draws))
    path = atomic._reserve(str(tmp_path / "out.h5"), str(tmp_path), atomic._make_file)
    assert path.endswith(f".{'01' * 8}.tmp") and os.path.exists(path)
    _cleanup.discard_all()
    assert taken.read_text() == "someone else's" and not os.path.exists(path)


def test_remove_temporaries_touches_only_its_targets(tmp_path):
    (tmp_path / ".a.h5.x1.tmp").write_text("")
    (tmp_path / ".a.h5.x2.tmp").mkdir()
    (tmp_path / ".other.h5.x3.tmp").write_text("")
    (tmp_path / ".a.h5.x4.old").mkdir()
    atomic.remove_temporaries([tmp_path / "a.h5"])
    assert sorted(os.listdir(tmp_path)) == [".a.h5.x4.old", ".other.h5.x3.tmp"]
