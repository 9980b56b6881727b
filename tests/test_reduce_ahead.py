"""Reduce folded during pass 1 (formats.json_ahead) against the plain two-pass route, bit for bit.

``halo_fast.reduce`` of a single JSON larger than the page cache goes through json_ahead, reading
the file once (formats.streamed); here every file does (``fold_ahead_for_every_size``: with
O_DIRECT, through the page cache, and over the map), the same call with the ahead route
switched off is the reference, and a spy on the plain pass 2 (``json_values.reduce_attention``)
shows which tokens the guesses did not settle.
"""

from __future__ import annotations

import contextlib
import json
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import halo_fast
import halo_fast.formats.json_single as json_single
import halo_fast.formats.json_values as json_values
from builders import capture_doc
from halo_fast.formats.json_single import ScannedJson
from halo_fast.formats.streamed import StreamedFile

OPS = ["mean", "max", "min", "sum", "nanmean", "mean_f32", "mean_js"]
OVERS = [("layers", "heads"), ("layers",), ("heads",)]


READS = {
    # the file read once into a ring of 4 KB chunks (many chunks even in a small file), past the page cache
    "direct": lambda path: StreamedFile(path, chunk_bytes=4096, ahead_chunks=2),
    # the same through the page cache (where O_DIRECT is refused)
    "buffered": lambda path: StreamedFile(path, chunk_bytes=4096, ahead_chunks=2, direct=False),
    "map": None,  # no streamed reading on this system: pass 1 walks the map
}


@pytest.fixture(autouse=True, params=sorted(READS))
def fold_ahead_for_every_size(request):
    """The ahead route is taken for files larger than the page cache; these small ones take it too,
    reading the file each way the route can."""
    read = READS[request.param]
    with (
        mock.patch("halo_fast.formats.json_single.outgrows_page_cache", lambda size: True),
        mock.patch("halo_fast.formats.streamed.supported", lambda: read is not None),
        mock.patch("halo_fast.formats.json_single.StreamedFile", read),
    ):
        yield


@contextlib.contextmanager
def plain_route():
    with mock.patch.object(ScannedJson, "plan_reduce", lambda self, request: None):
        yield


@contextlib.contextmanager
def plain_pass_spy():
    """The token indices the plain pass 2 is asked to fold, call by call."""
    calls: list[list[int]] = []
    original = json_values.reduce_attention

    def spy(scan, ids, plan):
        calls.append([int(i) for i in ids])
        return original(scan, ids, plan)

    with (
        mock.patch.object(json_values, "reduce_attention", spy),
        mock.patch.object(json_single, "reduce_attention", spy),
    ):
        yield calls


def both_routes(path, **options):
    """(ahead result, plain result, the plain pass's calls on the ahead route)."""
    with plain_pass_spy() as calls:
        ahead = halo_fast.reduce(path, **options)
    with plain_route():
        plain = halo_fast.reduce(path, **options)
    return ahead, plain, calls


def assert_same(ahead, plain):
    assert ahead.data.dtype == plain.data.dtype == np.float32
    assert ahead.data.shape == plain.data.shape
    assert ahead.data.tobytes() == plain.data.tobytes()  # bit for bit, NaN payloads and zero signs too
    assert ahead.steps.tolist() == plain.steps.tolist()
    assert ahead.context_lengths.tolist() == plain.context_lengths.tolist()


@st.composite
def captures(draw):
    layers, heads = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n = draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    tensors = []
    for _ in range(n):
        t = rng.standard_normal((layers, heads, int(rng.integers(0, 9)))).astype(np.float32)
        t[rng.random(t.shape) < 0.1] = np.nan
        tensors.append(t)
    steps = draw(st.one_of(st.none(), st.just([3 * i + 1 for i in range(n)])))
    return capture_doc(tensors, steps=steps, null_first=draw(st.booleans()))


@settings(max_examples=60)
@given(doc=captures(), data=st.data())
def test_ahead_equals_plain_route(scratch, doc, data):
    path = scratch(doc, style=data.draw(st.sampled_from(["compact", "python"])))
    options = dict(
        op=data.draw(st.sampled_from(OPS)),
        over=data.draw(st.sampled_from(OVERS)),
        every=data.draw(st.integers(1, 3)),
        window_bytes=data.draw(st.sampled_from([64, 1000, 1 << 20])),
    )
    if data.draw(st.booleans()):
        options["tokens"] = (data.draw(st.integers(0, 4)), None)
    try:
        ahead, plain, calls = both_routes(path, **options)
    except (halo_fast.SelectionError, halo_fast.CaptureError) as error:  # nothing to reduce: both routes say so
        with plain_route(), pytest.raises(type(error)) as plain_error:
            halo_fast.reduce(path, **options)
        assert str(plain_error.value) == str(error)
        return
    assert_same(ahead, plain)
    assert calls == []  # every token was settled during pass 1


