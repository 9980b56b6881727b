"""gzip-compressed single-JSON captures (.json.gz): streamed, and identical to reading the plain file.

The decompressed text reaches the structure walker in chunks of any size (down to
one byte), so strings, escapes, keys and token objects get split everywhere; the
result must still equal json.loads of the text. Cut or damaged streams follow the
rules of truncated plain files: a CaptureError, or with recover=True every complete
token.
"""

from __future__ import annotations

import gzip
import os
import random
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import halo_fast
from formats_common import SYNTH, assert_same_capture, assert_same_reduced
from halo_fast.formats.base import SourceOptions
from halo_fast.formats.detect import detect
from halo_fast.formats.gzip_stream import TextWindow
from halo_fast.formats.json_gz import GzipJson
from halo_fast.formats.json_single import ScannedJson
from halo_fast.synth import write_capture
from reference import STYLES, assert_capture_matches, capture_documents, examples
from test_structure import big_doc, filler_then_tricky_tokens_doc


def gzipped(path: str, level: int = 6, members: int = 1) -> str:
    """``path`` + ".gz"; ``members`` > 1 writes the text as that many concatenated gzip members."""
    with open(path, "rb") as f:
        text = f.read()
    cuts = np.linspace(0, len(text), members + 1).astype(int)
    with open(path + ".gz", "wb") as out:
        for a, b in zip(cuts[:-1], cuts[1:]):
            out.write(gzip.compress(text[a:b], compresslevel=level))
    return path + ".gz"


def load_gz(path: str, chunk: int | None = None, threaded: bool = True, recover: bool = False):
    kwargs = {} if chunk is None else {"chunk_bytes": chunk}
    with GzipJson(path, options=SourceOptions(recover=recover), threaded=threaded, **kwargs) as source:
        return source.capture()


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def synth_pair(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("gz") / "capture.json")
    write_capture(path, **SYNTH)
    return path, gzipped(path)


def test_detected_and_loaded_like_the_plain_file(synth_pair):
    plain, gz = synth_pair
    assert detect(gz) == "json.gz"
    cap = halo_fast.load(gz)
    assert_same_capture(cap, halo_fast.load(plain))
    assert cap.recovery is None


@pytest.mark.parametrize("op", ["mean", "max"])
def test_reduce_is_identical(synth_pair, op):
    plain, gz = synth_pair
    for kwargs in ({}, {"every": 2}, {"tokens": (2, 5), "layers": "1-2"}):
        assert_same_reduced(halo_fast.reduce(gz, op=op, **kwargs), halo_fast.reduce(plain, op=op, **kwargs))


def test_single_tokens_in_any_order(synth_pair):
    plain, gz = synth_pair
    ref = halo_fast.load(plain)
    with GzipJson(gz, chunk_bytes=97) as source:
        for i in [3, 4, 1, 6, 6, 0]:  # forward, then back (the stream restarts), then the same again
            if source.has_attention[i]:
                assert np.array_equal(source.token_values(i).view(np.uint32), ref.attention(i).ravel().view(np.uint32))


@pytest.mark.parametrize("style", ["compact", "random"])
@pytest.mark.parametrize("chunk", [3, 7, 64, None])
def test_chunks_split_strings_escapes_and_keys(scratch, style, chunk):
    path = scratch(filler_then_tricky_tokens_doc(), style, random.Random(chunk or 0))
    gz = gzipped(path)
    assert_capture_matches(load_gz(gz, chunk), read(path), f"{style} chunk={chunk}")


@pytest.mark.parametrize("chunk, threaded", [(7, False), (1000, True), (1000, False), (None, True)])
def test_big_document_any_chunk_threaded_or_not(scratch, chunk, threaded):
    path = scratch(big_doc(seed=3), "indent2", random.Random(2))
    assert_capture_matches(load_gz(gzipped(path), chunk, threaded), read(path), f"chunk={chunk}")


def test_window_resizes_while_a_view_of_it_is_alive():
    """A view left alive (numba keeps a kernel's first-call arguments until the next garbage
    collection) must not stop the window: the resize happens on a copy, the view keeps the old bytes."""
    window = TextWindow()
    window.append(b"0123456789")
    stale = np.frombuffer(window.buffer, dtype=np.uint8)
    window.append(b"abc")
    assert bytes(window.buffer) == b"0123456789abc" and window.end == 13
    stale = np.frombuffer(window.buffer, dtype=np.uint8)
    assert window.drop_before(4) == 4
    assert bytes(window.buffer) == b"456789abc" and window.base == 4
    assert bytes(window.view(6, 9)) == b"678"
    assert bytes(stale) == b"0123456789abc"


