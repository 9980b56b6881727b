"""reduce(): the fused streaming kernel against a plain numpy reference, and its options."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import halo_fast
from builders import capture_doc, write
from halo_fast.reduction import parse_selection, select_tokens

OPS = ["mean", "max", "min", "sum", "nanmean"]
OVERS = [("layers", "heads"), ("layers",), ("heads",)]
AXIS = {("layers", "heads"): (0, 1), ("layers",): 0, ("heads",): 1}


def numpy_reference(tensor, op, over, layers, heads):
    """The naive twin: select, then numpy's reduction in float64, cast to float32."""
    t = tensor[np.asarray(layers)][:, np.asarray(heads)].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return getattr(np, op)(t, axis=AXIS[over]).astype(np.float32)


def assert_matches(got, want, op, label):
    if op in ("max", "min"):  # order-free: exact (up to the sign of zero)
        np.testing.assert_array_equal(got, want, err_msg=label)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-30, equal_nan=True, err_msg=label)


@st.composite
def random_tensors(draw):
    layers = draw(st.integers(1, 4))
    heads = draw(st.integers(1, 4))
    n = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    tensors = []
    for _ in range(n):
        ctx = int(rng.integers(0, 7))
        t = rng.standard_normal((layers, heads, ctx)).astype(np.float32)
        if draw(st.booleans()):
            t[rng.random(t.shape) < 0.15] = np.nan
        tensors.append(t)
    return tensors


@given(tensors=random_tensors(), op=st.sampled_from(OPS), over=st.sampled_from(OVERS), data=st.data())
def test_streaming_reduce_matches_numpy(scratch, tensors, op, over, data):
    n_layers, n_heads = tensors[0].shape[:2]
    layers = sorted(data.draw(st.sets(st.integers(0, n_layers - 1), min_size=1)))
    heads = sorted(data.draw(st.sets(st.integers(0, n_heads - 1), min_size=1)))
    path = scratch(capture_doc(tensors), style="python")
    red = halo_fast.reduce(path, op=op, over=over, layers=layers, heads=heads)
    assert red.layers == layers and red.heads == heads
    assert red.steps.tolist() == list(range(len(tensors)))
    for t, tensor in enumerate(tensors):
        want = numpy_reference(tensor, op, over, layers, heads)
        got = red.data[t][..., : tensor.shape[2]]
        assert_matches(got, want, op, f"{op} over {over} token {t}")
        assert np.all(np.isnan(red.data[t][..., tensor.shape[2] :]))
    # the same fold on a decoded capture gives identical numbers
    again = halo_fast.load(path).reduce(op=op, over=over, layers=layers, heads=heads)
    np.testing.assert_array_equal(again.data, red.data)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("over", OVERS)
def test_reduce_hard_cases(tmp_path, op, over):
    """Tokens holding numbers the fast parser declines, infinities, -0 and subnormals."""
    rng = np.random.default_rng(7)
    tensors = [rng.random((3, 2, 5)).astype(np.float32) for _ in range(3)]
    tensors[1][0, 1, 2] = np.inf
    tensors[1][2, 0, 0] = -0.0
    tensors[2][1, 1, 4] = np.float32(1e-45)
    doc = capture_doc(tensors)
    text = json.dumps(doc)
    # a 40-digit rendering of one value: valid JSON that only the reference settles
    long_value = "0." + "3" * 40
    first = json.dumps(float(tensors[0][0, 0, 0]))
    text = text.replace(first, long_value, 1)
    tensors[0][0, 0, 0] = np.float32(float(long_value))
    path = tmp_path / "hard.json"
    path.write_text(text)
    red = halo_fast.reduce(str(path), op=op, over=over)
    for t, tensor in enumerate(tensors):
        want = numpy_reference(tensor, op, over, range(3), range(2))
        assert_matches(red.data[t], want, op, f"token {t}")


