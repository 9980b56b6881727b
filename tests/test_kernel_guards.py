"""The kernels never read or write outside the arrays they are given.

* The number parser's eight-byte reads (floats.load_u64) stop eight bytes before
  the end it may read to, and that end never passes the buffer: a number ending
  exactly at the end of a view cut from a larger buffer parses the same whatever
  digits follow it there, and under NUMBA_BOUNDSCHECK=1 the eight-byte reads are
  bounds-checked like every other.
* Every kernel loop is bounded by each array it indexes: a shorter array makes the
  kernel do less (exactly what it does on inputs cut to that length), and output
  cells beyond it keep the sentinel they were filled with. Without a guard a loop
  would read past the short array and write those cells, so these tests fail on an
  unguarded loop even without bounds checks (and under NUMBA_BOUNDSCHECK=1 with an
  IndexError).

Arguments use the dtypes and buffer kinds the package passes (read-only mapped
bytes, writable copies), so the kernels' cached signatures serve.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from halo_fast.analysis import kernels as K
from halo_fast.kernels import floats
from halo_fast.kernels import structure as st
from halo_fast.kernels.arrays import ARRAY_OK, ARRAY_OUT_OF_BOUNDS, decode_array, decode_arrays
from halo_fast.kernels.floats import HARD, OK, TRUNCATED, parse_value
from halo_fast.kernels.reduce import OPS, reduce_arrays, reduce_decoded
from halo_fast.kernels.rowstats import row_stats
from reference import reference_array, reference_number, same_bits

TAIL = b"98765432109876543210"  # digits after a view's end: an unguarded read would take them in
SENTINEL = -7


def view_of(raw: bytes, tail: bytes = TAIL, writable: bool = True) -> np.ndarray:
    """raw as a view cut from a larger buffer that goes on with ``tail``."""
    whole = bytearray(raw + tail) if writable else raw + tail
    return np.frombuffer(whole, dtype=np.uint8)[: len(raw)]


def same(a, b) -> bool:
    return np.array_equal(a, b, equal_nan=True)


def untouched(a) -> bool:
    return bool(np.all(np.asarray(a) == SENTINEL))


# --------------------------------------------------------------------------- eight-byte reads at a buffer's end

NUMBERS = [
    "0",
    "7",
    "12",
    "-3",
    "0.5",
    "1e5",
    "-0.0",
    "1234567",
    "12345678",
    "123456789",
    "1234567890123456",
    "0.1234567",
    "0.12345678",
    "0.123456789",
    "1234567.8",
    "3.4028235e38",
    "1.17549435e-38",
    "9007199254740992",
    "0.000123456789012345678",
    "NaN",
    "Infinity",
    "-Infinity",
    "null",
]


@pytest.mark.parametrize("text", NUMBERS)
def test_a_number_ending_a_view_ignores_the_digits_after_it(text):
    """Also with an end past the view: parse_value takes the view's length as the end."""
    raw = text.encode()
    want = reference_number(text)
    buf = view_of(raw)
    for end in (len(raw), len(raw) + 1, len(raw) + 8, len(raw) + len(TAIL)):
        value, after, status = parse_value(buf, 0, end)
        assert (status, after) == (OK, len(raw)), (text, end)
        assert same_bits(value, want), (text, end, value, want)


@pytest.mark.parametrize("text", NUMBERS)
def test_a_number_ending_a_bare_bytes_buffer(text):
    raw = text.encode()
    value, after, status = parse_value(np.frombuffer(raw, dtype=np.uint8), 0, len(raw))
    assert (status, after) == (OK, len(raw))
    assert same_bits(value, reference_number(text))


@pytest.mark.parametrize("long_text", ["-0.12345678901234567890123", "12345678901234567.25", "6.0221407612345e23"])
def test_every_cut_of_a_long_number(long_text):
    """Each prefix as a view of the whole: the number ends at every offset from an eight-byte block."""
    raw = long_text.encode()
    for k in range(1, len(raw) + 1):
        text = long_text[:k]
        buf = view_of(raw[:k], tail=raw[k:] + TAIL)
        value, after, status = parse_value(buf, 0, k)
        try:
            json.loads(text)
        except ValueError:
            assert status == TRUNCATED, text
            continue
        assert status in (OK, HARD) and after == k, (text, status, after)
        if status == OK:
            assert same_bits(value, reference_array([json.loads(text)])[0]), text


