"""reduce_decoded, reduce_arrays and find_structural against plain numpy/Python twins.

The twins share no code with halo_fast.kernels. A fold is written the obvious way,
over Python floats in file order, with what the kernels promise: float64 sums
starting from +0.0, mean over the group's rows, nanmean over the non-NaN values
(NaN when there are none), max and min NaN as soon as one value is NaN and
otherwise the first of equal values (so the sign of the first zero). A value is
whatever json.loads + float32 makes of its text (reference.py). A structural byte
is one of ``"\\[]{}:``. Floats are compared bit for bit: NaN at the same places,
then the bits of every other value (so -0.0 is not 0.0).

Arguments are built the way halo_fast.formats.json_values and halo_fast.reduction
build them: plans from make_plan (and hand-made ones with groups of unequal size and
first rows in any order), per-thread scratch rows, output rows only for the tokens
selected, an order that is not the file order.
"""

from __future__ import annotations

import json
import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halo_fast.kernels.arrays import (
    ARRAY_BAD_NUMBER,
    ARRAY_BAD_SEPARATOR,
    ARRAY_OK,
    ARRAY_TOO_FEW,
    ARRAY_TOO_MANY,
    ARRAY_TRAILING_COMMA,
    ARRAY_TRUNCATED,
)
from halo_fast.kernels.reduce import ARRAY_HAS_HARD, OPS, reduce_arrays, reduce_decoded
from halo_fast.kernels.structure import find_structural
from halo_fast.reduction import make_plan
from reference import examples, reference_array

OP_NAMES = list(OPS)
OVERS = [("layers", "heads"), ("layers",), ("heads",)]
SENTINEL = np.float32(-12345.5)  # output cells a kernel must not write
SPECIAL = np.array(
    [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45, 1.1754944e-38, 3.4028235e38, -3.4028235e38, 1.0, -1.0, 0.5],
    dtype=np.float32,
)
HARD_TEXTS = ["0." + "3" * 30, "9007199254740993", "1" + "0" * 22]  # valid JSON the fast parser declines
WHITESPACE = ["", "", " ", "\n", "\t", "\r\n", "  "]


# --------------------------------------------------------------------------- twins


def twin_value(xs: list[float], op: str, size: float) -> float:
    """One output cell from the values folding into it (file order)."""
    if op in ("max", "min"):
        if any(math.isnan(x) for x in xs):
            return math.nan
        return max(xs) if op == "max" else min(xs)  # builtin max/min keep the first of equal values
    if op == "nanmean":
        xs = [x for x in xs if not math.isnan(x)]
    if op in ("mean_f32", "mean_js"):  # Halo Weave's: a float32 running sum, then / size or * (1 / size)
        total32 = np.float32(0.0)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as in float32 everywhere
            for x in xs:
                total32 = np.float32(total32 + np.float32(x))
        return float(total32) / size if op == "mean_f32" else float(total32) * (1.0 / size)
    total = 0.0
    for x in xs:
        total += x
    if op == "sum":
        return total
    if op == "mean":
        return total / size
    return total / len(xs) if xs else math.nan


def twin_reduce(values, ctx: int, row_group, group_size, op: str) -> np.ndarray:
    """float32 [groups, ctx]: every row r with row_group[r] = g folded into row g."""
    values = np.asarray(values, dtype=np.float32)
    out = np.empty((len(group_size), ctx), dtype=np.float32)
    for g in range(len(group_size)):
        rows = [r for r in range(len(row_group)) if row_group[r] == g]
        for c in range(ctx):
            xs = [float(values[r * ctx + c]) for r in rows]
            with np.errstate(over="ignore"):  # a float64 sum beyond float32's range is +-inf, as in the kernel
                out[g, c] = np.float32(twin_value(xs, op, float(group_size[g])))
    return out


def twin_structural(data: bytes, lo: int, hi: int) -> np.ndarray:
    structural = frozenset(b'"\\[]{}:')
    return np.array([p for p in range(max(lo, 0), min(hi, len(data))) if data[p] in structural], dtype=np.int64)


