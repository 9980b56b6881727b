"""numba's cache is dropped when any kernel source changes, not only the kernel's own file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from halo_fast.kernels.cache import COMPILING_NOTE, STAMP, drop_stale_cache


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


def test_compiling_is_announced_once_and_loading_from_the_cache_is_not(tmp_path):
    (tmp_path / "kernel_module.py").write_text(
        "from numba import njit\n\n@njit(cache=True)\ndef twice(x):\n    return 2 * x\n\n"
        "@njit(cache=True)\ndef thrice(x):\n    return 3 * x\n"
    )
    script = (
        "import sys\nfrom halo_fast.kernels.cache import announce_compiling\n"
        "announce_compiling(sys.stdout)\nimport kernel_module\n"
        "assert kernel_module.twice(2) == 4 and kernel_module.thrice(2) == 6\nprint('done')\n"
    )
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    again = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert first.stdout == COMPILING_NOTE + "\ndone\n"  # two kernels compiled, one line
    assert again.stdout == "done\n"  # both loaded from the cache


QUICK_LOAD_MODULE = """
import numpy as np
from numba import prange

from halo_fast.kernels.jit import kernel


@kernel()
def scaled(x, factor):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = x[i] * factor
    return out


@kernel(parallel=True)
def total(x):
    s = 0.0
    for i in prange(x.shape[0]):
        s += x[i]
    return s
"""

QUICK_LOAD_SCRIPT = """
import numpy as np
from numba.core.imputils import builtin_registry
from numba.core.registry import cpu_target

import quick_kernels as k

x = np.arange(1000, dtype=np.float64)
assert k.total(x) == 499500.0
assert (k.scaled(x, 2.0) == 2 * x).all()
hits = sum(k.total.stats.cache_hits.values()) + sum(k.scaled.stats.cache_hits.values())
refreshed = builtin_registry in cpu_target.target_context._registries
# a signature not in the cache still compiles (numba's compiler refreshes the context itself)
assert k.total(x.astype(np.float32)) == 499500.0
print(hits, refreshed)
"""


def test_cached_kernels_load_without_the_full_refresh_and_still_compile_on_a_miss(tmp_path):
    (tmp_path / "quick_kernels.py").write_text(QUICK_LOAD_MODULE)
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    run = [sys.executable, "-c", QUICK_LOAD_SCRIPT]
    first = subprocess.run(run, env=env, capture_output=True, text=True, check=True)
    again = subprocess.run(run, env=env, capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["0", "True"]  # compiled: numba refreshed its context
    assert again.stdout.split() == ["2", "False"]  # both loaded from the cache, no refresh
