"""Shared by the tests/test_formats_* modules: one small synth capture and exact comparisons."""

from __future__ import annotations

import numpy as np

SYNTH = dict(layers=3, heads=2, prompt=20, tokens=7, seed=5)


def assert_same_capture(cap, ref, metadata: bool = True):
    """Bit-identical attention, same shapes, offsets, tables (and metadata)."""
    assert np.array_equal(cap.offsets, ref.offsets)
    assert np.array_equal(cap.shapes, ref.shapes)
    assert cap.values.dtype == np.float32
    assert np.array_equal(cap.values.view(np.uint32), ref.values.view(np.uint32))
    for name in ref.tokens.columns:
        assert np.array_equal(cap.tokens[name], ref.tokens[name]), name
    for name in ref.prompt_tokens.columns:
        assert np.array_equal(cap.prompt_tokens[name], ref.prompt_tokens[name]), name
    if metadata:
        assert _unstyled(cap.metadata) == _unstyled(ref.metadata)


def _unstyled(metadata: dict) -> dict:
    """The metadata without synth's record of the writing style (other files may use another)."""
    out = dict(metadata)
    if isinstance(out.get("synth"), dict):
        out["synth"] = {k: v for k, v in out["synth"].items() if k != "style"}
    return out


def assert_same_reduced(a, b):
    assert np.array_equal(a.data.view(np.uint32), b.data.view(np.uint32))
    assert np.array_equal(a.steps, b.steps)
