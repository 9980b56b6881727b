"""Documents that are not captures, captures whose bulk is in the wrong place, and missing files.

Each is checked through the library (load, reduce, open_capture) and through the
command line in-process (``main([...])`` returns the exit code): a one-line
CaptureError naming the file and the byte, exit 1, never "truncated" for a file
that was never a capture, and never a skeleton parse of a misplaced array.
"""

from __future__ import annotations

import base64
import errno
import gzip
import json
import os
import pickle
import re
import tracemalloc

import numpy as np
import pytest

import halo_fast
from halo_fast.cli.main import main
from halo_fast.formats import json_skeleton
from halo_fast.formats.json_single import load_json
from reference import assert_capture_matches

NOT_OBJECT = "not an object with a 'generated_tokens' list"


def readers(path):
    """Every library entry point, each a function of no argument that should raise."""

    def opened():
        with halo_fast.open_capture(path):
            pass

    return {
        "load": lambda: halo_fast.load(path),
        "reduce": lambda: halo_fast.reduce(path),
        "open_capture": opened,
        "load --recover": lambda: halo_fast.load(path, recover=True),
    }


def library_errors(path) -> list[halo_fast.CaptureError]:
    errors = []
    for name, call in readers(path).items():
        with pytest.raises(halo_fast.CaptureError) as info:
            call()
        assert info.value.path == str(path), name
        errors.append(info.value)
    return errors


def cli_error(capsys, *argv) -> str:
    """Run the CLI in-process; it must exit 1 with one line on stderr, which is returned."""
    capsys.readouterr()
    assert main(list(argv)) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


# --------------------------------------------------------------------------- not a capture at all

LONG = 70_000  # past the 64 KiB that is looked at first: only the first token decides

NOT_CAPTURES = [
    # (file content, what the message says, byte offset of the problem)
    (b"this is not json", "the file is neither JSON nor a known binary format (it starts with 'this is not json')", 0),
    (b"null", f"the file holds JSON null, {NOT_OBJECT}", 0),
    (b"123", f"the file holds the JSON number 123, {NOT_OBJECT}", 0),
    (b'"text"', f'the file holds a JSON string ("text"), {NOT_OBJECT}', 0),
    (b"[1,2]", f"the file holds a JSON array, {NOT_OBJECT}", 0),
    (b"true", f"the file holds JSON true, {NOT_OBJECT}", 0),
    (b"false\n", f"the file holds JSON false, {NOT_OBJECT}", 0),
    (b"", "the file is empty; expected a JSON object with a 'generated_tokens' list", 0),
    (b" \n\t\r\n ", "the file holds only whitespace; expected a JSON object with a 'generated_tokens' list", 6),
    (b"\xef\xbb\xbf\n  null", f"the file holds JSON null, {NOT_OBJECT}", 6),  # a BOM and spaces before it
    (b"123abc", "the file is neither JSON nor a known binary format", 3),  # where the JSON goes wrong
    (b"nothing", "the file is neither JSON nor a known binary format", 0),
    (b"null" + b" " * LONG, f"the file holds JSON null, {NOT_OBJECT}", 0),
    (b'"' + b"x" * LONG + b'"', 'the file holds a JSON string ("xxxxxxxx', 0),
    (b"1" * LONG, "the file holds a JSON number (11111111", 0),
    (b"[" + b"1," * LONG + b"1]", f"the file holds a JSON array, {NOT_OBJECT}", 0),
    (b"this is not json " * 5000, "the file is neither JSON nor a known binary format", 0),
]


@pytest.mark.parametrize(
    "content, says, at", NOT_CAPTURES, ids=lambda v: repr(v)[:24] if isinstance(v, bytes) else None
)
def test_not_a_capture_is_said_plainly(tmp_path, capsys, content, says, at):
    path = tmp_path / "doc.json"
    path.write_bytes(content)
    for error in library_errors(path):
        assert error.reason.startswith("not a capture: "), error
        assert says in error.reason
        assert "truncated" not in str(error) and "recover" not in str(error)
        assert error.offset == at and f"byte {at}" in str(error)
        assert error.step is None
    for command in (["info", str(path)], ["reduce", str(path)], ["info", "--recover", str(path)]):
        line = cli_error(capsys, *command)
        assert str(path) in line and f"byte {at}" in line and says in line
        assert "truncated" not in line
    assert not os.path.exists(str(path) + ".reduced.h5")