def big_capture(tmp_path, tokens=12, layers=2, heads=3, name="c.json", **doc_options):
    rng = np.random.default_rng(5)
    tensors = [rng.random((layers, heads, 20 + i)).astype(np.float32) for i in range(tokens)]
    doc = capture_doc(tensors, **doc_options)
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path), doc


def test_windows_smaller_than_a_token_fold_every_token_ahead(tmp_path):
    path, _ = big_capture(tmp_path)
    for window in (16, 300, 5000, 1 << 22):
        ahead, plain, calls = both_routes(path, window_bytes=window, over="layers")
        assert_same(ahead, plain)
        assert calls == []


def test_a_misleading_shape_field_is_checked_and_refolded(tmp_path):
    """A token with a second "shape" key (in another field of its own) is not guessed; a token whose
    first "shape" key is overridden by a duplicate one after its array (json keeps the last) is folded
    with the wrong guess, found out and folded again. A "shape" inside a string is no key at all."""
    path, doc = big_capture(tmp_path, texts={1: '"shape": [9, 9, 9]'})
    doc["generated_tokens"][3]["probe"] = {"shape": [9, 9, 9]}
    text = json.dumps(doc)
    # token 5: a duplicate "shape" key after the data array; json keeps the last one (the true one)
    five = doc["generated_tokens"][5]["attention"]
    true_shape = json.dumps(five["shape"])
    head = '"attention": {"shape": ' + true_shape
    at = text.index(head, text.index('"step": 5,'))
    fake = json.dumps([five["shape"][0], five["shape"][1], five["shape"][2] - 1])
    text = text[:at] + '"attention": {"shape": ' + fake + text[at + len(head) :]
    close = text.index("]", text.index('"data": [', at)) + 1
    text = text[:close] + ', "shape": ' + true_shape + text[close:]
    path_bytes = tmp_path / "misleading.json"
    path_bytes.write_text(text)
    ahead, plain, calls = both_routes(str(path_bytes))
    assert_same(ahead, plain)
    assert sorted(i for call in calls for i in call) == [3, 5]


def test_shape_after_data_and_step_absent(tmp_path):
    rng = np.random.default_rng(1)
    tokens = []
    for i in range(6):
        t = rng.random((2, 2, 4 + i)).astype(np.float32)
        tokens.append({"attention": {"data": [float(x) for x in t.ravel()], "shape": list(t.shape)}})
    path = tmp_path / "order.json"
    path.write_text(json.dumps({"metadata": {}, "prompt_tokens": [], "generated_tokens": tokens}))
    for every in (1, 2):
        ahead, plain, calls = both_routes(str(path), every=every)
        assert_same(ahead, plain)
        assert calls == []


def test_numbers_only_the_reference_settles(tmp_path):
    path, doc = big_capture(tmp_path)
    text = json.dumps(doc)
    first = text.index('"data": [', text.index('"step": 4,')) + len('"data": [')
    end = text.index(",", first)
    text = text[:first] + "0." + "7" * 40 + text[end:]
    hard = tmp_path / "hard.json"
    hard.write_text(text)
    ahead, plain, calls = both_routes(str(hard), op="max")
    assert_same(ahead, plain)
    assert calls == [[4]]


