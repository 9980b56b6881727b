"""numba's cache is dropped when any kernel source changes, not only the kernel's own file.

The check runs at a process's first kernel use (load or compile), in the folder numba
really caches in, never at import: importing deletes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import halo_fast.kernels.jit
from halo_fast.kernels.cache import COMPILING_NOTE, STAMP, drop_stale_cache, sources_fingerprint

KERNELS = Path(halo_fast.kernels.jit.__file__).parent


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


def test_cache_folder_may_be_elsewhere(tmp_path):
    """Under NUMBA_CACHE_DIR the kernels are cached away from their sources: stamp and drop there."""
    sources, cache = tmp_path / "sources", tmp_path / "numba" / "sources_1a2b"
    sources.mkdir()
    (sources / "floats.py").write_text("A = 1\n")
    assert drop_stale_cache(sources, cache)  # the folder need not exist yet
    assert (cache / STAMP).read_text() == sources_fingerprint(sources) and not (sources / "__pycache__").exists()
    (cache / "reduce.kernel-3.py311.nbi").write_text("x")
    assert not drop_stale_cache(sources, cache)
    (sources / "floats.py").write_text("A = 2\n")
    assert drop_stale_cache(sources, cache) and not (cache / "reduce.kernel-3.py311.nbi").exists()


def test_unwritable_cache_is_left_alone(tmp_path):
    (tmp_path / "floats.py").write_text("A = 1\n")
    (tmp_path / "__pycache__").write_text("not a folder")  # unwritable even for root
    assert not drop_stale_cache(tmp_path)
    assert (tmp_path / "__pycache__").read_text() == "not a folder"


FIRST_USE_SCRIPT = """
import json, os
from pathlib import Path

cache_dir = Path(os.environ["NUMBA_CACHE_DIR"])
import halo_fast.kernels

package_import_touched = cache_dir.exists()
from halo_fast.kernels import arrays, floats, reduce, rowstats, structure  # every kernel module
from halo_fast.kernels.cache import STAMP

folder = Path(structure.count_structural._cache.cache_path)  # numba makes it when the modules load
stamp = folder / STAMP
listing = lambda: sorted(p.name for p in folder.iterdir())
before, stamp_before = listing(), stamp.read_text() if stamp.exists() else None
import numpy as np

assert structure.find_structural(np.frombuffer(b'{"a": [1]}', dtype=np.uint8), 0, 10).tolist() == [0, 1, 3, 4, 6, 8, 9]
hits = sum(structure.count_structural.stats.cache_hits.values())
print(json.dumps(dict(touched=package_import_touched, folder=str(folder), before=before, stamp_before=stamp_before,
                      after=listing(), hits=hits)))
"""


@pytest.mark.slow  # compiles in fresh processes
def test_stale_cache_is_dropped_at_first_kernel_use_not_at_import(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def run() -> dict:
        done = subprocess.run([sys.executable, "-c", FIRST_USE_SCRIPT], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    first = run()
    assert first["touched"] is False  # importing halo_fast.kernels touched no file (numba's folder not even made)
    assert first["before"] == [] and first["stamp_before"] is None  # nothing checked before a kernel ran
    folder = Path(first["folder"])
    assert folder.parent == tmp_path / "cache"
    assert (folder / STAMP).read_text() == sources_fingerprint(KERNELS)  # stamped at first use
    assert any(name.startswith("structure.count_structural-") and name.endswith(".nbi") for name in first["after"])
    assert first["hits"] == 0  # compiled, and saved
    second = run()
    assert second["hits"] == 1  # loaded from that cache
    assert second["before"] == second["after"] == first["after"]
    # as after a change to some kernel source: a stamp of other sources, and a stale file
    (folder / STAMP).write_text("stale")
    (folder / "structure.planted-1.py311.nbi").write_text("x")
    third = run()
    assert third["stamp_before"] == "stale" and "structure.planted-1.py311.nbi" in third["before"]  # import: kept
    assert "structure.planted-1.py311.nbi" not in third["after"]  # first use: dropped ...
    assert third["hits"] == 0  # ... with the cached kernels of other sources: compiled again
    assert (folder / STAMP).read_text() == sources_fingerprint(KERNELS)


COPY_SCRIPT = """
import numpy as np
import kernels_copy.structure as s