@pytest.mark.parametrize("content, says", [(b"null", "JSON null"), (b"[1,2]", "a JSON array"), (b" ", "whitespace")])
def test_the_reader_used_on_its_own_says_the_same(tmp_path, content, says):
    """load_json (no detection first) reaches the same check from its structure pass."""
    path = tmp_path / "doc.json"
    path.write_bytes(content)
    with pytest.raises(halo_fast.CaptureError, match=f"not a capture: the file .*{says}") as info:
        load_json(path)
    assert "truncated" not in str(info.value)


def test_a_gzip_of_something_else_is_not_a_capture(tmp_path, capsys):
    path = tmp_path / "doc.json.gz"
    path.write_bytes(gzip.compress(b"null"))
    for error in library_errors(path):
        assert error.reason == f"not a capture: the decompressed text holds JSON null, {NOT_OBJECT}"
    assert "decompressed text holds JSON null" in cli_error(capsys, "info", str(path))


def test_an_object_without_generated_tokens_is_still_not_a_capture(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text('{"metadata": {}}')
    with pytest.raises(halo_fast.CaptureError, match="not a capture: expected a JSON object with a 'generated_tokens'"):
        halo_fast.load(path)


# --------------------------------------------------------------------------- a real truncation is still one

TWO_TOKENS = (
    '{"metadata":{"model":"m"},"prompt_tokens":[],"generated_tokens":['
    '{"step":0,"attention":{"shape":[1,1,2],"context_length":2,"data":[0.5,0.5]}},'
    '{"step":1,"attention":{"shape":[1,1,3],"context_length":3,"data":[0.25,0.25,0.5]}}]}'
)


@pytest.mark.parametrize("cut", [1, 20, TWO_TOKENS.index('{"step":1') + 12, len(TWO_TOKENS) - 1])
def test_a_capture_cut_short_is_still_truncated(tmp_path, capsys, cut):
    path = tmp_path / "cut.json"
    path.write_text(TWO_TOKENS[:cut])
    complete = sum(TWO_TOKENS[:cut].count(f'"data":[{values}]}}}}') for values in ("0.5,0.5", "0.25,0.25,0.5"))
    with pytest.raises(halo_fast.CaptureError) as info:
        halo_fast.load(path)
    assert info.value.reason == (
        f"truncated at byte {cut} after {complete} complete generated tokens (recover=True, or --recover, keeps them)"
    )
    assert f"truncated at byte {cut} after {complete} complete generated tokens" in cli_error(capsys, "info", str(path))
    if complete:
        assert len(halo_fast.load(path, recover=True)) == complete


# --------------------------------------------------------------------------- a missing file


def test_a_missing_file_is_a_file_not_found_error_and_a_capture_error(tmp_path):
    path = tmp_path / "nope.json"
    for name, call in readers(path).items():
        with pytest.raises(FileNotFoundError) as info:
            call()
        error = info.value
        assert isinstance(error, halo_fast.CaptureError), name
        assert error.errno == errno.ENOENT and error.filename == str(path) and error.path == str(path)
        assert error.strerror == os.strerror(errno.ENOENT)
        assert str(error) == f"{path}: cannot open: {os.strerror(errno.ENOENT)}"
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error) and again.filename == error.filename


def test_a_missing_file_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "nope.json"
    for command in ("info", "reduce", "check", "decode"):
        line = cli_error(capsys, command, str(path))
        assert line == f"error: {path}: cannot open: {os.strerror(errno.ENOENT)}"
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(path) and report["exit_code"] == 1


# --------------------------------------------------------------------------- bulk outside the attention data

NUMBERS = "0.125," * 99 + "0.5"  # 100 values, 599 bytes


