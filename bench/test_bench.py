"""pytest-benchmark view of the contenders: ``pytest bench/ --benchmark-only``.

The same functions as ``python -m halo_fast bench`` times in separate processes,
here timed in-process (no interpreter start, no imports, warm numba cache), one
benchmark group per task or format. Before anything is timed, each contender's
result is checked once against json's: bit for bit for ``load``, to float32
rounding for ``reduce``. There are no speed assertions: the numbers depend on the machine.
"""

from __future__ import annotations

import numpy as np
import pytest

from halo_fast.benchmark.contenders import (
    CONTENDERS,
    FORMAT_CONTENDERS,
    REQUIRES,
    available,
    gunzip_floor,
    halo_fast_load,
    halo_fast_reduce,
)

ROUNDS = dict(rounds=3, warmup_rounds=1, iterations=1)


def _check(task: str, got: list, want: list) -> None:
    assert len(got) == len(want), f"{len(got)} tokens, json has {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
        a = a.reshape(-1) if task == "load" else a  # plain h5py gives [layers, heads, ctx]
        assert a.dtype == np.float32 and a.shape == b.shape, f"token {i}: {a.dtype} {a.shape} vs {b.shape}"
        if task == "load":  # exact: the same float32 bits as np.asarray(json values, float32)
            assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), f"token {i} differs from json"
        else:  # means summed in a different order differ in the last bits
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7, err_msg=f"token {i}")


def _bench(benchmark, capture, expected, name: str, task: str) -> None:
    if not available(name):
        pytest.skip(f"{REQUIRES[name]} is not installed")
    function = CONTENDERS[name][task]
    _check(task, function(capture["path"]), expected[task])
    benchmark.extra_info.update(file_mb=round(capture["bytes"] / 1e6, 1), tokens=capture["with_attention"])
    result = benchmark.pedantic(function, args=(capture["path"],), **ROUNDS)
    assert len(result) == capture["with_attention"]


@pytest.mark.benchmark(group="load")
@pytest.mark.parametrize("name", list(CONTENDERS))
def test_load(benchmark, capture, expected, name):
    _bench(benchmark, capture, expected, name, "load")


@pytest.mark.benchmark(group="reduce")
@pytest.mark.parametrize("name", list(CONTENDERS))
def test_reduce(benchmark, capture, expected, name):
    _bench(benchmark, capture, expected, name, "reduce")


# --------------------------------------------------------------------------- the same capture in other formats

#: (form, label) -> (task, function): what each format group times; the JSON rows are the yardstick
FORMAT_CASES = {
    "directory": {
        ("bin", "np.fromfile floor"): ("load", FORMAT_CONTENDERS["fromfile"]),
        ("bin", "halo_fast load"): ("load", halo_fast_load),
        ("bin", "halo_fast reduce"): ("reduce", halo_fast_reduce),
    },
    "hdf5": {
        ("json", "halo_fast load"): ("load", halo_fast_load),
        ("h5", "halo_fast load"): ("load", halo_fast_load),
        ("h5", "halo_fast reduce"): ("reduce", halo_fast_reduce),
        ("h5", "h5py attention rows"): ("load", FORMAT_CONTENDERS["h5py"]),
        ("h5", "h5py values"): ("load", FORMAT_CONTENDERS["h5py_values"]),
    },
    "gzip": {
        ("jsonl.gz", "gunzip floor"): ("read", gunzip_floor),
        ("jsonl.gz", "halo_fast load"): ("load", halo_fast_load),
        ("jsonl.gz", "halo_fast reduce"): ("reduce", halo_fast_reduce),
        ("json.gz", "gunzip floor"): ("read", gunzip_floor),
        ("json.gz", "halo_fast load"): ("load", halo_fast_load),
        ("json.gz", "halo_fast reduce"): ("reduce", halo_fast_reduce),
    },
}


def _format_bench(benchmark, capture, forms, expected, group: str, case: tuple) -> None:
    form, _label = case
    task, function = FORMAT_CASES[group][case]
    path = capture["path"] if form == "json" else forms[form]["path"]
    if task == "read":  # a floor: the decompressed bytes, all of them
        assert function(path) == forms[form]["text_bytes"]
    else:
        _check(task, function(path), expected[task])
    benchmark.extra_info.update(
        file_mb=round((capture if form == "json" else forms[form])["bytes"] / 1e6, 1), form=form
    )
    benchmark.pedantic(function, args=(path,), **ROUNDS)


def _ids(cases) -> list:
    return [f"{form}: {label}" for form, label in cases]


@pytest.mark.benchmark(group="directory")
@pytest.mark.parametrize("case", list(FORMAT_CASES["directory"]), ids=_ids(FORMAT_CASES["directory"]))
def test_directory(benchmark, capture, forms, expected, case):
    _format_bench(benchmark, capture, forms, expected, "directory", case)


@pytest.mark.benchmark(group="hdf5")
@pytest.mark.parametrize("case", list(FORMAT_CASES["hdf5"]), ids=_ids(FORMAT_CASES["hdf5"]))
def test_hdf5(benchmark, capture, forms, expected, case):
    _format_bench(benchmark, capture, forms, expected, "hdf5", case)


@pytest.mark.benchmark(group="gzip")
@pytest.mark.parametrize("case", list(FORMAT_CASES["gzip"]), ids=_ids(FORMAT_CASES["gzip"]))
def test_gzip(benchmark, capture, forms, expected, case):
    _format_bench(benchmark, capture, forms, expected, "gzip", case)


@pytest.mark.benchmark(group="convert")
def test_convert(benchmark, capture, expected, tmp_path):
    """``convert`` in-process (uncompressed), JSON -> .h5; the result read back must be json's bits."""
    from halo_fast import open_capture
    from halo_fast.store.capture_h5 import convert

    target = str(tmp_path / "convert.h5")

    def run():
        with open_capture(capture["path"]) as source:
            return convert(source, target, compression="none", force=True)

    run()
    _check("load", halo_fast_load(target), expected["load"])
    benchmark.extra_info.update(file_mb=round(capture["bytes"] / 1e6, 1))
    benchmark.pedantic(run, **ROUNDS)