def test_load_u64_is_the_checked_read_exactly_under_boundscheck():
    from numba.core import config

    assert floats.load_u64 is (floats._checked_load_u64 if config.BOUNDSCHECK else floats._raw_load_u64)
    digits = np.frombuffer(bytearray(b"1234567890123456"), dtype=np.uint8)
    assert floats._take_digits(digits, 0, 16, np.uint64(0)) == (1234567890123456, 16, 16)


CHECKED_SCRIPT = """
import numpy as np
from numba.core import config
from halo_fast.kernels import floats

assert config.BOUNDSCHECK and floats.load_u64 is floats._checked_load_u64
big = np.frombuffer(bytearray(b"1234567890123456"), dtype=np.uint8)
assert floats._take_digits(big, 0, 16, np.uint64(0)) == (1234567890123456, 16, 16)
try:
    floats._take_digits(big[:4], 0, 12, np.uint64(0))  # an end past the view: a caller's bug
except IndexError:
    print("checked")
"""


@pytest.mark.slow  # compiles under NUMBA_BOUNDSCHECK=1 in a fresh process
def test_eight_byte_reads_are_bounds_checked_under_numba_boundscheck(tmp_path):
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", CHECKED_SCRIPT], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "checked\n"


# --------------------------------------------------------------------------- arrays.py


def test_decode_array_checks_its_span_and_output_slice():
    raw = b"[1, 2, 12345678]"
    buf = view_of(raw)
    close = len(raw) - 1

    def run(start, end, size, out_start, count, hard=None):
        out = np.full(size, SENTINEL, dtype=np.float32)
        hard = np.zeros((2, 3), dtype=np.int64) if hard is None else hard
        return decode_array(buf, start, end, out, out_start, count, hard), out

    status, out = run(0, close, 5, 1, 3)
    assert status == (ARRAY_OK, close, 3, 0) and out.tolist() == [SENTINEL, 1, 2, 12345678, SENTINEL]
    for start, end, size, out_start, count in [
        (0, len(raw), 3, 0, 3),  # the ']' past the view
        (0, len(raw) + 5, 3, 0, 3),
        (-1, close, 3, 0, 3),
        (0, close, 2, 0, 3),  # output too short for the count
        (0, close, 4, 2, 3),  # slice past the output's end
        (0, close, 3, -1, 3),
    ]:
        status, out = run(start, end, size, out_start, count)
        assert status == (ARRAY_OUT_OF_BOUNDS, start, 0, 0)
        assert untouched(out)
    # hard-number rows without their three columns are not written, only counted
    buf = view_of(b"[1, 9007199254740993]")
    hard = np.full((4, 2), SENTINEL, dtype=np.int64)
    out = np.full(2, SENTINEL, dtype=np.float32)
    assert decode_array(buf, 0, len(buf) - 1, out, 0, 2, hard)[::3] == (ARRAY_OK, 1)
    assert untouched(hard)


def test_decode_arrays_skips_spans_outside_its_tables():
    raw = b"[1,2] [3]"
    buf = np.frombuffer(raw, dtype=np.uint8)
    starts, ends = np.array([0, 6], dtype=np.int64), np.array([4, 8], dtype=np.int64)
    offsets, counts = np.array([0, 2], dtype=np.int64), np.array([2, 1], dtype=np.int64)
    hard = np.zeros((2, 8, 3), dtype=np.int64)
    order = np.array([1, -1, 2, 0, 7], dtype=np.int64)
    out = np.full(3, SENTINEL, dtype=np.float32)
    status = np.full((2, 4), SENTINEL, dtype=np.int64)
    decode_arrays(buf, starts, ends, offsets, counts, order, out, status, hard)
    assert out.tolist() == [1, 2, 3] and status[:, 0].tolist() == [ARRAY_OK, ARRAY_OK]
    for short in ("starts", "counts", "status", "hard"):  # token 1 has no row in one table: skipped
        args = {"starts": starts, "counts": counts, "status": np.full((2, 4), SENTINEL, np.int64), "hard": hard}
        args[short] = args[short][:1]
        out = np.full(3, SENTINEL, dtype=np.float32)
        decode_arrays(buf, args["starts"], ends, offsets, args["counts"], order, out, args["status"], args["hard"])
        assert out.tolist() == [1, 2, SENTINEL], short
    status = np.full((2, 3), SENTINEL, dtype=np.int64)  # no column for the hard count: nothing is decoded
    out = np.full(3, SENTINEL, dtype=np.float32)
    decode_arrays(buf, starts, ends, offsets, counts, order, out, status, hard)
    assert untouched(out) and untouched(status)