def assert_same_floats(got, want, what: str = "") -> None:
    got = np.asarray(got, dtype=np.float32)
    want = np.asarray(want, dtype=np.float32)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_got, nan_want), f"{what}: NaN at other places\ngot  {got}\nwant {want}"
    same = np.array_equal(got[~nan_got].view(np.uint32), want[~nan_want].view(np.uint32))
    assert same, f"{what}: different bits\ngot  {got!r}\nwant {want!r}"


# --------------------------------------------------------------------------- inputs


def plan_arrays(row_group) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row_group, first_row, group_size) as ReducePlan holds them, from a row -> group list."""
    row_group = np.asarray(row_group, dtype=np.int64)
    n_groups = int(row_group.max()) + 1
    first_row = np.array([np.flatnonzero(row_group == g)[0] for g in range(n_groups)], dtype=np.int64)
    group_size = np.bincount(row_group[row_group >= 0], minlength=n_groups).astype(np.float64)
    return row_group, first_row, group_size


@st.composite
def plans(draw):
    """(row_group, first_row, group_size): make_plan's plans, or any grouping of the rows (unequal
    groups, rows left out, a group's first row after another group's rows)."""
    n_layers = draw(st.integers(1, 3))
    n_heads = draw(st.integers(1, 3))
    n_rows = n_layers * n_heads
    if draw(st.booleans()):
        over = draw(st.sampled_from(OVERS))
        layers = sorted(draw(st.sets(st.integers(0, n_layers - 1), min_size=1)))
        heads = sorted(draw(st.sets(st.integers(0, n_heads - 1), min_size=1)))
        plan = make_plan("mean", over, layers, heads, n_layers, n_heads)
        return plan.row_group, plan.first_row, plan.group_size
    labels = draw(st.lists(st.integers(-1, n_rows - 1), min_size=n_rows, max_size=n_rows))
    used = sorted({x for x in labels if x >= 0}) or [0]
    if all(x < 0 for x in labels):
        labels[draw(st.integers(0, n_rows - 1))] = 0
    relabel = dict(zip(used, draw(st.permutations(range(len(used))))))
    return plan_arrays([relabel[x] if x >= 0 else -1 for x in labels])


def random_values(rng: np.random.Generator, n: int) -> np.ndarray:
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype(np.float32)
    special = rng.random(n) < 0.3
    x[special] = rng.choice(SPECIAL, int(special.sum()))
    return x


def number_text(x: np.float32, rng: np.random.Generator) -> str:
    """A JSON text for x in one of the forms writers use (its json.loads value is what counts)."""
    if np.isnan(x):
        forms = ["NaN", "null"]
    elif np.isinf(x):
        forms = ["Infinity" if x > 0 else "-Infinity"]
    else:
        v = float(x)
        forms = [repr(v), f"{v:.9g}", f"{v:.3e}", f"{v:E}", f"{v:.17g}"]
        if v == 0:
            forms += ["0", "-0", "0.0", "-0.0", "0e5", "-0E-3"]
        elif v == int(v) and abs(v) < 2**53:
            forms.append(str(int(v)))
    return forms[int(rng.integers(len(forms)))]


def array_text(texts: list[str], rng: np.random.Generator) -> tuple[str, list[int]]:
    """'[' texts joined by ',' with random whitespace ']', and where each text starts in it."""
    out = "[" + WHITESPACE[int(rng.integers(len(WHITESPACE)))]
    starts = []
    for k, text in enumerate(texts):
        if k:
            out += WHITESPACE[int(rng.integers(len(WHITESPACE)))] + ","
            out += WHITESPACE[int(rng.integers(len(WHITESPACE)))]
        starts.append(len(out))
        out += text
    return out + WHITESPACE[int(rng.integers(len(WHITESPACE)))] + "]", starts


def capture_buffer(arrays: list[str], at_end: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(buf, starts, ends) of the arrays inside capture-like JSON; ``at_end``: the last ']' is the
    buffer's last byte, and the buffer is a view cut from a larger one whose next bytes are digits."""
    text = '{"generated_tokens": ['
    starts, ends = [], []
    for k, array in enumerate(arrays):
        text += ("," if k else "") + f'{{"step": {k}, "attention": {{"data": '
        starts.append(len(text))
        text += array
        ends.append(len(text) - 1)
        text += "}}"
    if at_end:
        raw = text.encode()
        buf = np.frombuffer(raw + b"98765432109876543210", dtype=np.uint8)[: len(raw) - 2]  # cut after the last ']'
    else:
        buf = np.frombuffer((text + "]}").encode(), dtype=np.uint8)
    return buf, np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