def test_base64_tokens_go_through_the_plain_pass(tmp_path):
    import base64

    path, doc = big_capture(tmp_path, tokens=5)
    attention = doc["generated_tokens"][2]["attention"]
    values = np.array(attention["data"], dtype="<f4")
    attention["data"] = base64.b64encode(values.tobytes()).decode()
    attention["encoding"] = "base64"
    attention["dtype"] = "float32"
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(doc))
    ahead, plain, calls = both_routes(str(mixed))
    assert_same(ahead, plain)
    assert calls == [[2]]


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text.replace("0.", "0.x", 1),  # a bad number in token 0's data
        lambda text: text[: text.rindex('"step": 9,') + 400],  # truncated inside token 9
        lambda text: text.replace('"shape": [2, 3, 27]', '"shape": [2, 3, 26]'),  # a shape its array does not fit
        lambda text: text.replace('"shape": [2, 3, 25]', '"shape": [3, 2, 25]'),  # another layers x heads
    ],
)
def test_errors_are_the_plain_routes(tmp_path, damage):
    path, doc = big_capture(tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text(damage(json.dumps(doc)))
    with plain_route(), pytest.raises(halo_fast.CaptureError) as plain:
        halo_fast.reduce(str(broken), window_bytes=256)
    with pytest.raises(halo_fast.CaptureError) as ahead:
        halo_fast.reduce(str(broken), window_bytes=256)
    assert str(ahead.value) == str(plain.value)
    assert (ahead.value.offset, ahead.value.step) == (plain.value.offset, plain.value.step)


def test_recovered_file_keeps_only_complete_tokens(tmp_path):
    path, doc = big_capture(tmp_path)
    text = json.dumps(doc)
    cut = tmp_path / "cut.json"
    cut.write_text(text[: text.rindex('"step": 9,') + 400])
    ahead, plain, calls = both_routes(str(cut), recover=True, window_bytes=256)
    assert_same(ahead, plain)
    assert ahead.extra["recovery"] == plain.extra["recovery"]
    assert len(ahead.steps) == 9 and calls == []


def test_selection_errors_are_the_plain_routes(tmp_path):
    path, _ = big_capture(tmp_path)
    for options in (dict(layers=[5]), dict(every=0), dict(tokens="50:60"), dict(tokens="4:2")):
        with plain_route(), pytest.raises(halo_fast.SelectionError) as plain:
            halo_fast.reduce(path, **options)
        with pytest.raises(halo_fast.SelectionError) as ahead:
            halo_fast.reduce(path, **options)
        assert str(ahead.value) == str(plain.value)


def test_the_ahead_route_is_for_files_the_page_cache_cannot_hold(tmp_path):
    from halo_fast.formats.json_ahead import outgrows_page_cache

    assert outgrows_page_cache(1 << 60) and not outgrows_page_cache(1 << 20)
    path, _ = big_capture(tmp_path)
    with mock.patch("halo_fast.formats.json_single.outgrows_page_cache", lambda size: False):
        with plain_pass_spy() as calls:
            halo_fast.reduce(path)
    assert calls == [list(range(12))]  # all through the plain pass 2


@given(
    text=st.binary(min_size=1, max_size=300), start=st.integers(-5, 310), needle=st.sampled_from([b"]", b",", b"\x00"])
)
def test_memchr_search_equals_mmap_find(scratch, text, start, needle):
    from halo_fast.formats.mapped import MappedFile

    with MappedFile(scratch(text)) as mapped:
        assert mapped.find_byte_without_gil(needle, start) == mapped.find(needle, start)


def test_keys_across_a_chunk_handed_back_are_still_read(tmp_path):
    """A key's text ("attention", "data") cut by the end of a read chunk while pass 1 hands back what is
    behind it: the walker reads the key's first bytes when it meets the colon after it, so they must still
    be there. Every shift of the keys against the 4 KB chunks, windows of 64 bytes (a release at almost
    every step), against the plain route."""
    rng = np.random.default_rng(11)
    tensors = [rng.random((2, 3, 20 + i)).astype(np.float32) for i in range(8)]
    for pad in range(0, 48):
        path = tmp_path / f"pad{pad}.json"
        path.write_text(json.dumps(capture_doc(tensors, texts={0: " " + "x" * pad})))
        ahead, plain, calls = both_routes(str(path), window_bytes=64)
        assert_same(ahead, plain)
        assert calls == []


@pytest.mark.parametrize("quote_at", [4095, 4094, 4096, 8191])
def test_a_key_cut_by_a_chunk_handed_back_is_still_read(tmp_path, quote_at):
    """The "generated_tokens" key ends right at the end of a read chunk (4 KB here) and of pass 1's first
    probe, and its colon starts the next: pass 1 hands back what it has walked (no token is open yet), but
    the walker reads the key's text when it meets the colon, so those bytes must still be there."""
    rng = np.random.default_rng(12)
    doc = capture_doc([rng.random((2, 2, 5 + i)).astype(np.float32) for i in range(4)])
    text = json.dumps(doc)
    shift = quote_at - (text.index('"generated_tokens"') + len('"generated_tokens"') - 1)
    doc["metadata"]["padding"] = "x" * (shift - len(', "padding": ""'))
    text = json.dumps(doc)
    assert text.index('"generated_tokens":') + len('"generated_tokens"') - 1 == quote_at
    path = tmp_path / "cut_key.json"
    path.write_text(text)
    ahead, plain, calls = both_routes(str(path), window_bytes=64)
    assert_same(ahead, plain)
    assert calls == []


def test_where_the_streamed_file_cannot_reserve_its_range_the_map_is_used(tmp_path):
    """Under strict overcommit (or a memory limit) the reservation as long as the file may be refused:
    the route folds over the map instead, with the same result."""
    path, _ = big_capture(tmp_path)

    def refuse(length):
        raise OSError(12, "Cannot allocate memory")

    with mock.patch("halo_fast.formats.streamed._reserve", refuse):
        ahead, plain, calls = both_routes(path, window_bytes=256)
    assert_same(ahead, plain)
    assert calls == []
