"""halo_fast.synth: file format, number text, planted truth, determinism and the CLI."""

from __future__ import annotations

import json
import os
import re
from decimal import Decimal

import numpy as np
import pytest

from halo_fast import synth
from halo_fast.synth import SyntheticCapture, format_floats, js_number, write_capture

SMALL = dict(layers=3, heads=4, prompt=40, tokens=12, seed=7)
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def ref_js(x: float) -> str:
    """JSON.stringify's text of a double, from its shortest digits (independent twin)."""
    if x == 0:
        return "0"
    if x < 0:
        return "-" + ref_js(-x)
    _, digit_tuple, exp = Decimal(repr(x)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    n = len(digits) + exp  # x = 0.digits * 10**n
    if len(digits) <= n <= 21:
        return digits + "0" * (n - len(digits))
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{mantissa}e{'+' if n - 1 > 0 else '-'}{abs(n - 1)}"


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    """One small capture per style (plus logits), as (path, text, parsed, returned metadata)."""
    folder = tmp_path_factory.mktemp("synth")
    out = {}
    for name, kwargs in {
        "js": dict(style="js"),
        "py": dict(style="py"),
        "indent": dict(style="indent"),
        "logits": dict(style="js", logits=True),
    }.items():
        path = folder / f"{name}.json"
        meta = write_capture(path, **SMALL, **kwargs)
        text = path.read_text(encoding="utf-8")
        out[name] = (path, text, json.loads(text), meta)
    return out


def attention_array(token) -> np.ndarray:
    att = token["attention"]
    return np.asarray(att["data"], dtype=np.float32).reshape(att["shape"])


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("name", ["js", "py", "indent", "logits"])
def test_structure_and_key_order(captures, name):
    _, _, doc, meta = captures[name]
    assert list(doc) == ["metadata", "prompt_tokens", "generated_tokens"]
    assert doc["metadata"] == meta
    assert list(meta) == ["timestamp", "model", "description", "config", "synth"]
    assert meta["model"] == "synthetic-3x4" and isinstance(meta["timestamp"], int)
    assert list(meta["config"]) == ["max_length", "temperature", "top_p"]
    truth = meta["synth"]
    keys = (
        "seed",
        "layers",
        "heads",
        "prompt",
        "tokens",
        "style",
        "logits",
        "groups",
        "bos",
        "anchors",
        "local_window",
    )
    assert all(key in truth for key in keys)
    assert (truth["layers"], truth["heads"], truth["prompt"], truth["tokens"]) == (3, 4, 40, 12)
    assert truth["logits"] == (name == "logits") and truth["bos"] == 0 and truth["local_window"] == 20
    assert [g["name"] for g in truth["groups"]] == ["critical", "irrelevant", "secondary"]

    prompt = doc["prompt_tokens"]
    assert len(prompt) == 40
    for i, tok in enumerate(prompt):
        assert list(tok) == ["token_id", "text", "position", "turn_id", "message_role", "sentence_id"]
        assert tok["position"] == i
    assert prompt[0]["text"] == "<|im_start|>" and prompt[0]["message_role"] == "system"
    assert {t["message_role"] for t in prompt if t["turn_id"] == 1} == {"user"}

    gen = doc["generated_tokens"]
    assert [t["step"] for t in gen] == list(range(12))
    assert gen[0]["attention"] is None
    stamps = [t["timestamp"] for t in gen]
    assert all(isinstance(s, int) for s in stamps) and stamps == sorted(set(stamps)) and stamps[0] > meta["timestamp"]
    for tok in gen:
        assert list(tok) == ["step", "token_id", "text", "position", "timestamp", "attention"]
        assert tok["position"] == 40 + tok["step"]
        if tok["step"]:
            att = tok["attention"]
            ctx = 40 + tok["step"]
            assert list(att) == ["shape", "context_length", "data"]
            assert att["shape"] == [3, 4, ctx] and att["context_length"] == ctx and len(att["data"]) == 3 * 4 * ctx


def test_no_null_first(tmp_path):
    path = tmp_path / "c.json"
    write_capture(path, layers=2, heads=2, prompt=20, tokens=3, null_first=False)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["generated_tokens"][0]["attention"]["shape"] == [2, 2, 20]


def test_zero_tokens(tmp_path):
    path = tmp_path / "c.json"
    write_capture(path, layers=2, heads=2, prompt=20, tokens=0, style="indent")
    text = path.read_text(encoding="utf-8")
    doc = json.loads(text)
    assert doc["generated_tokens"] == [] and text == json.dumps(doc, indent=2)


@pytest.mark.parametrize("prompt", [8, 9, 12, 20, 30, 31, 45, 77, 200, 333])
def test_prompt_layout(prompt):
    s = SyntheticCapture(layers=1, heads=1, prompt=prompt, tokens=2)
    toks = s.prompt_tokens
    assert len(toks) == prompt and [t["position"] for t in toks] == list(range(prompt))
    assert toks[0]["text"] == "<|im_start|>" and toks[0]["turn_id"] == 0
    # sentence ids restart in each turn and count up without gaps
    for turn in {t["turn_id"] for t in toks}:
        ids = [t["sentence_id"] for t in toks if t["turn_id"] == turn]
        assert ids[0] == 0 and all(b - a in (0, 1) for a, b in zip(ids, ids[1:]))
    sentence_of = [(t["turn_id"], t["sentence_id"]) for t in toks]
    planted = 0
    for group in s.groups:
        assert len(group["sentences"]) >= 1
        planted += len(group["sentences"])
        expected = [i for i, key in enumerate(sentence_of) if list(key) in group["sentences"]]
        assert group["positions"] == expected
        for sentence in group["sentences"]:
            assert sentence_of.count(tuple(sentence)) >= 2
    if prompt >= 30:
        assert planted == 10 and [len(g["sentences"]) for g in s.groups] == [3, 4, 3]
    assert 0 not in s.anchors and not set(s.anchors.tolist()) & {p for g in s.groups for p in g["positions"]}


def test_prompt_too_small():
    with pytest.raises(ValueError):
        SyntheticCapture(prompt=synth.MIN_PROMPT - 1)


def test_hard_characters_round_trip(captures):
    needles = ['"', "\\", "\n", "é", "日本", '"data":[', "]}"]
    for name in ("js", "py"):
        _, text, doc, _ = captures[name]
        texts = [t["text"] for t in doc["prompt_tokens"]] + [t["text"] for t in doc["generated_tokens"]]
        joined = "".join(texts)
        for needle in needles:
            assert needle in joined, needle
        assert any(ord(c) > 0xFFFF for c in joined)  # an emoji: a surrogate pair in \u escapes
        s = SyntheticCapture(**SMALL)
        assert [t["text"] for t in doc["prompt_tokens"]] == [t["text"] for t in s.prompt_tokens]
    js_text, py_text = captures["js"][1], captures["py"][1]
    assert "日本" in js_text and "\\u65e5\\u672c" in py_text  # raw UTF-8 (JSON.stringify) vs ASCII escapes
    assert re.search(r"\\ud83[cdef]\\ud[c-f][0-9a-f]{2}", py_text)


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("name", ["js", "py", "indent", "logits"])
def test_values_round_trip_float32(captures, name):
    _, _, doc, _ = captures[name]
    s = SyntheticCapture(**SMALL, logits=name == "logits")
    for tok in doc["generated_tokens"][1:]:
        data = tok["attention"]["data"]
        got = np.asarray(data, dtype=np.float32)
        assert all(float(np.float32(v)) == v for v in data)  # each text is a float32 value, exactly
        want = s.attention(tok["step"]).ravel()
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_py_and_indent_match_json_dumps(captures):
    _, text, doc, _ = captures["py"]
    assert text == json.dumps(doc)
    _, text, doc, _ = captures["indent"]
    assert text == json.dumps(doc, indent=2)


@pytest.mark.parametrize("name", ["js", "logits"])
def test_js_style_is_json_stringify(captures, name):
    _, text, doc, _ = captures[name]
    # strings (token texts) blanked out, JSON keys kept
    outside_strings = STRING.sub(lambda m: m.group() if re.fullmatch(r'"\w+"', m.group()) else '""', text)
    assert not re.search(r"\s", outside_strings)
    assert "e-0" not in outside_strings and "e+0" not in outside_strings and ".0," not in outside_strings
    # every attention array, number by number, as JSON.stringify writes a Float32Array's values
    arrays = re.findall(r'"data":\[([^\]]*)\]', outside_strings)
    assert len(arrays) == 11
    for body, tok in zip(arrays, doc["generated_tokens"][1:]):
        assert body.split(",") == [ref_js(v) for v in tok["attention"]["data"]]
    # the rest is JSON.stringify of plain values
    head = text[: text.index('"generated_tokens":')]
    assert (
        head
        == json.dumps(
            {"metadata": doc["metadata"], "prompt_tokens": doc["prompt_tokens"]},
            separators=(",", ":"),
            ensure_ascii=False,
        )[:-1]
        + ","
    )


def test_number_text_edge_cases():
    values = np.array(
        [
            1.0,
            0.0,
            -0.0,
            0.5,
            1e-5,
            1.2345e-5,
            1e-6,
            9.9e-7,
            1.2345678e-7,
            3e-9,
            1e-12,
            1e-45,
            -2.5e-6,
            65504.0,
            123456789.0,
            1e16,
            1.5e16,
            3e20,
            1e21,
            1.25e22,
            3.4e38,
            -1e-4,
            1e-4,
            0.1,
            -7.25,
            2.0**-149,
        ],
        dtype=np.float32,
    )
    doubles = [float(v) for v in values]
    assert format_floats(values, "js") == "[" + ",".join(ref_js(d) for d in doubles) + "]"
    assert format_floats(values, "py") == json.dumps(doubles)
    assert format_floats(values, "py") == repr(doubles)
    assert json.loads(format_floats(values, "js"), parse_int=float) == [d + 0.0 for d in doubles]
    for d in doubles + [0.7, 1e21, 1e-7, 123.0, -0.0, 5e-324, 1.7976931348623157e308]:
        assert js_number(d) == ref_js(d)
    assert [js_number(x) for x in (1e-7, 1.2345e-5, 1.0, -0.0, 1e21, 0.000001)] == [
        "1e-7",
        "0.000012345",
        "1",
        "0",
        "1e+21",
        "0.000001",
    ]


# --------------------------------------------------------------------------- planted truth


def test_rows_are_probabilities(captures):
    _, _, doc, _ = captures["js"]
    for tok in doc["generated_tokens"][1:]:
        a = attention_array(tok)
        assert (a >= 0).all()
        np.testing.assert_allclose(a.sum(axis=-1, dtype=np.float64), 1.0, atol=2e-6)


def test_attention_shape_of_rows():
    s = SyntheticCapture(layers=8, heads=8, prompt=120, tokens=30, seed=3)
    a = s.attention(29).astype(np.float64).reshape(64, -1)
    ctx = a.shape[1]
    mean = a.mean(axis=0)
    free = s._free[:ctx].copy()
    free[ctx - 20 :] = False
    assert mean[0] > 5 * mean[s.anchors].max() and mean[0] > 0.1  # BOS sink
    assert mean[s.anchors].min() > 2 * mean[free].mean()  # anchors stay bright
    assert mean[ctx - 1] > 4 * mean[free].mean()  # local wave next to the head
    assert mean[ctx - 1] > mean[ctx - 5] > mean[ctx - 15]
    assert (a == 0).any()  # a few "sharp" rows underflow to exact zeros
    assert 0.05 < a[:, 0].min() or a[:, 0].std() > 0.05  # the sink varies by layer and head


def group_sums(doc, values_are_logits=False):
    """Mean over layers and heads of each group's summed attention, per step with attention."""
    groups = doc["metadata"]["synth"]["groups"]
    steps, sums = [], {g["name"]: [] for g in groups}
    for tok in doc["generated_tokens"]:
        if tok["attention"] is None:
            continue
        a = attention_array(tok).astype(np.float64)
        if values_are_logits:
            a = softmax(a)
        steps.append(tok["step"])
        for g in groups:
            sums[g["name"]].append(a[:, :, g["positions"]].sum(axis=-1).mean())
    return np.array(steps), {k: np.array(v) for k, v in sums.items()}, groups


@pytest.mark.parametrize("logits", [False, True])
def test_planted_decay_recovered(tmp_path, logits):
    path = tmp_path / "decay.json"
    write_capture(path, layers=4, heads=5, prompt=60, tokens=64, seed=11, logits=logits)
    doc = json.loads(path.read_text(encoding="utf-8"))
    steps, sums, groups = group_sums(doc, values_are_logits=logits)
    assert len(steps) == 63
    for g in groups:
        slope, intercept = np.polyfit(steps, np.log(sums[g["name"]]), 1)
        assert -slope == pytest.approx(g["decay_rate"], rel=0.01)
        assert np.exp(intercept) == pytest.approx(g["initial_share"], rel=0.01)
        np.testing.assert_allclose(sums[g["name"]], g["initial_share"] * np.exp(-g["decay_rate"] * steps), rtol=1e-4)
    rates = {g["name"]: g["decay_rate"] for g in groups}
    assert rates["critical"] < rates["secondary"] < rates["irrelevant"]
    assert sums["irrelevant"][-1] / sums["irrelevant"][0] < 0.2  # measurable over 64 tokens


def test_logits_mode(captures):
    _, _, doc, meta = captures["logits"]
    assert meta["synth"]["values"] == "logits"
    s = SyntheticCapture(**SMALL, logits=True)
    all_values = []
    for tok in doc["generated_tokens"][1:]:
        a = attention_array(tok)
        all_values.append(a.ravel())
        np.testing.assert_allclose(softmax(a), s.probabilities(tok["step"]).reshape(a.shape), rtol=1e-4, atol=1e-12)
    v = np.concatenate(all_values)
    assert (v < 0).mean() > 0.5 and v.min() > -110 and v.max() < 110 and v.max() > 0


# --------------------------------------------------------------------------- determinism, streaming, CLI


def test_deterministic_and_parallel_identical(tmp_path):
    kwargs = dict(layers=2, heads=3, prompt=30, tokens=6, seed=5)
    a, b, c, d = (tmp_path / f"{n}.json" for n in "abcd")
    write_capture(a, **kwargs, workers=0)
    write_capture(b, **kwargs, workers=2)
    write_capture(c, **{**kwargs, "seed": 6}, workers=0)
    write_capture(d, **{**kwargs, "tokens": 9}, workers=0)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    # a longer capture with the same seed starts with the same tokens
    short, long = json.loads(a.read_bytes()), json.loads(d.read_bytes())
    assert short["generated_tokens"] == long["generated_tokens"][:6]
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json", "c.json", "d.json"]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def boom(values, style):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("disk on fire")
        return original(values, style)

    original = synth.writers.format_floats
    monkeypatch.setattr(synth.writers, "format_floats", boom)
    with pytest.raises(RuntimeError):
        write_capture(tmp_path / "x.json", layers=2, heads=2, prompt=20, tokens=6, workers=0)
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError):
        write_capture(tmp_path / "y.json", layers=2, heads=2, prompt=20, tokens=2, style="yaml")
    assert os.listdir(tmp_path) == []