# --------------------------------------------------------------------------- reduce_decoded


def run_reduce_decoded(tokens, row_group, first_row, group_size, op, width=None):
    """reduce_decoded over (values, ctx) tokens one by one with shared scratch (as fold_tokens does).

    The scratch starts full of garbage; each output row starts as SENTINEL, ``width`` columns.
    """
    width = max((ctx for _, ctx in tokens), default=0) if width is None else width
    acc = np.full((len(group_size), width), 1e300)
    counts = np.full((len(group_size), width), 99, dtype=np.int64)
    out = np.full((len(tokens), len(group_size), width), SENTINEL, dtype=np.float32)
    for row, (values, ctx) in enumerate(tokens):
        n_rows = len(row_group)
        reduce_decoded(values, n_rows, ctx, row_group, first_row, group_size, OPS[op], acc, counts, out[row])
    return out


def check_reduce_decoded(tokens, row_group, first_row, group_size, op):
    out = run_reduce_decoded(tokens, row_group, first_row, group_size, op)
    for row, (values, ctx) in enumerate(tokens):
        want = twin_reduce(values, ctx, row_group, group_size, op)
        assert_same_floats(out[row, :, :ctx], want, f"{op} token {row} ctx {ctx} rows {row_group.tolist()}")
        assert np.all(out[row, :, ctx:] == SENTINEL), f"{op} token {row}: written beyond its context"


@settings(max_examples=examples(60))
@given(plan=plans(), op=st.sampled_from(OP_NAMES), seed=st.integers(0, 2**32 - 1))
def test_reduce_decoded_matches_twin(plan, op, seed):
    row_group, first_row, group_size = plan
    rng = np.random.default_rng(seed)
    tokens = []
    for _ in range(int(rng.integers(1, 5))):
        ctx = int(rng.integers(0, 7))
        tokens.append((random_values(rng, len(row_group) * ctx), ctx))
    check_reduce_decoded(tokens, row_group, first_row, group_size, op)


@pytest.mark.parametrize("op", OP_NAMES)
def test_reduce_decoded_hard_cases(op):
    one = plan_arrays([0])
    # empty: no context, and no column at all in the scratch and output
    check_reduce_decoded([(np.zeros(0, np.float32), 0)], *one, op)
    # one element: each special value alone (a sum starts from +0.0, max/min take the value itself)
    check_reduce_decoded([(SPECIAL[k : k + 1].copy(), 1) for k in range(len(SPECIAL))], *one, op)
    # NaN in one row of a group, a column of NaN only, inf - inf
    pair = plan_arrays([0, 0])
    nan = np.float32(np.nan)
    values = np.array([nan, 1.0, nan, np.inf, 2.0, 3.0, nan, -np.inf], dtype=np.float32)
    check_reduce_decoded([(values, 4)], *pair, op)
    # ties of zeros: max and min keep the first (its sign)
    check_reduce_decoded([(np.array([-0.0, 0.0, 0.0, -0.0], np.float32), 2)], *pair, op)
    # groups of unequal size, rows left out, group 1's first row before group 0's
    uneven = plan_arrays([1, -1, 0, 1, 1, 0])
    assert uneven[1].tolist() == [2, 0] and uneven[2].tolist() == [2.0, 3.0]
    negative = -np.arange(1, 6 * 3 + 1, dtype=np.float32) / 7  # all below 0: max must not start from 0
    check_reduce_decoded([(negative, 3), (-negative, 3)], *uneven, op)
    # shared scratch: a long token, then short ones; the last context fills the output to its end
    rng = np.random.default_rng(5)
    tokens = [(random_values(rng, 6 * ctx), ctx) for ctx in (6, 2, 0, 1, 6)]
    check_reduce_decoded(tokens, *uneven, op)


