"""Fixtures for ``pytest bench/ --benchmark-only``: one cached synthetic capture, its other forms, json's answers.

The capture is made once in bench/data/ (the same cache as ``python -m halo_fast bench``);
its size comes from HALO_BENCH_SIZE (default 20MB) so CI stays quick and a person can
ask for 1GB. The .bin directory, HDF5 and gzip forms are made beside it on first use.
This folder is outside the project's testpaths, so plain ``pytest`` never collects it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from halo_fast.benchmark.contenders import json_load
from halo_fast.benchmark.data import FORMS, ensure_forms, parse_size

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def prepared() -> tuple[dict, dict]:
    size = parse_size(os.environ.get("HALO_BENCH_SIZE", "20MB"))
    return ensure_forms(str(DATA_DIR), size, tuple(FORMS), log=print)


@pytest.fixture(scope="session")
def capture(prepared) -> dict:
    """Manifest of the capture: ``path``, ``bytes``, ``with_attention`` (tokens the result must hold)."""
    return prepared[0]


@pytest.fixture(scope="session")
def forms(prepared) -> dict:
    """form ("bin", "h5", "jsonl.gz", "json.gz") -> manifest of the same capture in that form."""
    return prepared[1]


@pytest.fixture(scope="session")
def expected(capture) -> dict:
    """What the guide's json.load way gives: every token's float32 values and its mean over layers and heads."""
    return {"load": json_load(capture["path"]), "reduce": json_load(capture["path"], reduce=True)}