assert s.find_structural(np.frombuffer(b"[1]", dtype=np.uint8), 0, 3).tolist() == [0, 2]
print(sum(s.count_structural.stats.cache_hits.values()))
"""


@pytest.mark.slow  # compiles in fresh processes
def test_a_change_to_any_kernel_source_drops_the_cache(tmp_path):
    """A copy of the kernels, cached beside it (__pycache__): a change to pow5.py -- no kernel of
    structure.py lives there, so numba's own check would still load it -- recompiles it."""
    copy = tmp_path / "kernels_copy"
    copy.mkdir()
    for path in KERNELS.glob("*.py"):
        shutil.copy(path, copy / path.name)
    env = {name: value for name, value in os.environ.items() if name != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])

    def hits() -> str:
        done = subprocess.run([sys.executable, "-c", COPY_SCRIPT], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert hits() == "0" and hits() == "1"
    with open(copy / "pow5.py", "a") as f:
        f.write("\n# changed\n")
    assert hits() == "0"
    assert hits() == "1"
    assert (copy / "__pycache__" / STAMP).read_text() == sources_fingerprint(copy)


@pytest.mark.slow  # compiles in fresh processes
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


@kernel(nrt=True)  # it allocates: numba's runtime
def scaled(x, factor):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = x[i] * factor
    return out


@kernel(parallel=True, nrt=True)  # a prange reduction: numba allocates its per-thread partial sums
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


@pytest.mark.slow  # compiles in fresh processes
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
    assert list((tmp_path / "cache").rglob("*.nbi"))
    assert not list((tmp_path / "cache").rglob(STAMP))  # kernels outside halo_fast/kernels: numba's check only


SMALL_REDUCE_SCRIPT = """
import sys
import halo_fast
from halo_fast.synth import write_capture

path = sys.argv[1]
if sys.argv[2] == "write":
    write_capture(path, layers=2, heads=2, prompt=8, tokens=5, seed=0)
red = halo_fast.reduce(path)
cap = halo_fast.load(path)

from numba.core.runtime import rtsys

print(red.data.shape[0], len(cap.tokens), "numba.np.arrayobj" in sys.modules, rtsys._init)
"""


@pytest.mark.slow  # compiles in a fresh cache first
def test_a_cached_reduce_loads_neither_numbas_array_library_nor_its_runtime(tmp_path):
    """Loading the decoder's kernels from the cache needs none of numba's array code (0.04 s to import):
    no kernel of pass 1 or pass 2 allocates an array (kernels.structure.find_structural). Nor do they
    call numba's runtime (compiled by LLVM in each process that starts it: 0.03 s): they are built
    with ``_nrt=False`` (kernels.jit), and loading them does not start it."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    path = str(tmp_path / "capture.json")
    run = [sys.executable, "-c", SMALL_REDUCE_SCRIPT, path]
    subprocess.run(run + ["write"], env=env, capture_output=True, text=True, check=True)  # compiles
    again = subprocess.run(run + ["again"], env=env, capture_output=True, text=True, check=True)
    assert again.stdout.split() == ["4", "5", "False", "False"]


RUNTIME_MODULE = """
import os

import numpy as np

from halo_fast.kernels.jit import kernel


@kernel(nrt=os.environ["USES_NRT"] == "1")
def doubled_sum(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += 2.0 * x[i]
    return s
"""

RUNTIME_SCRIPT = """
import numpy as np
from numba.core.runtime import rtsys

import runtime_kernels as k

print(k.doubled_sum(np.arange(10.0)), sum(k.doubled_sum.stats.cache_hits.values()), rtsys._init)
"""


@pytest.mark.slow  # compiles in fresh processes
def test_code_cached_with_numbas_runtime_is_never_loaded_without_it(tmp_path):
    """Whether a kernel uses numba's runtime is part of its cache key (``QuickLoadCache._index_key``):
    code compiled to call the runtime, loaded where the runtime is not started, would crash. numba's
    own key does not see the option (same source, same signature), so a kernel whose ``nrt``
    changed would otherwise load the other build."""
    (tmp_path / "runtime_kernels.py").write_text(RUNTIME_MODULE)
    base = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }

    def run(uses_nrt: str) -> list[str]:
        env = {**base, "USES_NRT": uses_nrt}
        done = subprocess.run([sys.executable, "-c", RUNTIME_SCRIPT], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert run("1") == ["90.0", "0", "True"]  # compiled with the runtime, saved
    assert run("1") == ["90.0", "1", "True"]  # loaded: the runtime started first
    assert run("0") == ["90.0", "0", "True"]  # not the runtime's build: compiled again (compiling starts it)
    assert run("0") == ["90.0", "1", "False"]  # its own entry, loaded; the runtime never started
    assert run("1") == ["90.0", "1", "True"]  # the first entry is still there


OTHER_CPU_SCRIPT = """
import numpy as np
from halo_fast.kernels.search import find_byte

data = np.frombuffer(b"0.25," * 100 + b"]", dtype=np.uint8)
at = find_byte(data, 0, len(data), 93, True)
print(at, sum(find_byte.stats.cache_hits.values()))
"""


@pytest.mark.slow  # compiles in fresh processes
def test_a_cache_written_for_another_cpu_is_compiled_again_not_loaded(tmp_path):
    """numba keys cached code on the CPU it was compiled for (name and features): vector code built
    for this machine's CPU is never loaded on one without its instructions. NUMBA_CPU_NAME=generic
    (baseline x86-64, SSE2) stands in for the other machine, sharing the cache folder."""
    base = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    base.pop("NUMBA_CPU_NAME", None)
    base.pop("NUMBA_CPU_FEATURES", None)
    generic = {**base, "NUMBA_CPU_NAME": "generic"}

    def run(env) -> list[str]:
        done = subprocess.run([sys.executable, "-c", OTHER_CPU_SCRIPT], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert run(base) == ["500", "0"]  # compiled for this CPU, saved
    assert run(generic) == ["500", "0"]  # another CPU: compiled again, same answer
    assert run(generic) == ["500", "1"]  # its own entry, loaded
    assert run(base) == ["500", "1"]  # this CPU's entry still there, loaded