def test_reduce_decoded_over_make_plan_plans():
    """Every op over each axis with make_plan's plans (the route Capture.reduce takes)."""
    rng = np.random.default_rng(11)
    for over in OVERS:
        plan = make_plan("mean", over, [0, 2], [1, 2], 3, 3)
        tokens = [(random_values(rng, 9 * ctx), ctx) for ctx in (4, 1, 3)]
        for op in OP_NAMES:
            check_reduce_decoded(tokens, plan.row_group, plan.first_row, plan.group_size, op)


# --------------------------------------------------------------------------- reduce_arrays


def run_reduce_arrays(buf, starts, ends, ctxs, ids, order, plan, op):
    """reduce_arrays as reduce_attention calls it; returns (out, status). Scratch starts as garbage,
    output rows as SENTINEL, status rows as -7."""
    row_group, first_row, group_size = plan
    n_threads = numba.get_num_threads()
    width = int(ctxs[ids].max()) if len(ids) else 0
    acc = np.full((n_threads, len(group_size), width), 1e300)
    counts = np.full((n_threads, len(group_size), width), 99, dtype=np.int64)
    values = np.full((n_threads, width), -3.5, dtype=np.float32)
    out = np.full((len(ids), len(group_size), width), SENTINEL, dtype=np.float32)
    out_rows = np.full(len(starts), -1, dtype=np.int64)
    out_rows[ids] = np.arange(len(ids))
    status = np.full((len(starts), 4), -7, dtype=np.int64)
    n_rows = len(row_group)
    args = (n_rows, row_group, first_row, group_size, OPS[op], acc, counts, values, out, status)
    reduce_arrays(buf, starts, ends, ctxs, out_rows, order, *args)
    return out, status