@pytest.mark.parametrize("op", OPS)
def test_reduce_hard_numbers_in_several_windows(tmp_path, op):
    """A token with a number only the reference settles, then more windows of tokens: the windows
    after it are parsed with the same row scratch as those before (one token a window here)."""
    rng = np.random.default_rng(11)
    tensors = [rng.random((3, 2, 5 + i)).astype(np.float32) for i in range(8)]
    text = json.dumps(capture_doc(tensors))
    for t in (0, 5):  # an early window and a later one
        first = json.dumps(float(tensors[t][1, 0, 2]))
        long_value = "0." + str(t + 1) * 40
        assert text.count(first) == 1
        text = text.replace(first, long_value)
        tensors[t][1, 0, 2] = np.float32(float(long_value))
    path = tmp_path / "hard_windows.json"
    path.write_text(text)
    small = halo_fast.reduce(str(path), op=op, window_bytes=64)
    whole = halo_fast.reduce(str(path), op=op)
    np.testing.assert_array_equal(small.data, whole.data)
    for t, tensor in enumerate(tensors):
        want = numpy_reference(tensor, op, ("layers", "heads"), range(3), range(2))
        assert_matches(small.data[t][..., : tensor.shape[2]], want, op, f"token {t}")


def test_every_and_token_range_and_null_first(tmp_path):
    rng = np.random.default_rng(1)
    tensors = [rng.random((2, 2, 4 + i)).astype(np.float32) for i in range(10)]
    path = write(tmp_path / "c.json", capture_doc(tensors, null_first=True))
    full = halo_fast.reduce(path)
    assert full.steps.tolist() == list(range(1, 10))  # step 0 had no attention
    assert full.data.shape == (9, 13)
    assert full.context_lengths.tolist() == [4 + i for i in range(1, 10)]
    every = halo_fast.reduce(path, every=3)
    assert every.steps.tolist() == [3, 6, 9]
    np.testing.assert_array_equal(every.data, full.data[[2, 5, 8]][:, : every.data.shape[1]])
    ranged = halo_fast.reduce(path, tokens=(2, 6))
    assert ranged.steps.tolist() == [2, 3, 4, 5]
    assert halo_fast.reduce(path, tokens="4:").steps.tolist() == [4, 5, 6, 7, 8, 9]
    assert halo_fast.reduce(path, tokens=(2, 9), every=2).steps.tolist() == [2, 4, 6, 8]


def test_select_tokens_by_step_value():
    steps = np.array([0, 1, 2, 3, 4, 5, 6])
    has = np.array([False, True, True, True, True, True, True])
    assert select_tokens(steps, has, 2).tolist() == [2, 4, 6]
    assert select_tokens(steps, has, 1, (3, None)).tolist() == [3, 4, 5, 6]
    with pytest.raises(ValueError):
        select_tokens(steps, has, 0)


@pytest.mark.parametrize(
    "spec, expected",
    [
        (None, list(range(28))),
        (3, [3]),
        (-1, [27]),
        ("20-27", list(range(20, 28))),
        ("-4:", [24, 25, 26, 27]),
        ("0,3", [0, 3]),
        ("3,0,3", [0, 3]),
        ("::7", [0, 7, 14, 21]),
        ([5, 1], [1, 5]),
        (slice(2, 4), [2, 3]),
    ],
)
def test_parse_selection(spec, expected):
    assert parse_selection(spec, 28, "layers").tolist() == expected


@pytest.mark.parametrize("spec", ["28", "x", "1-", "0:0", [40], "1:2:3:4"])
def test_parse_selection_rejects(spec):
    with pytest.raises(ValueError):
        parse_selection(spec, 28, "layers")


def test_bad_options(tmp_path):
    path = write(tmp_path / "c.json", capture_doc([np.ones((2, 2, 3), np.float32)]))
    for kwargs in ({"op": "median"}, {"over": "tokens"}, {"over": ()}, {"layers": 5}, {"every": 0}):
        with pytest.raises(ValueError):
            halo_fast.reduce(path, **kwargs)


