"""pytest-benchmark view of the contenders: ``pytest bench/ --benchmark-only``.

The same functions as ``python -m halo_fast bench`` times in separate processes,
here timed in-process (no interpreter start, no imports, warm numba cache), one
benchmark group per task. Before anything is timed, each contender's result is
checked once against json's: bit for bit for ``load``, to float32 rounding for
``reduce``. There are no speed assertions: the numbers depend on the machine.
"""

from __future__ import annotations

import numpy as np
import pytest

from halo_fast.benchmark.contenders import CONTENDERS, REQUIRES, available

ROUNDS = dict(rounds=3, warmup_rounds=1, iterations=1)


def _check(task: str, got: list, want: list) -> None:
    assert len(got) == len(want), f"{len(got)} tokens, json has {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
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