def twin_token(texts, text_starts, start, end, ctx, kind, row_group, group_size, op):
    """(code, position, seen) and the output row (None: left alone) the fused reduction must give."""
    count = len(row_group) * ctx
    if len(texts) > count:
        return (ARRAY_TOO_MANY, start + text_starts[count], count), None
    if len(texts) < count:
        return (ARRAY_TOO_FEW, end, len(texts)), None
    if kind >= 0 and row_group[kind // ctx] >= 0:  # a number it declines, in a row it parses
        return (ARRAY_HAS_HARD, start + text_starts[kind], kind), None
    values = reference_array(json.loads("[" + ",".join(texts) + "]"))
    return (ARRAY_OK, end, count), twin_reduce(values, ctx, row_group, group_size, op)


def check_reduce_arrays(tokens, plan, op, ids, order, at_end, rng):
    """tokens: (texts, ctx, kind) with kind -1, or the index of a hard number among texts."""
    row_group, _first_row, group_size = plan
    arrays = [array_text(texts, rng) for texts, _, _ in tokens]
    buf, starts, ends = capture_buffer([a for a, _ in arrays], at_end)
    ctxs = np.array([ctx for _, ctx, _ in tokens], dtype=np.int64)
    out, status = run_reduce_arrays(buf, starts, ends, ctxs, ids, order, plan, op)
    for i, (texts, ctx, kind) in enumerate(tokens):
        label = f"{op} token {i} ctx {ctx} kind {kind} rows {row_group.tolist()}: {arrays[i][0]!r}"
        if i not in set(ids.tolist()):
            assert status[i].tolist() == [-7] * 4, label + " (not in order: must stay untouched)"
            continue
        row = int(np.flatnonzero(ids == i)[0])
        want_status, want_row = twin_token(
            texts, arrays[i][1], int(starts[i]), int(ends[i]), ctx, kind, row_group, group_size, op
        )
        assert tuple(status[i, :3].tolist()) == want_status, label
        assert status[i, 3] == -7, label + " (column 3 is decode_arrays', not reduce_arrays')"
        if want_row is None:
            assert np.all(out[row] == SENTINEL), label + " (failed token: output row must stay untouched)"
        else:
            assert_same_floats(out[row, :, :ctx], want_row, label)
            assert np.all(out[row, :, ctx:] == SENTINEL), label + " (written beyond its context)"
            # the decoded route gives identical numbers
            again = run_reduce_decoded([(reference_array(json.loads(arrays[i][0])), ctx)], *plan, op, out.shape[2])
            assert_same_floats(again[0], out[row], label + " (reduce_decoded)")


def random_tokens(rng, n_rows: int, n_tokens: int) -> list:
    tokens = []
    for _ in range(n_tokens):
        ctx = int(rng.integers(0, 6))
        count = n_rows * ctx
        texts = [number_text(x, rng) for x in random_values(rng, count)]
        kind = -1
        anomaly = rng.random()
        if anomaly < 0.1:
            texts.append(number_text(np.float32(rng.standard_normal()), rng))  # one value too many
        elif anomaly < 0.2 and count:
            texts.pop()  # one too few
        elif anomaly < 0.3 and count:
            kind = int(rng.integers(count))
            texts[kind] = HARD_TEXTS[int(rng.integers(len(HARD_TEXTS)))]
        tokens.append((texts, ctx, kind))
    return tokens


@settings(max_examples=examples(60))
@given(
    plan=plans(),
    op=st.sampled_from(OP_NAMES),
    seed=st.integers(0, 2**32 - 1),
    at_end=st.booleans(),
    data=st.data(),
)
def test_reduce_arrays_matches_twin(plan, op, seed, at_end, data):
    rng = np.random.default_rng(seed)
    n_tokens = int(rng.integers(1, 6))
    tokens = random_tokens(rng, len(plan[0]), n_tokens)
    ids = np.array(sorted(data.draw(st.sets(st.integers(0, n_tokens - 1), min_size=1))), dtype=np.int64)
    order = np.array(data.draw(st.permutations(ids.tolist())), dtype=np.int64)
    check_reduce_arrays(tokens, plan, op, ids, order, at_end, rng)


def hand_tokens(*specs):
    """(texts, ctx, kind) from ("1, 2", ctx) or ("1, 2", ctx, kind)."""
    out = []
    for spec in specs:
        texts = [t.strip() for t in spec[0].split(",")] if spec[0].strip() else []
        out.append((texts, spec[1], spec[2] if len(spec) > 2 else -1))
    return out


@pytest.mark.parametrize("op", OP_NAMES)
@pytest.mark.parametrize("at_end", [False, True])
def test_reduce_arrays_hard_cases(op, at_end):
    rng = np.random.default_rng(3)
    uneven = plan_arrays([1, -1, 0])  # group 1 first, a row left out, group sizes 1 and 1
    tokens = hand_tokens(
        ("", 0),  # empty array, no context
        ("1.5, -2, 3", 1),
        ("NaN, null, Infinity, -Infinity, 1e-45, -0.0", 2),
        ("0, -0, 0.0, -0.0, 0e1, -0E-1", 2),  # json.loads: "-0" is +0, "-0.0" is -0.0
        ("-1, -2, -3, -4, -5, -6, -7, -8, -9", 3),  # every value below 0: max must not start from 0
        ("1, 2, 3, " + HARD_TEXTS[0] + ", 5, 6", 2, 3),  # a hard number in the row left out: stepped over
        ("1, 2, 3, 4, " + HARD_TEXTS[1] + ", 6", 2, 4),  # in a parsed row: the caller decodes it in full
        ("1, 2, 3", 2),  # too few
        ("1, 2, 3, 4, 5, 6, 7", 2),  # too many
        ("3.4028235e38, 3.4028235e38, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1", 6),  # the longest context last
    )
    ids = np.arange(len(tokens), dtype=np.int64)
    order = ids[::-1].copy()
    check_reduce_arrays(tokens, uneven, op, ids, order, at_end, rng)
    # one element, all rows kept, through make_plan
    plan = make_plan(op, ("layers", "heads"), None, None, 1, 1)
    one = (plan.row_group, plan.first_row, plan.group_size)
    check_reduce_arrays(hand_tokens(("5", 1)), one, op, ids[:1], ids[:1], at_end, rng)


# Malformed arrays: (array text, code, offset of the position from the array's '[', values seen), one row of
# 2 values kept (row 0) and one stepped over (row 1).
MALFORMED = [
    ("[1,2,3,4]", ARRAY_OK, 8, 4),
    ("[1,2,3,abc]", ARRAY_OK, 10, 4),  # the row left out is stepped over, not parsed
    ("[1,2,3]4]", ARRAY_BAD_NUMBER, 6, 2),  # ... but never past a ']'
    ("[1,2,]3,4]", ARRAY_BAD_NUMBER, 5, 2),
    ("[abc,2,3,4]", ARRAY_BAD_NUMBER, 1, 0),
    ("[1 2,3,4]", ARRAY_BAD_SEPARATOR, 3, 1),
    ("[1,2,3,4,]", ARRAY_TRAILING_COMMA, 9, 4),
    ("[1,-]", ARRAY_TRUNCATED, 4, 1),
    ("[1,2.]", ARRAY_TRUNCATED, 5, 1),
    ("[ ]", ARRAY_TOO_FEW, 2, 0),
    ("[1,2,3,4,5]", ARRAY_TOO_MANY, 9, 4),
]


@pytest.mark.parametrize("text, code, offset, seen", MALFORMED)
def test_reduce_arrays_malformed(text, code, offset, seen):
    plan = plan_arrays([0, -1])
    buf = np.frombuffer(b"xx" + text.encode(), dtype=np.uint8)
    starts = np.array([2], dtype=np.int64)
    ends = np.array([len(buf) - 1], dtype=np.int64)
    ids = np.array([0], dtype=np.int64)
    out, status = run_reduce_arrays(buf, starts, ends, np.array([2], dtype=np.int64), ids, ids, plan, "max")
    assert status[0, :3].tolist() == [code, 2 + offset, seen]
    if code != ARRAY_OK:
        assert np.all(out == SENTINEL)


# --------------------------------------------------------------------------- find_structural


def check_structural(data: bytes, lo: int, hi: int) -> None:
    for buf in (np.frombuffer(data, dtype=np.uint8), np.frombuffer(bytearray(data), dtype=np.uint8)):
        got = find_structural(buf, lo, hi)
        assert got.dtype == np.int64
        assert np.array_equal(got, twin_structural(data, lo, hi)), (data, lo, hi, got)


JSONISH = st.text(alphabet='"\\[]{}:,. 0123456789aeEnul-+\n\té\x00', max_size=120).map(lambda s: s.encode())


@settings(max_examples=examples(100))
@given(data=st.one_of(st.binary(max_size=120), JSONISH), bounds=st.data())
def test_find_structural_matches_twin(data, bounds):
    lo = bounds.draw(st.integers(-3, len(data) + 3))
    hi = bounds.draw(st.integers(-3, len(data) + 8))
    check_structural(data, lo, hi)
    check_structural(data, 0, len(data))


def test_find_structural_hard_cases():
    every_byte = bytes(range(256))
    cases = [
        (b"", 0, 0),
        (b"", 0, 5),
        (b"[", 0, 1),
        (b"a", 0, 1),
        (every_byte, 0, 256),
        (bytes(b | 0x80 for b in b'"\\[]{}:'), 0, 7),  # the same low bits with the high bit set: not structural
        (b'{"text": "a \\" b \\\\", "data": [1, 2]}', 0, 200),  # escapes are the walker's business: all listed
        (b'"[{:}]"', 1, 6),
        (b"[1,2]", 3, 3),  # empty range
        (b"[1,2]", 4, 2),  # lo > hi
        (b"[1,2]", -2, 2),  # lo before the buffer: from 0
        (b"[1,2]", 0, 99),  # hi past the buffer: to its end
    ]
    for data, lo, hi in cases:
        check_structural(data, lo, hi)
    # a view cut from a larger buffer whose next bytes are all structural: they are not in the view
    big = np.frombuffer(b'[1, 2, 3]"[]{}:\\', dtype=np.uint8)
    for k in range(len(big) + 1):
        got = find_structural(big[:k], 0, len(big) + 4)
        assert np.array_equal(got, twin_structural(big.tobytes()[:k], 0, k)), k
