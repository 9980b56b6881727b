"""numba's cache is dropped when any kernel source changes, not only the kernel's own file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from halo_fast.kernels.cache import STAMP, drop_stale_cache


def _cached(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "__pycache__").glob("*.nb?"))


def test_cache_follows_every_source_file(tmp_path):
    (tmp_path / "floats.py").write_text("A = 1\n")
    (tmp_path / "reduce.py").write_text("from .floats import A\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    for name in ("reduce.kernel-3.py311.nbi", "reduce.kernel-3.py311.1.nbc", "other.pyc"):
        (cache / name).write_text("x")
    assert drop_stale_cache(tmp_path)  # no fingerprint yet: whatever is cached is of unknown sources
    assert _cached(tmp_path) == [] and (cache / "other.pyc").exists() and (cache / STAMP).exists()

    (cache / "reduce.kernel-3.py311.nbi").write_text("x")
    assert not drop_stale_cache(tmp_path)  # same sources: the cache stays
    assert _cached(tmp_path) == ["reduce.kernel-3.py311.nbi"]

    (tmp_path / "floats.py").write_text("A = 2\n")  # a file the cached kernel does not live in
    assert drop_stale_cache(tmp_path)
    assert _cached(tmp_path) == []


def test_unwritable_cache_is_left_alone(tmp_path):
    (tmp_path / "floats.py").write_text("A = 1\n")
    (tmp_path / "__pycache__").write_text("not a folder")  # unwritable even for root
    assert not drop_stale_cache(tmp_path)
    assert (tmp_path / "__pycache__").read_text() == "not a folder"


def test_package_cache_is_stamped_on_import():
    import halo_fast.kernels as kernels
    from halo_fast.kernels.cache import sources_fingerprint

    folder = Path(kernels.__file__).parent
    subprocess.run([sys.executable, "-c", "import halo_fast.kernels"], check=True)
    stamp = folder / "__pycache__" / STAMP
    if stamp.exists():  # absent only where the install is read-only
        assert stamp.read_text() == sources_fingerprint(folder)
