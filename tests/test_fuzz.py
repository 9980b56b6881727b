"""Mutated captures in a child process: every input decodes exactly as json.loads says, or raises
CaptureError -- never another exception, a segfault or a hang.

A few thousand cases run in the normal suite; ``pytest --fuzz-long`` runs many more.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from builders import capture_doc

pytestmark = pytest.mark.slow  # thousands of child processes: `-m "not slow"` leaves them out

HERE = os.path.dirname(os.path.abspath(__file__))
NUMBER_BOMBS = [
    b"1e999999999999",
    b"-1e-99999999999",
    b"1" * 100_000,
    b"0." + b"0" * 100_000 + b"1",
    b"9" * 400,
    b"1E+309",
    b"-0",
    b"4.9e-325",
    b"Infinity",
    b"-NaN",
    b"0x10",
    b"1.2.3",
    b"--1",
    b"1e",
    b".5",
]
INSERTS = [
    b"[",
    b"]",
    b"{",
    b"}",
    b'"',
    b"\\",
    b":",
    b",",
    b" ",
    b"\x00",
    b"\xff\xfe",
    b"\xc3",
    b"null",
    b"true",
    b'"data":[',
    b"[" * 600,
    b"]" * 3,
    b"\n",
    b"\xe2\x80\xa8",
]


def base_texts() -> list[bytes]:
    rng = np.random.default_rng(11)
    tensors = [rng.dirichlet(np.ones(3 + i), (2, 2)).astype(np.float32) for i in range(4)]
    doc = capture_doc(tensors, null_first=True, texts={1: 'q"uote\\ "data":[1] é 日本 😀'})
    doc["metadata"]["nested"] = {"data": [1, 2, 3], "attention": {"data": [4]}}
    return [
        json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(),
        json.dumps(doc).encode(),
        json.dumps(doc, indent=2).encode(),
    ]


def mutate(text: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(9)
    at = rng.randrange(len(text) + 1)
    if kind == 0:  # flip one byte
        at = min(at, len(text) - 1)
        return text[:at] + bytes([rng.randrange(256)]) + text[at + 1 :]
    if kind == 1:  # delete a run
        return text[:at] + text[at + rng.randint(1, 20) :]
    if kind == 2:  # insert structure or garbage
        return text[:at] + rng.choice(INSERTS) + text[at:]
    if kind == 3:  # truncate
        return text[:at]
    if kind == 4:  # a number bomb where a number stands
        starts = [i for i in range(1, len(text)) if text[i - 1 : i] in (b"[", b",", b" ") and text[i : i + 1].isdigit()]
        if not starts:
            return text + b"x"
        s = rng.choice(starts)
        e = s
        while e < len(text) and text[e : e + 1] in b"0123456789.eE+-":
            e += 1
        return text[:s] + rng.choice(NUMBER_BOMBS) + text[e:]
    if kind == 5:  # a shape whose product overflows int64, or that lies about the data
        return text.replace(b"[2, 2, ", b"[4294967296, 4294967296, ", 1).replace(
            b"[2,2,", rng.choice([b"[4294967296,4294967296,", b"[2,3,", b"[0,2,"]), 1
        )
    if kind == 6:  # invalid UTF-8 or NUL inside a string
        quote = text.find(b'"', at)
        quote = quote if quote >= 0 else at
        return text[: quote + 1] + rng.choice([b"\xff", b"\x00", b"\xed\xa0\x80", b"\xc0\xaf"]) + text[quote + 1 :]
    if kind == 7:  # deep nesting
        depth = rng.choice([100, 1000, 100_000])
        return text[:at] + b"[" * depth + b"]" * rng.choice([0, depth]) + text[at:]
    # several edits at once
    for _ in range(rng.randint(2, 5)):
        text = mutate(text, rng)
    return text


def fixed_cases() -> list[bytes]:
    """Hand-picked extremes: a million-digit number in data and in a token field, a million brackets."""
    base = base_texts()[0]
    first_number = base.index(b'"data":[') + len(b'"data":[')
    end = base.index(b",", first_number)
    million = b"1" * 1_000_000
    return [
        base[:first_number] + million + base[end:],
        base[:first_number] + b"0." + million + base[end:],
        base[:first_number] + b"1e" + million + base[end:],
        base.replace(b'"step":1,', b'"step":' + million + b",", 1),
        base.replace(b'"position":0,', b'"position":-' + million + b",", 1),
        b"[" * 1_000_000,
        b'{"generated_tokens":' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}",
        base.replace(b"[2,2,", b"[9223372036854775807,9223372036854775807,", 1),
        base.replace(b"[2,2,", b"[-2,2,", 1),
        base[: len(base) // 2] + b"\x00" * 1000,
    ]


def run_fuzz(tmp_path, cases: int, seed: int, timeout: float) -> None:
    rng = random.Random(seed)
    bases = base_texts()
    directory = tmp_path / "cases"
    directory.mkdir()
    fixed = fixed_cases()
    for i, text in enumerate(fixed):
        (directory / f"{i}.json").write_bytes(text)
    for i in range(len(fixed), cases):
        (directory / f"{i}.json").write_bytes(mutate(rng.choice(bases), rng))
    try:
        result = subprocess.run(
            [sys.executable, os.path.join(HERE, "fuzz_worker.py"), str(directory)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        out, code = result.stdout, result.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        last = [line for line in out.splitlines() if line.startswith("start")][-1:]
        pytest.fail(f"fuzz worker hung (timeout {timeout}s) on {last}: {directory}")
    started = [line for line in out.splitlines() if line.startswith("start")]
    outcomes = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if code != 0:
        pytest.fail(f"fuzz worker died with {code} on {started[-1:]}: stderr {result.stderr[-2000:]}")
    assert len(outcomes) == cases
    bad = [o for o in outcomes if o["outcome"] not in ("exact", "error")]
    assert not bad, [(o["case"], o["outcome"], (directory / f"{o['case']}.json").read_bytes()[:300]) for o in bad[:5]]
    counts = {kind: sum(o["outcome"] == kind for o in outcomes) for kind in ("exact", "error")}
    assert counts["exact"] > cases // 20 and counts["error"] > cases // 4, counts  # the mutations bite both ways


def test_fuzz_mutated_captures(tmp_path, request):
    long = request.config.getoption("--fuzz-long")
    run_fuzz(
        tmp_path,
        cases=40_000 if long else 3_000,
        seed=1 if not long else random.randrange(1 << 30),
        timeout=3600 if long else 300,
    )
