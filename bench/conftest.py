"""Fixtures for ``pytest bench/ --benchmark-only``: one cached synthetic capture and json's answers.

The capture is made once in bench/data/ (the same cache as ``python -m halo_fast bench``);
its size comes from HALO_BENCH_SIZE (default 20MB) so CI stays quick and a person can
ask for 1GB. This folder is outside the project's testpaths, so plain ``pytest`` never
collects it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from halo_fast.benchmark.contenders import json_load
from halo_fast.benchmark.data import ensure_capture, parse_size

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def capture() -> dict:
    """Manifest of the capture: ``path``, ``bytes``, ``with_attention`` (tokens the result must hold)."""
    size = parse_size(os.environ.get("HALO_BENCH_SIZE", "20MB"))
    return ensure_capture(str(DATA_DIR), size, log=print)


@pytest.fixture(scope="session")
def expected(capture) -> dict:
    """What the guide's json.load way gives: every token's float32 values and its mean over layers and heads."""
    return {"load": json_load(capture["path"]), "reduce": json_load(capture["path"], reduce=True)}