def test_progress_bar(tmp_path, capsys):
    write_capture(tmp_path / "p.json", layers=2, heads=2, prompt=20, tokens=3, progress=True)
    assert "3/3" in capsys.readouterr().err


def test_cli_writes_and_refuses_to_overwrite(tmp_path, capsys):
    from halo_fast.cli.main import main

    out = tmp_path / "cli.json"
    argv = ["synth", str(out), "--layers", "2", "--heads", "3", "--prompt", "25", "--tokens", "5", "--style", "py"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert str(out) in line and "5 tokens" in line and "MB" in line
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert len(doc["generated_tokens"]) == 5 and doc["metadata"]["synth"]["style"] == "py"
    before = out.read_bytes()
    assert main(argv[:-2] + ["--style", "js"]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(argv[:-2] + ["--style", "js", "--force", "--logits", "--no-null-first", "--seed", "3"]) == 0
    meta = json.loads(out.read_text(encoding="utf-8"))["metadata"]["synth"]
    assert meta["style"] == "js" and meta["logits"] and not meta["null_first"] and meta["seed"] == 3


def test_cli_size(tmp_path, capsys):
    from halo_fast.cli.main import main

    out = tmp_path / "sized.json"
    assert main(["synth", str(out), "--layers", "4", "--heads", "4", "--prompt", "50", "--size", "2MB"]) == 0
    assert 1.8e6 < out.stat().st_size < 2.2e6
    assert main(["synth", str(tmp_path / "z.json"), "--size", "1GB", "--tokens", "3"]) == 2
    assert main(["synth", str(tmp_path / "z.json"), "--size", "lots"]) == 2
    capsys.readouterr()