def test_loads_while_every_window_has_a_view_alive(scratch, monkeypatch):
    """The whole reader with a view of its window held across every append: the capture is the plain file's."""
    held = []

    def append_and_hold(self, block):
        original_append(self, block)
        held.append(np.frombuffer(self.buffer, dtype=np.uint8))

    original_append = TextWindow.append
    monkeypatch.setattr(TextWindow, "append", append_and_hold)
    path = scratch(big_doc(seed=3), "indent2", random.Random(2))
    assert_capture_matches(load_gz(gzipped(path), 1000), read(path), "a view held")
    assert len(held) > 10


def test_concatenated_members_and_zero_padding(scratch):
    path = scratch(big_doc(n_tokens=4, seed=1), "compact")
    gz = gzipped(path, members=5)
    with open(gz, "ab") as f:
        f.write(b"\x00" * 100)
    assert_capture_matches(load_gz(gz, 4096), read(path), "members")


@settings(max_examples=examples(60))
@given(capture_documents(), st.sampled_from(STYLES), st.integers(0, 2**32), st.sampled_from([1, 3, 16, None]))
def test_random_documents(scratch, doc, style, seed, chunk):
    path = scratch(doc, style, random.Random(seed))
    assert_capture_matches(load_gz(gzipped(path, level=1), chunk), read(path), f"{style} chunk={chunk}")


def test_errors_point_into_the_decompressed_text(scratch):
    text = (
        b'{"metadata": {}, "prompt_tokens": [], "generated_tokens": [{"step": 0, "attention": '
        b'{"shape": [1, 1, 2], "data": [0.5, "x"]}}]}'
    )
    gz = gzipped(scratch(text))
    with pytest.raises(halo_fast.CaptureError) as plain_error:
        halo_fast.load(gz[:-3])
    with pytest.raises(halo_fast.CaptureError) as gz_error:
        halo_fast.load(gz)
    assert gz_error.value.offset == plain_error.value.offset == text.index(b'"x"')


def test_not_a_capture(scratch):
    gz = gzipped(scratch(b'{"metadata": {}, "tokens": []}'))
    with pytest.raises(halo_fast.CaptureError, match="generated_tokens"):
        halo_fast.load(gz)


# --- cut short and damaged ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cut_material(tmp_path_factory):
    """A synth capture, its gzip and its plain decode."""
    directory = tmp_path_factory.mktemp("gzcut")
    plain = str(directory / "capture.json")
    write_capture(plain, **SYNTH)
    return plain, gzipped(plain, level=1), halo_fast.load(plain)


def _complete_prefix(ref, n: int):
    """Token count, values and offsets of the first n tokens of ``ref``."""
    end = ref.offsets[n]
    return ref.values[:end], ref.offsets[: n + 1]


def test_cut_without_recover_says_how_to_recover(cut_material, tmp_path):
    _, gz, _ = cut_material
    data = read(gz)
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        halo_fast.CaptureError,
        match=r"truncated at decompressed byte \d+ after \d+ complete "
        r"generated tokens: the gzip stream ends early.*--recover",
    ):
        halo_fast.load(cut)


def _inflate_prefix(data: bytes) -> bytes:
    """All the text a cut gzip stream still gives."""
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)


