"""Truncated JSON lines, .jsonl.gz and capture directories: an error saying where, or with
recover=True every complete token, bit-identical to the single-JSON decode of the same capture."""

from __future__ import annotations

import gzip
import json
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import halo_fast
from halo_fast import open_capture
from halo_fast.cli.main import main
from halo_fast.synth import write_capture
from halo_fast.synth.writers import jsonlines_bytes, write_directory

TINY = dict(layers=1, heads=1, prompt=8, tokens=4, seed=2)  # small enough to cut at every byte of its token lines
LARGER = dict(layers=2, heads=2, prompt=12, tokens=6, seed=3)
HINT = "(recover=True, or --recover, keeps them)"
DIRECTORY_HINT = "(recover=True, or --recover, keeps the complete tokens)"


def _reference(tmp_path_factory, kwargs):
    path = tmp_path_factory.mktemp("ref") / "capture.json"
    write_capture(str(path), **kwargs)
    return halo_fast.load(str(path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _reference(tmp_path_factory, TINY)


@pytest.fixture(scope="module")
def larger(tmp_path_factory):
    return _reference(tmp_path_factory, LARGER)


def assert_tokens(cap, ref, ids):
    """``cap`` holds exactly ref's tokens ``ids``, values bit for bit."""
    ids = list(ids)
    assert len(cap) == len(ids)
    assert np.array_equal(cap.shapes, ref.shapes[ids].reshape(-1, 3))
    parts = [ref.values[ref.offsets[i] : ref.offsets[i + 1]] for i in ids]
    expected = np.concatenate(parts) if parts else np.empty(0, np.float32)
    assert cap.values.dtype == np.float32
    assert np.array_equal(cap.values.view(np.uint32), expected.view(np.uint32))
    for name in ref.tokens.columns:
        assert np.array_equal(cap.tokens[name], ref.tokens[name][ids]), name
    assert cap.metadata["model"] == ref.metadata["model"]
    assert np.array_equal(cap.prompt_tokens["text"], ref.prompt_tokens["text"])


class Lines:
    """A JSON-lines text (metadata line first) and where each line's content starts and ends."""

    def __init__(self, **kwargs):
        lines = list(jsonlines_bytes(**kwargs))
        self.text = b"".join(lines)
        self.starts = np.cumsum([0] + [len(line) for line in lines[:-1]]).tolist()
        self.ends = [start + len(line) - 1 for start, line in zip(self.starts, lines)]  # the newline's offset

    def complete(self, size: int) -> int:
        """Generated tokens whose line is whole in the first ``size`` bytes (a missing newline is fine)."""
        return sum(1 for end in self.ends[1:] if end <= size)

    def cut_line(self, size: int):
        """The line the first ``size`` bytes end inside (0: the metadata line), or None at a line boundary."""
        for k, (start, end) in enumerate(zip(self.starts, self.ends)):
            if start < size < end:
                return k
        return None


def write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


# ---- JSON lines


def test_jsonl_cut_at_every_byte(tmp_path, tiny):
    lines = Lines(**TINY)
    text = lines.text
    path = tmp_path / "cut.jsonl"
    decoded = set()  # the values depend only on the lines kept: decode each outcome once, plus a sample
    positions = [*range(1, lines.ends[0], 7), *range(lines.ends[0], len(text) + 1)]  # the metadata line sampled
    for cut in positions:
        write(path, text[:cut])
        k = lines.cut_line(cut)
        complete = lines.complete(cut)
        decode = (k, complete) not in decoded or cut % 97 == 0
        decoded.add((k, complete))
        if k is None:  # a cut between lines looks like a complete file
            with open_capture(str(path), recover=True) as source:
                assert source.recovery is None and len(source.token_table) == complete
                if decode:
                    assert_tokens(source.capture(), tiny, range(complete))
            continue
        with pytest.raises(halo_fast.CaptureError) as error:
            halo_fast.load(str(path))
        assert (error.value.offset, error.value.path) == (cut, str(path))
        assert error.value.reason == f"truncated at byte {cut} after {complete} complete generated tokens {HINT}"
        if k == 0:
            assert error.value.step is None
            with pytest.raises(halo_fast.CaptureError, match="before any generated token: nothing to recover"):
                halo_fast.load(str(path), recover=True)
            continue
        assert error.value.step == tiny.tokens["step"][k - 1]
        with open_capture(str(path), recover=True) as source:
            assert source.recovery == {
                "truncated_at": cut,
                "complete_tokens": k - 1,
                "partial_tokens": 1,
                "kept_bytes": lines.starts[k],
            }, cut
            assert len(source.token_table) == k - 1
            if decode:
                cap = source.capture()
                assert cap.recovery == source.recovery
                assert_tokens(cap, tiny, range(k - 1))


@settings(max_examples=30)
@given(variant=st.sampled_from(["numbers", "base64", "events"]), where=st.floats(0, 1))
def test_jsonl_variants_cut_anywhere_in_the_tokens(tmp_path_factory, larger, variant, where):
    kwargs = dict(LARGER, encoding="json" if variant == "numbers" else "base64", events=variant == "events")
    lines = Lines(**kwargs)
    cut = lines.starts[1] + int(where * (len(lines.text) - lines.starts[1]))
    path = write(tmp_path_factory.mktemp("variant") / "cut.jsonl", lines.text[:cut])
    k, complete = lines.cut_line(cut), lines.complete(cut)
    cap = halo_fast.load(path, recover=True)
    assert_tokens(cap, larger, range(complete))
    if k is None:
        assert cap.recovery is None
        return
    assert cap.recovery == {
        "truncated_at": cut,
        "complete_tokens": complete,
        "partial_tokens": 1,
        "kept_bytes": lines.starts[k],
    }
    with pytest.raises(halo_fast.CaptureError, match=rf"truncated at byte {cut} after {complete} complete") as error:
        halo_fast.load(path)
    assert error.value.offset == cut


def test_jsonl_broken_line_before_the_last_is_corruption(tmp_path):
    lines = Lines(**TINY)
    text = lines.text
    start, end = lines.starts[2], lines.ends[2]
    middle = write(tmp_path / "middle.jsonl", text[: start + (end - start) // 2] + text[end:])  # a cut line, more after
    for recover in (False, True):
        with pytest.raises(halo_fast.CaptureError) as error:
            halo_fast.load(middle, recover=recover)
        assert "truncated" not in error.value.reason and "incomplete" in error.value.reason
        assert start <= error.value.offset <= end
        assert ("recover=True does not skip it" in error.value.reason) == recover
    terminated = write(tmp_path / "terminated.jsonl", text[: lines.ends[-1] - 3] + b"\n")  # cut, then a newline
    with pytest.raises(halo_fast.CaptureError, match="does not skip it"):
        halo_fast.load(terminated, recover=True)
    garbage = write(tmp_path / "garbage.jsonl", text + b'{"step": 9, "text": ]')  # broken, not cut short
    with pytest.raises(halo_fast.CaptureError, match="does not skip it"):
        halo_fast.load(garbage, recover=True)


def test_jsonl_cut_with_sibling_metadata(tmp_path, tiny):
    directory = tmp_path / "run"
    directory.mkdir()
    lines = Lines(**TINY)
    text = lines.text[lines.starts[1] :]  # token lines only; the metadata in metadata.json
    write(directory / "metadata.json", lines.text[: lines.ends[0]])
    cut = len(text) - 20
    path = write(directory / "cut.jsonl", text[:cut])
    cap = halo_fast.load(path, recover=True)
    complete = sum(1 for end in lines.ends[1:] if end - lines.starts[1] <= cut)
    assert cap.recovery["complete_tokens"] == complete
    assert_tokens(cap, tiny, range(complete))
    first = write(directory / "first.jsonl", text[:20])  # the first token line cut: nothing complete, but valid
    cap = halo_fast.load(first, recover=True)
    assert len(cap) == 0 and cap.recovery["partial_tokens"] == 1


def test_reduce_recovers_jsonl(tmp_path, larger):
    lines = Lines(**LARGER)
    cut = lines.starts[4] + 100
    path = write(tmp_path / "cut.jsonl", lines.text[:cut])
    red = halo_fast.reduce(path, recover=True)
    assert red.extra["recovery"] == {
        "truncated_at": cut,
        "complete_tokens": 3,
        "partial_tokens": 1,
        "kept_bytes": lines.starts[4],
    }
    expected = halo_fast.reduce(larger, tokens=(0, int(larger.tokens["step"][3])))
    assert np.array_equal(red.data.view(np.uint32), expected.data.view(np.uint32))
    with pytest.raises(halo_fast.CaptureError, match="--recover"):
        halo_fast.reduce(path)


# ---- .jsonl.gz


def _available(compressed: bytes) -> int:
    """How much text zlib gives from a gzip stream cut short (the oracle)."""
    return len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(compressed))


def test_gzip_cut_at_every_byte(tmp_path, tiny):
    lines = Lines(**TINY)
    data = gzip.compress(lines.text, mtime=0)
    path = tmp_path / "cut.jsonl.gz"
    decoded = set()
    for cut in range(2, len(data)):  # one byte is not even gzip magic
        write(path, data[:cut])
        size = _available(data[:cut])
        if size < lines.ends[0] and cut % 7:  # inside the metadata line: a sample
            continue
        complete = lines.complete(size)
        k = lines.cut_line(size)
        with pytest.raises(halo_fast.CaptureError) as error:
            halo_fast.load(str(path))
        assert error.value.offset == size
        assert (
            error.value.reason == f"gzip stream ends early at decompressed byte {size} after {complete} "
            f"complete generated tokens {HINT}"
        ), cut
        if k == 0 or size == 0:
            with pytest.raises(halo_fast.CaptureError, match="nothing to recover"):
                halo_fast.load(str(path), recover=True)
            continue
        with open_capture(str(path), recover=True) as source:  # pass 1 at every cut, decoding at some
            assert source.recovery == {
                "truncated_at": size,
                "complete_tokens": complete,
                "partial_tokens": int(k is not None),
                "kept_bytes": size if k is None else lines.starts[k],
                "offsets": "decompressed",
                "gzip_error": "ends early",
            }, cut
            assert len(source.token_table) == complete
            if (k, complete) not in decoded or cut % 97 == 0:
                decoded.add((k, complete))
                assert_tokens(source.capture(), tiny, range(complete))


def test_gzip_whole_text_cut_line(tmp_path, tiny):
    """A JSON-lines file cut short, then compressed whole: truncation at a decompressed offset."""
    lines = Lines(**TINY)
    cut = lines.ends[-1] - 10
    path = write(tmp_path / "cut.jsonl.gz", gzip.compress(lines.text[:cut]))
    with pytest.raises(halo_fast.CaptureError, match=f"truncated at decompressed byte {cut} after 3 complete"):
        halo_fast.load(path)
    cap = halo_fast.load(path, recover=True)
    assert cap.recovery == {
        "truncated_at": cut,
        "complete_tokens": 3,
        "partial_tokens": 1,
        "kept_bytes": lines.starts[-1],
        "offsets": "decompressed",
    }
    assert_tokens(cap, tiny, range(3))


@pytest.fixture(scope="module")
def members():
    """LARGER's JSON lines as two gzip members (the metadata and 3 tokens, then 3 tokens)."""
    lines = Lines(**LARGER)
    split = lines.starts[4]
    return lines, split, gzip.compress(lines.text[:split], mtime=0), gzip.compress(lines.text[split:], mtime=0)


def test_gzip_members_and_padding_decode_exactly(tmp_path, larger, members):
    lines, split, first, second = members
    for name, data in [("members", first + second), ("padded", first + b"\0" * 5 + second + b"\0" * 700)]:
        path = write(tmp_path / f"{name}.jsonl.gz", data)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cap = halo_fast.load(path)
        assert cap.recovery is None
        assert_tokens(cap, larger, range(len(larger)))


def test_gzip_damage_keeps_the_lines_before_it(tmp_path, larger, members):
    lines, split, first, second = members
    broken = bytearray(second)
    broken[0] ^= 0xFF  # the second member's magic: zlib stops there ("incorrect header check")
    for name, data, at in [("damaged", first + bytes(broken), split), ("garbage", first + second + b"junk", None)]:
        at = len(lines.text) if at is None else at
        path = write(tmp_path / f"{name}.jsonl.gz", data)
        complete = lines.complete(at)
        with pytest.raises(halo_fast.CaptureError) as error:
            halo_fast.load(path)
        assert error.value.reason.startswith(
            f"truncated at decompressed byte {at} after {complete} complete "
            "generated tokens: damaged gzip stream near compressed byte "
        )
        cap = halo_fast.load(path, recover=True)
        gzip_error = cap.recovery.pop("gzip_error")
        assert gzip_error  # zlib's (or ISA-L's) own words
        assert cap.recovery == {
            "truncated_at": at,
            "complete_tokens": complete,
            "partial_tokens": 0,
            "kept_bytes": at,
            "offsets": "decompressed",
        }
        assert_tokens(cap, larger, range(complete))


def test_gzip_checksum_mismatch_trusts_only_whole_members_before_it(tmp_path, larger, members):
    """A bad CRC means the member's text decoded but is wrong somewhere: none of its lines are kept,
    the lines of the members before it (their checksums matched) are."""
    lines, split, first, second = members
    data = bytearray(first + second)
    data[-8] ^= 1  # the CRC of the last member
    path = write(tmp_path / "crc.jsonl.gz", bytes(data))
    complete = lines.complete(split)
    with pytest.raises(
        halo_fast.CaptureError,
        match=f"truncated at decompressed byte {split} after {complete} complete generated tokens: damaged gzip stream",
    ):
        halo_fast.load(path)
    cap = halo_fast.load(path, recover=True)
    assert cap.recovery["truncated_at"] == split and cap.recovery["complete_tokens"] == complete
    assert_tokens(cap, larger, range(complete))
    single = write(tmp_path / "crc1.jsonl.gz", bytes(bytearray(gzip.compress(lines.text, mtime=0))))
    broken = bytearray(Path(single).read_bytes())
    broken[-8] ^= 1  # one member only: nothing is trusted
    write(single, bytes(broken))
    with pytest.raises(halo_fast.CaptureError, match="nothing to recover"):
        halo_fast.load(single, recover=True)


@settings(max_examples=40)
@given(where=st.integers(12, 10**6), bit=st.integers(0, 7))
def test_gzip_bit_flip_never_gives_wrong_numbers(tmp_path_factory, larger, members, where, bit):
    """Any flipped bit: an error, or a bit-exact prefix of the tokens (a flip only the CRC sees is refused)."""
    lines, split, first, second = members
    data = bytearray(first + second)
    data[12 + where % (len(data) - 20)] ^= 1 << bit
    path = write(tmp_path_factory.mktemp("flip") / "flip.jsonl.gz", bytes(data))
    try:
        cap = halo_fast.load(path, recover=True)
    except halo_fast.CaptureError:
        return
    assert_tokens(cap, larger, range(len(cap)))


# ---- capture directories


@pytest.fixture
def bin_directory(tmp_path):
    return write_directory(tmp_path / "capture_1", kind="bin", **TINY)


def _truncate(path: str, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


@pytest.mark.parametrize("index,keep", [(3, 0), (3, 4), (3, -1), (1, 0.5)], ids=["empty", "4", "needs-1", "middle"])
def test_directory_short_bin(bin_directory, tiny, index, keep):
    name = f"token_{index:05d}_attn.bin"
    path = os.path.join(bin_directory, name)
    needs = os.path.getsize(path)
    holds = int(needs * keep) if isinstance(keep, float) else keep % needs
    _truncate(path, holds)
    with pytest.raises(halo_fast.CaptureError) as error:
        halo_fast.load(bin_directory)
    assert error.value.reason == f"truncated: {name} holds {holds} of {needs} bytes {DIRECTORY_HINT}"
    assert (error.value.path, error.value.offset, error.value.step) == (path, holds, index)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a cut is not a directory problem: no warning
        cap = halo_fast.load(bin_directory, recover=True)
    kept = [i for i in range(len(tiny)) if i != index]
    assert_tokens(cap, tiny, kept)
    assert cap.recovery == {
        "truncated_at": holds,
        "complete_tokens": len(kept),
        "partial_tokens": 1,
        "kept_bytes": 0,
        "truncated_files": [name],
        "lost_steps": [index],
    }
    red = halo_fast.reduce(bin_directory, recover=True)
    assert red.extra["recovery"] == cap.recovery
    assert np.array_equal(red.steps, tiny.tokens["step"][[i for i in kept if tiny.tokens["has_attention"][i]]])


def test_directory_token_json_cut_at_every_byte(tmp_path, tiny):
    directory = write_directory(tmp_path / "capture_1", kind="json", **TINY)
    last = len(tiny) - 1
    name = f"token_{last:05d}.json"
    path = os.path.join(directory, name)
    with open(path, "rb") as f:
        text = f.read()
    for cut in range(len(text)):
        write(path, text[:cut])
        try:
            json.loads(text[:cut])
        except ValueError:
            pass
        else:  # only trailing whitespace was cut
            assert_tokens(halo_fast.load(directory), tiny, range(len(tiny)))
            continue
        with pytest.raises(halo_fast.CaptureError) as error:
            halo_fast.load(directory)
        what = f"ends at byte {cut} inside its JSON object" if cut else "is empty"
        assert error.value.reason == f"truncated: {name} {what} {DIRECTORY_HINT}"
        assert (error.value.path, error.value.offset, error.value.step) == (path, cut, last)
        with open_capture(directory, recover=True) as source:
            assert source.recovery == {
                "truncated_at": cut,
                "complete_tokens": last,
                "partial_tokens": 1,
                "kept_bytes": 0,
                "truncated_files": [name],
                "lost_steps": [last],
            }
            if cut % 97 == 0:
                assert_tokens(source.capture(), tiny, range(last))


def test_directory_cut_meta_json_and_corrupt_token(tmp_path, tiny):
    directory = write_directory(tmp_path / "bins", kind="bin", **TINY)
    meta = os.path.join(directory, "token_00002_meta.json")
    with open(meta, "rb") as f:
        text = f.read()
    for cut in (0, 1, len(text) // 2, len(text) - 2):
        write(meta, text[:cut])
        with pytest.raises(halo_fast.CaptureError, match="truncated: token_00002_meta.json"):
            halo_fast.load(directory)
        cap = halo_fast.load(directory, recover=True)
        assert cap.recovery["lost_steps"] == [2]
        assert_tokens(cap, tiny, [0, 1, 3])
    json_directory = write_directory(tmp_path / "jsons", kind="json", **TINY)
    broken = os.path.join(json_directory, "token_00002.json")
    with open(broken, "rb") as f:
        text = f.read()
    write(broken, text.replace(b",", b",,", 1))  # corrupt, not cut: an error even with recover
    with pytest.raises(halo_fast.CaptureError) as error:
        halo_fast.load(json_directory, recover=True)
    assert error.value.path == broken and "truncated" not in error.value.reason


def test_directory_strict_and_recover_are_independent(tmp_path, tiny):
    directory = write_directory(tmp_path / "capture_1", kind="bin", skip={1}, **TINY)  # a gap: a problem
    _truncate(os.path.join(directory, "token_00003_attn.bin"), 8)  # a cut: truncation
    with pytest.raises(halo_fast.CaptureError, match="truncated: token_00003_attn.bin"):
        halo_fast.load(directory)
    with pytest.raises(halo_fast.CaptureError, match="truncated: token_00003_attn.bin"):
        halo_fast.load(directory, strict=True)
    with pytest.warns(UserWarning, match="missing token indices 1"):
        cap = halo_fast.load(directory, recover=True)
    assert_tokens(cap, tiny, [0, 2])
    assert cap.recovery["lost_steps"] == [3]
    with pytest.raises(halo_fast.CaptureError, match="missing token indices 1"):
        halo_fast.load(directory, recover=True, strict=True)
    long_bin = os.path.join(directory, "token_00002_attn.bin")  # too long: a problem, not truncation
    with open(long_bin, "ab") as f:
        f.write(b"\0" * 4)
    with pytest.warns(UserWarning, match="token_00002_attn.bin is"):
        cap = halo_fast.load(directory, recover=True)
    assert cap.tokens["has_attention"].tolist() == [False, False]


# ---- the command line


def test_cli_recover_on_every_format(tmp_path, capsys):
    lines = Lines(**TINY)
    cut = lines.starts[3] + 30
    jsonl = write(tmp_path / "cut.jsonl", lines.text[:cut])
    assert main(["reduce", jsonl]) == 1
    assert "--recover" in capsys.readouterr().err
    assert main(["reduce", jsonl, "--recover", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["recovery"]["complete_tokens"] == 2
    assert err.strip().endswith(
        f"warning: {jsonl} is truncated at byte {cut}: kept 2 complete generated tokens, dropped 1 partial one(s)"
    )
    compressed = gzip.compress(lines.text, mtime=0)
    gz = write(tmp_path / "cut.jsonl.gz", compressed[: len(compressed) * 3 // 4])
    directory = write_directory(tmp_path / "capture_1", kind="bin", **TINY)
    _truncate(os.path.join(directory, "token_00003_attn.bin"), 8)
    for command in ("decode", "info", "check"):
        for path in (gz, directory):
            assert main([command, path]) == 1
            assert "--recover" in capsys.readouterr().err
            assert main([command, path, "--recover", "--json"]) in (0, 1)  # check: 1 when the data look wrong
            out, err = capsys.readouterr()
            assert json.loads(out)["recovery"]["complete_tokens"] >= 0 and "truncated" in err