# --------------------------------------------------------------------------- reduce.py


def reduce_tokens(buf, starts, ends, ctxs, out_rows, order, n_rows, row_group, first_row, group_size, **sizes):
    """reduce_arrays with 'max' and scratch/output sized by ``sizes`` (default: what the caller makes)."""
    n_threads = sizes.get("threads", numba.get_num_threads())
    groups = len(group_size)
    width = sizes.get("width", int(ctxs.max()))
    acc = np.zeros((n_threads, groups, width))
    counts = np.zeros((n_threads, groups, width), dtype=np.int64)
    values = np.zeros((sizes.get("value_threads", n_threads), sizes.get("value_width", width)), dtype=np.float32)
    out = np.full((sizes.get("out_rows", len(starts)), groups, sizes.get("out_width", width)), SENTINEL, np.float32)
    status = np.full((len(starts), 4), SENTINEL, dtype=np.int64)
    args = (n_rows, row_group, first_row, group_size, OPS["max"], acc, counts, values, out, status)
    reduce_arrays(buf, starts, ends, ctxs, out_rows, order, *args)
    return out, status


def two_tokens(tail=TAIL):
    raw = b"[1, 2, 3, 4] [5, 6, 7, 8]"
    buf = np.frombuffer(raw + tail, dtype=np.uint8)[: len(raw)]
    ids = np.array([0, 1], dtype=np.int64)
    return buf, np.array([0, 13], dtype=np.int64), np.array([11, 24], dtype=np.int64), np.array([2, 2], np.int64), ids


def test_reduce_arrays_checks_spans_rows_groups_and_scratch():
    buf, starts, ends, ctxs, ids = two_tokens()
    plan = (np.array([0, 0], np.int64), np.array([0], np.int64), np.array([2.0]))
    out, status = reduce_tokens(buf, starts, ends, ctxs, ids, ids, 2, *plan)
    assert out[:, 0].tolist() == [[3, 4], [7, 8]] and status[:, 0].tolist() == [ARRAY_OK, ARRAY_OK]
    bad = [  # (what, changed arguments, tokens reported)
        ("end past the buffer", dict(ends=np.array([11, 25], np.int64)), [1]),
        ("output row past the output", dict(out_rows=np.array([0, 2], np.int64)), [1]),
        ("output row -1", dict(out_rows=np.array([0, -1], np.int64)), [1]),
        ("context wider than the scratch", dict(ctxs=np.array([2, 3], np.int64), width=2), [1]),
        ("context wider than the values' scratch", dict(value_width=1), [0, 1]),
        ("more rows than row_group", dict(n_rows=3), [0, 1]),
        ("a group without a first row", dict(row_group=np.array([0, 1], np.int64)), [0, 1]),
    ]
    for label, change, failing in bad:
        args = dict(buf=buf, starts=starts, ends=ends, ctxs=ctxs, out_rows=ids, order=ids, n_rows=2)
        args.update(row_group=plan[0], first_row=plan[1], group_size=plan[2])
        sizes = {k: change.pop(k) for k in ("width", "value_width") if k in change}
        args.update(change)
        out, status = reduce_tokens(**args, **sizes)
        for i, want in enumerate([[3, 4], [7, 8]]):
            if i in failing:
                assert status[i, 0] == ARRAY_OUT_OF_BOUNDS and untouched(out[i]), (label, i)
            else:
                assert status[i, 0] == ARRAY_OK and out[i, 0].tolist() == want, (label, i)
    # tokens outside the per-token tables are skipped, their status left alone
    order = np.array([1, -1, 5, 0], dtype=np.int64)
    out, status = reduce_tokens(buf, starts, ends[:1], ctxs, ids, order, 2, *plan)
    assert status[0, 0] == ARRAY_OK and untouched(status[1]) and untouched(out[1])
    # a single scratch row: whichever thread has none reports it, the others reduce as ever
    for short in (dict(threads=1), dict(value_threads=1)):
        out, status = reduce_tokens(buf, starts, ends, ctxs, ids, ids, 2, *plan, **short)
        for i, want in enumerate([[3, 4], [7, 8]]):
            assert (status[i, 0] == ARRAY_OK and out[i, 0].tolist() == want) or (
                status[i, 0] == ARRAY_OUT_OF_BOUNDS and untouched(out[i])
            )