def test_cut_anywhere_recovers_every_complete_token(cut_material, tmp_path):
    plain, gz, ref = cut_material
    data, text = read(gz), read(plain)
    with ScannedJson(plain) as scan:
        token_closes = scan.layout.token_close.tolist()
    list_open = text.index(b"[", text.index(b'"generated_tokens"'))
    cut = tmp_path / "cut.json.gz"
    rng = np.random.default_rng(0)
    positions = sorted(set(rng.integers(10, len(data) - 1, 60).tolist()) | {len(data) - 9, len(data) - 1})
    for position in positions:
        cut.write_bytes(data[:position])
        available = len(_inflate_prefix(data[:position]))
        if available <= list_open:
            with pytest.raises(halo_fast.CaptureError, match="nothing to recover"):
                halo_fast.load(cut, recover=True)
            continue
        cap = halo_fast.load(cut, recover=True)
        n = sum(1 for close in token_closes if close < available)  # every token whose "}" arrived
        assert len(cap.tokens) == n, position
        values, offsets = _complete_prefix(ref, n)
        assert np.array_equal(cap.values.view(np.uint32), values.view(np.uint32))
        assert np.array_equal(cap.offsets, offsets)
        assert cap.tokens["step"].tolist() == ref.tokens["step"].tolist()[:n]
        assert cap.recovery["complete_tokens"] == n
        assert cap.recovery["truncated_at"] == available
        if position >= len(data) - 8:  # only the gzip trailer is missing: every token is there
            assert n == len(ref.tokens)


def test_damaged_member_is_never_trusted(cut_material, tmp_path):
    """A flipped byte inside deflate data decodes to other text that may still be valid JSON, and gzip
    only notices at the member's checksum: no token of that member may be handed back."""
    _, gz, _ = cut_material
    data = bytearray(read(gz))
    data[len(data) * 2 // 3] ^= 0xFF
    damaged = tmp_path / "damaged.json.gz"
    damaged.write_bytes(bytes(data))
    with pytest.raises(halo_fast.CaptureError, match="damaged gzip stream .*only the first 0 decompressed bytes"):
        halo_fast.load(damaged)
    with pytest.raises(halo_fast.CaptureError, match="nothing to recover"):
        halo_fast.load(damaged, recover=True)


@pytest.mark.parametrize("damage", ["flip", "garbage"])
def test_members_verified_before_the_damage_are_recovered(cut_material, tmp_path, damage):
    """A capture written as several gzip members: the members whose checksum matched are trusted."""
    plain, _, ref = cut_material
    text = read(plain)
    with ScannedJson(plain) as scan:
        token_closes = scan.layout.token_close.tolist()
    split = token_closes[3] + 7  # the first member ends a little after token 3
    first, second = gzip.compress(text[:split]), gzip.compress(text[split:])
    if damage == "flip":
        broken = bytearray(second)
        broken[len(broken) // 2] ^= 0x55
        data = first + bytes(broken)
    else:
        data = first + second + b"junk after the last member"
    path = tmp_path / "members.json.gz"
    path.write_bytes(data)
    trusted = split if damage == "flip" else len(text)
    kept = sum(1 for close in token_closes if close < trusted)
    with pytest.raises(halo_fast.CaptureError, match=f"truncated at decompressed byte {trusted} after {kept} "):
        halo_fast.load(path)
    cap = halo_fast.load(path, recover=True)
    assert len(cap.tokens) == kept and cap.recovery["truncated_at"] == trusted
    values, _ = _complete_prefix(ref, kept)
    assert np.array_equal(cap.values.view(np.uint32), values.view(np.uint32))


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(12, 10**6), st.integers(0, 7))
def test_bit_flips_never_give_wrong_numbers(cut_material, where, bit):
    """Any flipped bit of the compressed file: an error, or an exact prefix of the tokens."""
    _, gz, ref = cut_material
    data = bytearray(read(gz))
    data[12 + where % (len(data) - 20)] ^= 1 << bit
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "flip.json.gz")
        with open(path, "wb") as f:
            f.write(bytes(data))
        try:
            cap = halo_fast.load(path, recover=True)
        except halo_fast.CaptureError:
            return
    n = len(cap.tokens)
    values, _ = _complete_prefix(ref, n)
    assert np.array_equal(cap.values.view(np.uint32), values.view(np.uint32))


def test_cli_reduce_and_recover(cut_material, tmp_path, capsys):
    from halo_fast.cli.main import main

    _, gz, _ = cut_material
    out = tmp_path / "r.h5"
    assert main(["reduce", gz, "-o", str(out), "--json"]) == 0
    data = read(gz)
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(data[: len(data) * 3 // 4])
    assert main(["reduce", str(cut), "-o", str(tmp_path / "c.h5")]) == 1
    assert "--recover" in capsys.readouterr().err
    assert main(["reduce", str(cut), "-o", str(tmp_path / "c.h5"), "--recover"]) == 0