def numbers(count: int) -> str:
    return ",".join([NUMBERS] * (count // 100) + ["0.25"] * (count % 100))


def token(step: int, attention: str, extra: str = "") -> str:
    return f'{{"step":{step},"token_id":{step},"text":"t","position":{step}{extra},"attention":{attention}}}'


def attention(values: int, key: str = "data") -> str:
    return f'{{"shape":[1,1,{values}],"context_length":{values},"{key}":[{numbers(values)}]}}'


def document(tokens: list[str], metadata: str = '{"model":"m"}', prompt: str = "[]") -> str:
    return f'{{"metadata":{metadata},"prompt_tokens":{prompt},"generated_tokens":[{",".join(tokens)}]}}'


@pytest.fixture
def small_limit(monkeypatch):
    """A 256 KiB skeleton limit, so a file of a few MB shows what a multi-GB one would."""
    monkeypatch.setattr(json_skeleton, "MAX_SKELETON_BYTES", 256 << 10)
    return 256 << 10


def misplaced(tmp_path, tokens: int = 8, values: int = 50_000) -> tuple[str, str]:
    """A capture whose every token keeps its attention under 'dat0' instead of 'data' (~3 MB at the default)."""
    text = document([token(10 + i, attention(values, "dat0")) for i in range(tokens)])
    path = tmp_path / "misplaced.json"
    path.write_text(text)
    return str(path), text


def test_attention_under_another_key_is_named(tmp_path, capsys, small_limit):
    path, text = misplaced(tmp_path)
    for error in library_errors(path):
        token_index = error.step - 10
        assert error.reason.startswith(
            f"generated_tokens[{token_index}].attention has keys ['shape', 'context_length', 'dat0'], "
            f"expected the values in 'data': generated_tokens[{token_index}].attention.dat0 holds 0.3 MB of numbers "
            "(2.4 MB in 8 such places, generated_tokens[i].attention.dat0)"
        ), error
        assert "over the limit of 0.25 MiB (halo_fast.formats.json_skeleton.MAX_SKELETON_BYTES)" in error.reason
        assert text[error.offset] == "[" and text[: error.offset].endswith('"dat0":')
        assert text.rfind('{"step":', 0, error.offset) == text.index(f'{{"step":{error.step},')
    for command in ("info", "reduce"):
        line = cli_error(capsys, command, path)
        assert "attention has keys ['shape', 'context_length', 'dat0'], expected the values in 'data'" in line
        assert path in line and re.search(r", step 1\d: ", line)


def test_the_error_comes_before_the_skeleton_is_read(tmp_path, monkeypatch, small_limit):
    path, _ = misplaced(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("the skeleton was parsed")

    read = json_skeleton.MappedFile.read

    def small_reads_only(self, start, stop):  # peeks at the first bytes and a token's step: a few KiB
        assert min(stop, self.size) - start <= 1 << 16, "the skeleton was gathered"
        return read(self, start, stop)

    monkeypatch.setattr(json_skeleton.Skeleton, "parse", refuse)
    monkeypatch.setattr(json_skeleton.MappedFile, "read", small_reads_only)
    with pytest.raises(halo_fast.CaptureError, match="expected the values in 'data'"):
        halo_fast.load(path)


def test_memory_does_not_grow_with_the_misplaced_array(tmp_path, small_limit):
    """Peak Python-heap memory while refusing a 1 MB and an 8 MB misplaced capture: flat, and far below either."""
    path, _ = misplaced(tmp_path, tokens=2, values=1000)
    with pytest.raises(halo_fast.CaptureError):  # warm up: kernels compiled, modules imported
        halo_fast.reduce(path)
    peaks = {}
    for tokens in (2, 16):
        path, text = misplaced(tmp_path, tokens=tokens, values=80_000)
        size = len(text)
        del text
        tracemalloc.start()
        try:
            with pytest.raises(halo_fast.CaptureError, match="expected the values in 'data'"):
                halo_fast.reduce(path)
            peaks[size] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    (small, small_peak), (big, big_peak) = sorted(peaks.items())
    assert big > 7 * small and big > 7_000_000
    assert big_peak < big / 4, peaks
    assert big_peak < small_peak + (1 << 20), peaks


@pytest.mark.parametrize(
    "where, text, says",
    [
        (
            "metadata",
            document([token(0, attention(2))], metadata=f'{{"model":"m","x":[{numbers(60_000)}]}}'),
            "metadata.x holds 0.4 MB of numbers, outside the attention data arrays",
        ),
        (
            "nested",
            document([token(0, attention(2))], metadata=f'{{"x":[[1,2],[{numbers(60_000)}]]}}'),
            "metadata.x[1] holds 0.4 MB of numbers",
        ),
        (
            "token field",
            document([token(0, attention(2)), token(7, attention(2), extra=f',"logits":[{numbers(60_000)}]')]),
            "generated_tokens[1].logits holds 0.4 MB of numbers, outside the attention data arrays",
        ),
        (
            "data object",
            document([token(7, f'{{"shape":[1,1,2],"data":{{"values":[{numbers(60_000)}]}}}}')]),
            "generated_tokens[0].attention.data is not an array of numbers: "
            "generated_tokens[0].attention.data.values holds 0.4 MB of numbers",
        ),
        (
            "string",
            document([token(0, attention(2))], metadata='{"blob":"' + "A" * 400_000 + '"}'),
            "metadata.blob holds a string of 0.4 MB, outside the attention data arrays",
        ),
        (
            "after the list",
            document([token(0, attention(2))])[:-1] + f',"trailer":[{numbers(60_000)}]}}',
            "trailer holds 0.4 MB of numbers, outside the attention data arrays",
        ),
    ],
)
def test_bulk_outside_the_attention_data_is_named(tmp_path, capsys, small_limit, where, text, says):
    path = tmp_path / "bulk.json"
    path.write_text(text)
    for error in library_errors(path):
        assert error.reason.startswith(says), error
        if "string" in says:
            assert text[error.offset :].startswith('"AAAA')
        else:
            assert text[error.offset :].startswith("[" + NUMBERS[:20])
        if "generated_tokens" in says:
            assert error.step == 7
    assert says in cli_error(capsys, "reduce", str(path))


def test_bulk_in_a_gzip_or_a_json_line_is_named(tmp_path, small_limit):
    text = document([token(0, attention(2))], metadata=f'{{"model":"m","x":[{numbers(60_000)}]}}')
    gz = tmp_path / "bulk.json.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(halo_fast.CaptureError, match=r"^.*byte \d+: metadata\.x holds 0\.4 MB of numbers") as info:
        halo_fast.load(gz)
    assert text[info.value.offset :].startswith("[0.125")  # offsets into the decompressed text
    lines = tmp_path / "bulk.jsonl"
    lines.write_text('{"metadata":{"model":"m"}}\n' + token(0, attention(2)) + "\n" + token(1, attention(60_000, "x")))
    with pytest.raises(halo_fast.CaptureError, match=r"attention has keys \['shape', 'context_length', 'x'\]") as info:
        halo_fast.reduce(lines)
    assert info.value.step == 1


def test_many_small_values_are_reported_by_part(tmp_path, small_limit):
    """A skeleton that is large without any bulk (a huge prompt): no array is blamed, the parts are sized."""
    prompt = json.dumps([{"token_id": i, "text": "word", "position": i, "sentence_id": 0} for i in range(5000)])
    path = tmp_path / "prompt.json"
    text = document([token(0, attention(2))], prompt=prompt)
    path.write_text(text)
    with pytest.raises(halo_fast.CaptureError, match="no single array or string is large") as info:
        halo_fast.load(path)
    assert re.search(r"here 0\.\d MB \(prompt_tokens 0\.\d MB\), over the limit", str(info.value))
    assert info.value.offset == text.index('"prompt_tokens":') + len('"prompt_tokens":')


# --------------------------------------------------------------------------- no false positives


def test_large_attention_data_is_not_skeleton(tmp_path, small_limit):
    """Data arrays far larger than the limit are cut out of the skeleton: the capture loads, exactly."""
    text = document([token(i, attention(100_000)) for i in range(4)])
    path = tmp_path / "big.json"
    path.write_text(text)
    assert len(text) > 8 * small_limit
    assert_capture_matches(halo_fast.load(path), text)
    assert halo_fast.reduce(path).data.shape == (4, 100_000)


def test_base64_attention_does_not_count_against_the_limit(tmp_path, small_limit):
    """A base64 data string stays in the skeleton (that is how it is read) but is not misplaced bulk."""
    values = np.random.default_rng(0).random(100_000).astype(np.float32)
    encoded = base64.b64encode(values.tobytes()).decode()
    attention = {"shape": [1, 1, len(values)], "encoding": "base64", "dtype": "float32", "data": encoded}
    doc = {"metadata": {}, "prompt_tokens": [], "generated_tokens": [{"step": 0, "attention": attention}] * 2}
    path = tmp_path / "b64.json"
    path.write_text(json.dumps(doc))
    assert path.stat().st_size > 2 * small_limit
    cap = halo_fast.load(path)
    assert np.array_equal(cap.attention(1)[0, 0], values)


def test_a_large_prompt_loads_at_the_default_limit(tmp_path):
    prompt = [{"token_id": i, "text": f"word{i}", "position": i, "sentence_id": i // 20} for i in range(40_000)]
    text = document([token(40_000, attention(3))], prompt=json.dumps(prompt))
    path = tmp_path / "long_prompt.json"
    path.write_text(text)
    assert len(text) > 2_000_000
    cap = halo_fast.load(path)
    assert len(cap.prompt_tokens) == 40_000 and len(cap) == 1
    assert_capture_matches(cap, text)


def test_the_limit_is_a_documented_constant():
    assert json_skeleton.MAX_SKELETON_BYTES == 64 << 20