def decoded(values, n_rows, ctx, row_group, first_row, group_size, acc_shape, out_shape, op="sum"):
    acc = np.full(acc_shape, 1e300)
    counts = np.full(acc_shape, 99, dtype=np.int64)
    out = np.full(out_shape, SENTINEL, dtype=np.float32)
    reduce_decoded(values, n_rows, ctx, row_group, first_row, group_size, OPS[op], acc, counts, out)
    return out


@pytest.mark.parametrize("op", list(OPS))
def test_reduce_decoded_is_clipped_to_its_arrays(op):
    values = np.arange(1, 13, dtype=np.float32)  # 3 rows of 4
    rows, first, size = np.array([0, 1, 0], np.int64), np.array([0, 1], np.int64), np.array([2.0, 1.0])
    full = decoded(values, 3, 4, rows, first, size, (2, 4), (2, 4), op)
    # values for two rows only: row 2 is left out
    want = decoded(values[:8], 2, 4, rows[:2], first, size, (2, 4), (2, 4), op)
    assert same(decoded(values[:8], 3, 4, rows, first, size, (2, 4), (2, 4), op), want)
    # row_group for two rows only: the same
    assert same(decoded(values, 3, 4, rows[:2], first, size, (2, 4), (2, 4), op), want)
    # a group past first_row / group_size / the scratch: its rows are left out
    for short in ((first[:1], size), (first, size[:1])):
        got = decoded(values, 3, 4, rows, *short, (2, 4), (2, 4), op)
        assert same(got[0], full[0]) and untouched(got[1])
    got = decoded(values, 3, 4, rows, first, size, (1, 4), (2, 4), op)
    assert same(got[0], full[0]) and untouched(got[1])
    # scratch or output narrower than the context: the columns beyond are left out
    for acc_shape, out_shape in (((2, 2), (2, 4)), ((2, 4), (2, 2))):
        got = decoded(values, 3, 4, rows, first, size, acc_shape, out_shape, op)
        assert same(got[:, :2], full[:, :2]) and untouched(got[:, 2:])


# --------------------------------------------------------------------------- rowstats.py


def test_row_stats_is_bounded_by_its_outputs_and_values():
    values = np.array([1, 2, np.nan, 4, 0, 0, np.inf, 5], dtype=np.float32)  # 4 rows of 2

    def run(values, n_rows, lengths):
        outs = [
            np.full(n, SENTINEL, dt) for n, dt in zip(lengths, (np.float64, np.int64, np.int64, np.bool_, np.bool_))
        ]
        row_stats(values, n_rows, 2, *outs)
        return outs

    full = run(values, 4, [4] * 5)
    for k in range(5):
        lengths = [4] * 5
        lengths[k] = 3
        got = run(values, 4, lengths)
        for g, f in zip(got, full):
            assert same(g[:3], f[:3]) and (len(g) == 3 or g[3] == np.asarray(SENTINEL, g.dtype)), k
    got = run(values[:5], 4, [4] * 5)  # values for two whole rows
    for g, f in zip(got, full):
        assert same(g[:2], f[:2]) and np.all(g[2:] == np.asarray(SENTINEL, g.dtype))


# --------------------------------------------------------------------------- structure.py


