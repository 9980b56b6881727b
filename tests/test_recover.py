"""Truncated captures: every complete token is salvaged bit-exactly with recover=True."""

from __future__ import annotations

import json

import numpy as np
import pytest

import halo_fast
from builders import capture_doc
from halo_fast.cli.main import main


@pytest.fixture(scope="module")
def capture_text():
    rng = np.random.default_rng(5)
    tensors = [rng.random((2, 2, 3 + i)).astype(np.float32) for i in range(5)]
    doc = capture_doc(tensors, null_first=True, texts={3: 'a "quoted" ] } text'})
    return {"compact": json.dumps(doc, separators=(",", ":")), "indent": json.dumps(doc, indent=2)}


def _token_end(text: str, i: int) -> int:
    """Offset of the closing brace of generated token i (found by parsing, not by the code under test)."""
    decoder = json.JSONDecoder()
    start = text.index("[", text.index('"generated_tokens"')) + 1
    position = start
    for _ in range(i + 1):
        while text[position] in " \n\r\t,":
            position += 1
        _, position = decoder.raw_decode(text, position)
    return position - 1


@pytest.mark.parametrize("style", ["compact", "indent"])
def test_every_cut_recovers_complete_tokens(tmp_path, capture_text, style):
    text = capture_text[style]
    full_path = tmp_path / "full.json"
    full_path.write_text(text)
    full = halo_fast.load(str(full_path))
    list_start = text.index('"generated_tokens"')
    ends = [_token_end(text, i) for i in range(len(full))]
    path = tmp_path / "cut.json"
    for cut in range(list_start, len(text), 3 if style == "indent" else 1):
        path.write_text(text[:cut])
        expected = sum(1 for end in ends if end < cut)
        with pytest.raises(halo_fast.CaptureError) as info:
            halo_fast.load(str(path))
        assert info.value.offset == cut
        if cut > text.index("[", list_start):
            assert f"after {expected} complete" in str(info.value)
        try:
            cap = halo_fast.load(str(path), recover=True)
        except halo_fast.CaptureError as exc:
            assert cut <= text.index("[", list_start), (cut, exc)
            continue
        assert len(cap) == expected, cut
        recovery = cap.recovery
        assert (recovery["truncated_at"], recovery["complete_tokens"]) == (cut, expected)
        assert recovery["partial_tokens"] in (0, 1)
        list_end = text.index("]", ends[-1]) + 1
        assert recovery["kept_bytes"] in ((ends[expected - 1] + 1) if expected else -1, list_end) or (
            expected == 0 and recovery["kept_bytes"] == text.index("[", list_start) + 1
        )
        np.testing.assert_array_equal(cap.values.view(np.uint32), full.values[: cap.offsets[-1]].view(np.uint32))
        assert cap.tokens["text"].tolist() == full.tokens["text"][:expected].tolist()
        assert cap.metadata == full.metadata


def test_whole_file_has_no_recovery(tmp_path, capture_text):
    path = tmp_path / "c.json"
    path.write_text(capture_text["compact"])
    assert halo_fast.load(str(path), recover=True).recovery is None


def test_reduce_and_cli_recover(tmp_path, capture_text, capsys):
    text = capture_text["compact"]
    cut = _token_end(text, 3) + 40
    path = tmp_path / "cut.json"
    path.write_text(text[:cut])
    full_path = tmp_path / "full.json"
    full_path.write_text(text)
    red = halo_fast.reduce(str(path), recover=True)
    assert red.steps.tolist() == [1, 2, 3]
    assert red.extra["recovery"]["complete_tokens"] == 4
    np.testing.assert_array_equal(red.data, halo_fast.reduce(str(full_path), tokens=(0, 4)).data)
    assert main(["reduce", str(path)]) == 1
    assert "--recover" in capsys.readouterr().err
    assert main(["reduce", str(path), "--recover", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["recovery"]["complete_tokens"] == 4
    assert "truncated" in captured.err


def test_nothing_to_recover(tmp_path, capture_text):
    text = capture_text["compact"]
    path = tmp_path / "cut.json"
    path.write_text(text[: text.index('"generated_tokens"') - 5])
    with pytest.raises(halo_fast.CaptureError, match="nothing to recover"):
        halo_fast.load(str(path), recover=True)
