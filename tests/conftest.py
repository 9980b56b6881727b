"""Shared fixtures for the decoder tests: hypothesis settings and capture files on disk."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, settings

from reference import dumps, write_text  # tests/ is on sys.path: pyproject.toml's pythonpath

# One place for the budget: the whole decoder suite must stay well under a minute.
settings.register_profile(
    "default",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("default")
# Per-test budgets are set with reference.examples(n); scale them all with HALO_TEST_EXAMPLES_SCALE.


@pytest.fixture(scope="session")
def scratch(tmp_path_factory):
    """``scratch(text_or_doc, style=...) -> path``: a fresh capture file (safe inside @given)."""
    directory = tmp_path_factory.mktemp("captures")
    counter = itertools.count()

    def write(content, style: str = "compact", rng=None, name: str | None = None) -> str:
        if not isinstance(content, (str, bytes)):
            content = dumps(content, style, rng)
        path = directory / (name or f"capture_{next(counter)}.json")
        return write_text(path, content)

    return write


@pytest.fixture
def write_capture(scratch):
    """Same as scratch, for ordinary (non-hypothesis) tests."""
    return scratch


def pytest_addoption(parser):
    parser.addoption(
        "--fuzz-long",
        action="store_true",
        default=False,
        help="run the fuzz tests with many more mutated captures (minutes)",
    )