def test_first_non_number_byte_is_clipped_to_the_buffer():
    buf = np.frombuffer(b'[1, 2, "x"] [3]', dtype=np.uint8)
    assert st.first_non_number_byte(buf, 0, len(buf)) == 7
    assert st.first_non_number_byte(buf, 0, 999) == 7
    assert st.first_non_number_byte(buf, -9, 999) == 0  # from the first byte: '[' is no number byte
    assert st.first_non_number_byte(buf, 11, 999) == 12
    assert st.first_non_number_byte(buf, 12, 999) == 14
    assert st.first_non_number_byte(buf, 14, 999) == -1


def test_write_structural_fills_only_its_buffer():
    buf = np.frombuffer(b'{"a": [1, {"b": 2}]}', dtype=np.uint8)
    every = st.find_structural(buf, 0, len(buf))
    assert st.count_structural(buf, -5, 999) == len(every) == 12
    for room in (0, 1, 5, 12, 20):
        positions = np.full(room + 2, -7, dtype=np.int64)
        written = st.write_structural(buf, -5, 999, positions[:room])
        assert written == min(room, 12)
        assert positions[:written].tolist() == every[:written].tolist()
        assert (positions[written:] == -7).all()  # nothing past what it wrote, nor past its buffer


def test_key_is_reads_only_inside_the_buffer():
    buf = np.frombuffer(b'"data', dtype=np.uint8)
    assert st._key_is(buf, 1, 5, st.KEY_TEXT_DATA)
    assert st._key_is(buf, 1, 50, st.KEY_TEXT_DATA)  # the end clipped to the buffer
    assert not st._key_is(buf, -1, 5, st.KEY_TEXT_DATA)  # a body starting before the buffer spells nothing
    escaped = np.frombuffer(b'"d\\u00', dtype=np.uint8)  # an escape cut by the buffer's end
    assert not st._key_is(escaped, 1, 50, st.KEY_TEXT_DATA)


DOC = b'{"generated_tokens": [{"step": 0, "attention": {"data": [1, 2]}}, {"attention": {"data": [3]}}]}'


def walk(buf, positions, events_rows=None, state=None, depth=st.MAX_DEPTH):
    fresh, kinds, roles = st.new_walker_state()
    state = fresh if state is None else state
    events = np.zeros((len(positions) if events_rows is None else events_rows, 3), dtype=np.int64)
    n = st.walk_structure(buf, positions, state, kinds[:depth], roles[:depth], events)
    return n, events[:n].tolist(), state.tolist()


def test_walk_structure_is_bounded_by_events_positions_and_depth():
    buf = np.frombuffer(DOC, dtype=np.uint8)
    positions = st.find_structural(buf, 0, len(buf))
    n, events, state = walk(buf, positions)
    assert state[st.S_ERROR] == st.WALK_OK and state[st.S_CLOSED] == 1 and state[st.S_TOKENS] == 2
    assert [e[0] for e in events].count(st.EVENT_DATA_OPEN) == 2
    for k in range(len(positions) + 1):  # events for k positions: the walk stops after k
        assert walk(buf, positions, events_rows=k) == walk(buf, positions[:k]), k
    beyond = positions.copy()
    beyond[9] = len(buf) + 3  # a position past the buffer ends the walk there
    assert walk(buf, beyond) == walk(buf, positions[:9])
    before = positions.copy()
    before[9] = -1
    assert walk(buf, before) == walk(buf, positions[:9])
    # nesting limited by the length of kinds and roles
    nested = np.frombuffer(b"[[[[1]]]]", dtype=np.uint8)
    deep = st.find_structural(nested, 0, len(nested))
    n, events, state = walk(nested, deep, depth=3)
    assert (state[st.S_ERROR], state[st.S_ERROR_AT], state[st.S_DEPTH]) == (st.WALK_TOO_DEEP, 3, 3)
    assert walk(nested, deep, depth=4)[2][st.S_ERROR] == st.WALK_OK
    # a state deeper than its arrays: an error before anything is read
    state = st.new_walker_state()[0]
    state[st.S_DEPTH] = 5
    n, events, after = walk(nested, deep, state=state, depth=3)
    assert n == 0 and after[st.S_ERROR] == st.WALK_TOO_DEEP and after[st.S_DEPTH] == 5
    # a state array too short to hold the walker's slots: nothing is walked
    short = np.full(5, SENTINEL, dtype=np.int64)
    assert walk(buf, positions, state=short)[0] == 0 and untouched(short)