def test_skipped_rows_still_count_values(tmp_path):
    """Rows that are stepped over unparsed must still hold exactly their share of values."""
    doc = capture_doc([np.ones((2, 2, 3), np.float32)])
    doc["generated_tokens"][0]["attention"]["data"].pop()
    path = write(tmp_path / "short.json", doc)
    with pytest.raises(halo_fast.CaptureError) as info:
        halo_fast.reduce(path, layers=0)
    assert info.value.step == 0 and info.value.offset is not None


def test_bad_number_in_selected_row_names_step(tmp_path):
    doc = capture_doc([np.ones((1, 2, 3), np.float32)] * 2)
    text = json.dumps(doc)
    cut = text.rindex("1.0")
    text = text[:cut] + "1.2.3" + text[cut + 3 :]
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(halo_fast.CaptureError) as info:
        halo_fast.reduce(str(path))
    assert info.value.step == 1
    assert abs(info.value.offset - (cut + 3)) <= 2


def js_mean_reference(tensor, rows):
    """Halo Weave's front end (``_aggregateAttention``), transcribed: a Float32Array sum of the
    rows in order, then each sum times the double 1 / rows, stored back into float32."""
    flat = [tensor[layer, head] for layer, head in rows]
    out = np.zeros(tensor.shape[2], dtype=np.float32)
    for row in flat:
        for i in range(len(out)):
            out[i] = np.float32(float(out[i]) + float(row[i]))
    scale = 1.0 / len(flat)
    return np.array([np.float32(float(x) * scale) for x in out], dtype=np.float32)


@st.composite
def signed_zero_tensors(draw):
    """Random tensors where some columns are all -0.0, some mix -0.0 and 0.0: numpy's sum
    starts from +0.0 as the front end's zeroed Float32Array does, so neither keeps a -0.0."""
    tensors = draw(random_tensors())
    for t in tensors:
        if t.shape[2]:
            t[:, :, 0] = -0.0
            t[:, :, -1] = np.where(np.arange(t.shape[1]) % 2 == 0, -0.0, 0.0)
    return tensors


@given(tensors=st.one_of(random_tensors(), signed_zero_tensors()), over=st.sampled_from(OVERS), data=st.data())
def test_halo_weave_means_are_bit_exact(scratch, tensors, over, data):
    """mean_f32 is numpy's float32 mean and mean_js the front end's, bit for bit, on every route."""
    n_layers, n_heads = tensors[0].shape[:2]
    layers = sorted(data.draw(st.sets(st.integers(0, n_layers - 1), min_size=1)))
    heads = sorted(data.draw(st.sets(st.integers(0, n_heads - 1), min_size=1)))
    path = scratch(capture_doc(tensors), style="python")
    for op in ("mean_f32", "mean_js"):
        red = halo_fast.reduce(path, op=op, over=over, layers=layers, heads=heads)
        again = halo_fast.load(path).reduce(op=op, over=over, layers=layers, heads=heads)
        np.testing.assert_array_equal(again.data, red.data)
        for t, tensor in enumerate(tensors):
            # C order, as Halo Weave's reshape gives it: numpy's float32 mean follows the memory order
            picked = np.ascontiguousarray(tensor[np.asarray(layers)][:, np.asarray(heads)])
            got = red.data[t][..., : tensor.shape[2]]
            if op == "mean_f32" and (tensor.shape[2] != 1 or over != ("layers", "heads")):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    want = np.mean(picked, axis=AXIS[over])
            elif op == "mean_f32":
                # a one-position context: numpy sums the layers x heads values pairwise there (one contiguous
                # run); mean_f32 keeps the row order, documented as the one case it does not follow numpy
                total = np.float32(0.0)
                for row in picked.reshape(-1, picked.shape[2]):
                    total = np.float32(total + row[0])
                want = np.array([np.float32(float(total) / (len(layers) * len(heads)))], dtype=np.float32)
            elif over == ("layers", "heads"):
                want = js_mean_reference(picked, [(a, b) for a in range(len(layers)) for b in range(len(heads))])
            else:
                continue  # the front end only ever averages over both
            assert want.dtype == np.float32
            np.testing.assert_array_equal(got, want, err_msg=f"{op} token {t}")  # NaN == NaN here
            assert np.array_equal(np.signbit(got), np.signbit(want))