# --------------------------------------------------------------------------- analysis/kernels.py


def steps(t=6, c=5, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.uniform(0, 1, (t, c)).astype(np.float32)
    ctx = rng.integers(1, c + 1, t).astype(np.int64)
    for i in range(t):
        data[i, ctx[i] :] = np.nan
    return data, ctx


def filled(shape, dtype=np.float64):
    return np.full(shape, SENTINEL, dtype=dtype)


def check_rows(got, full, n):
    """got[:n] as in the full run, got[n:] untouched."""
    for g, f in zip(got, full):
        assert same(g[:n], f[:n]) and untouched(g[n:])


def test_segment_stats_is_bounded():
    data, ctx = steps()
    labels = np.array([0, 1, -1, 2, 0], dtype=np.int64)

    def run(t_ctx=6, rows=(6, 6, 6), segs=(3, 3, 3)):
        outs = [filled((r, s), dt) for r, s, dt in zip(rows, segs, (np.float64, np.float64, np.int64))]
        K.segment_stats(data, ctx[:t_ctx], labels, *outs)
        return outs

    full = run()
    check_rows(run(t_ctx=4), full, 4)
    for k in range(3):
        rows, segs = [6, 6, 6], [3, 3, 3]
        rows[k] = 5
        check_rows(run(rows=tuple(rows)), full, 5)
        segs[k] = 2
        got = run(segs=tuple(segs))
        for g, f in zip(got, full):
            assert same(g[:, :2], f[:, :2]) and untouched(g[:, 2:])


def test_fit_trend_is_bounded():
    data, _ = steps()
    x = np.arange(6, dtype=np.float64)
    y = data.astype(np.float64)

    def run(lengths=(5, 5, 5, 5)):
        outs = [filled(n, dt) for n, dt in zip(lengths, (np.float64, np.float64, np.float64, np.int64))]
        K.fit_trend(x, y, False, *outs)
        return outs

    full = run()
    for k in range(4):
        lengths = [5, 5, 5, 5]
        lengths[k] = 3
        check_rows(run(tuple(lengths)), full, 3)


def test_distance_profile_and_step_shares_and_row_summary_are_bounded():
    data, ctx = steps()
    # distance_profile accumulates into its outputs
    full = [filled(7), filled(7, np.int64)]
    K.distance_profile(data, ctx, *full)
    cut = [filled(7), filled(7, np.int64)]
    K.distance_profile(data[:4], ctx[:4], *cut)
    got = [filled(7), filled(7, np.int64)]
    K.distance_profile(data, ctx[:4], *got)
    assert all(same(g, c) for g, c in zip(got, cut))
    got = [filled(7), filled(4, np.int64)]  # distances up to 3 only
    K.distance_profile(data, ctx, *got)
    assert same(got[0][:4], full[0][:4]) and untouched(got[0][4:]) and same(got[1], full[1][:4])

    def shares(t_ctx=6, lengths=(6, 6, 6)):
        outs = [filled(n) for n in lengths]
        K.step_shares(data, ctx[:t_ctx], 3, 2, *outs)
        return outs

    full = shares()
    check_rows(shares(t_ctx=4), full, 4)
    for k in range(3):
        lengths = [6, 6, 6]
        lengths[k] = 4
        check_rows(shares(lengths=tuple(lengths)), full, 4)

    def summary(t_ctx=6, lengths=(6,) * 6):
        outs = [filled(n, np.float64 if k < 3 else np.int64) for k, n in enumerate(lengths)]
        K.row_summary(data, ctx[:t_ctx], *outs)
        return outs

    full = summary()
    check_rows(summary(t_ctx=4), full, 4)
    for k in range(6):
        lengths = [6] * 6
        lengths[k] = 4
        check_rows(summary(lengths=tuple(lengths)), full, 4)


def test_scores_are_bounded():
    from halo_fast.analysis.scoring import magnitude_thresholds, row_means

    data, ctx = steps()
    threshold, means = magnitude_thresholds(data, ctx), row_means(data, ctx)
    no_traj = np.empty((0, 0))

    def magnitude(d, c, th, n_final=5, n_peak=5):
        final, peak = filled(n_final), filled(n_peak)
        K.magnitude_scores(d, c, th, 3.0, 50.0, False, no_traj, final, peak)
        return final, peak

    def votes(d, c, m, n_final=5, n_peak=5):
        final, peak = filled(n_final), filled(n_peak)
        K.rolling_votes(d, c, m, 1, no_traj, final, peak)
        return final, peak

    def cumulative(d, c, n_final=5, n_peak=5, traj=no_traj):
        final, peak = filled(n_final), filled(n_peak)
        K.cumulative_scores(d, c, 0.05, 2.0, 1, 1.0, 2.0, True, traj, final, peak)
        return final, peak

    # fewer steps in ctx / threshold / row_mean: as if the capture had only those steps
    assert all(same(a, b) for a, b in zip(magnitude(data, ctx[:4], threshold), magnitude(data[:4], ctx[:4], threshold)))
    assert all(same(a, b) for a, b in zip(magnitude(data, ctx, threshold[:4]), magnitude(data[:4], ctx[:4], threshold)))
    assert all(same(a, b) for a, b in zip(votes(data, ctx[:4], means), votes(data[:4], ctx[:4], means)))
    assert all(same(a, b) for a, b in zip(votes(data, ctx, means[:4]), votes(data[:4], ctx[:4], means)))
    assert all(same(a, b) for a, b in zip(cumulative(data, ctx[:4]), cumulative(data[:4], ctx[:4])))
    # fewer positions in one output: the positions beyond are left out of both
    for run, args in ((magnitude, (data, ctx, threshold)), (votes, (data, ctx, means)), (cumulative, (data, ctx))):
        full = run(*args)
        check_rows(run(*args, n_final=3), full, 3)
        check_rows(run(*args, n_peak=3), full, 3)
    # a trajectory that does not match (steps, positions) is not written
    traj = filled((6, 5))
    cumulative(data, ctx[:4], traj=traj)
    assert untouched(traj)
    # cumulative_one: a column the trajectory lacks is not written; a negative position is in no context
    traj = filled((6, 2))
    score = K.cumulative_one(data, ctx, 0, 0.05, 2.0, 1, 1.0, 2.0, True, traj, 2)
    assert score == K.cumulative_one(data, ctx, 0, 0.05, 2.0, 1, 1.0, 2.0, True, no_traj, -1) and untouched(traj)
    assert np.isnan(K.cumulative_one(data, ctx, -1, 0.05, 2.0, 1, 1.0, 2.0, True, no_traj, -1)).all()


def test_sweep_and_mass_retained_are_bounded():
    data, ctx = steps()
    grid = [np.array([0.0, 0.05, 0.2]), np.array([1.0, 2.0, 0.5]), np.array([0, 1, 2], np.int64)]
    grid += [np.array([20.0, 1.0, 0.0]), np.array([10.0, 2.0, 1.0])]

    def sweep(grid, rows=(3, 3), cols=(5, 5)):
        final, peak = filled((rows[0], cols[0])), filled((rows[1], cols[1]))
        K.sweep_cumulative(data, ctx, *grid, True, final, peak)
        return final, peak

    full = sweep(grid)
    for k in range(5):  # one grid array with two points only
        short = list(grid)
        short[k] = short[k][:2]
        check_rows(sweep(short), full, 2)
    check_rows(sweep(grid, rows=(2, 3)), full, 2)
    for cols in ((3, 5), (5, 3)):
        got = sweep(grid, cols=cols)
        for g, f in zip(got, full):
            assert same(g[:, :3], f[:, :3]) and untouched(g[:, 3:])

    kept = np.random.default_rng(2).random((3, 4)) < 0.5

    def mass(t_ctx=6, shape=(3, 6)):
        out = filled(shape)
        K.mass_retained(data, ctx[:t_ctx], kept, out)
        return out

    full = mass()
    got = mass(shape=(2, 6))  # fewer kept-sets in the output
    assert same(got, full[:2])
    for got in (mass(t_ctx=4), mass(shape=(3, 4))):  # fewer steps in ctx, or in the output
        assert same(got[:, :4], full[:, :4]) and untouched(got[:, 4:])
