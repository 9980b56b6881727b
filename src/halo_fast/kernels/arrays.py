"""Decode JSON number arrays (attention ``data``) straight into a float32 buffer.

``decode_array`` parses one array span serially; ``decode_arrays`` runs it over
many spans in parallel, one span per task, each writing its own slice of the one
preallocated output. Every read is bounded by the span's closing bracket and
every write by the count the caller reserved, so no input can make a kernel
touch memory outside its buffers; and before reading, each kernel checks that
the span, the output slice and every per-span array index lie inside the arrays
it was given (ARRAY_OUT_OF_BOUNDS otherwise: a caller's bug, never a file's), so
no arguments can either. These checks cost a few compares per span, none per value.
"""

from __future__ import annotations

from numba import prange

from .floats import HARD, OK, TRUNCATED, byte_view, parse_number
from .jit import kernel

# status codes of decode_array (column 0 of the status table)
ARRAY_OK = 0
ARRAY_BAD_NUMBER = 1  # not a JSON number or literal where a value must stand
ARRAY_BAD_SEPARATOR = 2  # something other than ',' or ']' after a value
ARRAY_TOO_MANY = 3  # more values than the shape says
ARRAY_TOO_FEW = 4  # fewer values than the shape says
ARRAY_TRAILING_COMMA = 5
ARRAY_TRUNCATED = 6
ARRAY_OUT_OF_BOUNDS = 8  # span or output slice outside the given arrays (7 is kernels.reduce's ARRAY_HAS_HARD)

MESSAGES = {
    ARRAY_BAD_NUMBER: "malformed number in attention data",
    ARRAY_BAD_SEPARATOR: "expected ',' or ']' after a number in attention data",
    ARRAY_TOO_MANY: "attention data has more values than its shape",
    ARRAY_TOO_FEW: "attention data has fewer values than its shape",
    ARRAY_TRAILING_COMMA: "trailing comma in attention data",
    ARRAY_TRUNCATED: "attention data ends inside a number",
    ARRAY_OUT_OF_BOUNDS: "internal error: an attention span or its output lies outside the decoder's buffers",
}

HARD_SLOTS = 8  # hard numbers remembered per span; more trigger a serial re-run


@kernel()
def decode_array(buf, start, end, out, out_start, count, hard):
    """Parse the array buf[start] == '[' ... buf[end] == ']' into out[out_start:out_start+count].

    ``hard`` (int64[k, 3]) receives (byte start, byte end, value index) of numbers the
    Python reference must finish. Returns (code, byte position, values parsed, hard count).
    ARRAY_OUT_OF_BOUNDS, reading and writing nothing, unless 0 <= start, end < len(buf)
    (the ']' is in buf) and out[out_start:out_start+count] lies inside out.
    """
    if start < 0 or end >= buf.shape[0] or out_start < 0 or count > out.shape[0] - out_start:
        return ARRAY_OUT_OF_BOUNDS, start, 0, 0
    slots = hard.shape[0] if hard.shape[1] >= 3 else 0
    # Whitespace loops are written out: a helper call per value costs twice the parse time.
    data = byte_view(buf)  # reads bounded by end < len(buf), as in parse_value
    p = start + 1
    while p < end and (data[p] == 32 or data[p] == 10 or data[p] == 13 or data[p] == 9):
        p += 1
    n = 0
    n_hard = 0
    if p == end:
        if count != 0:
            return ARRAY_TOO_FEW, p, 0, 0
        return ARRAY_OK, p, 0, 0
    while True:
        if n >= count:
            return ARRAY_TOO_MANY, p, n, n_hard
        value, after, status = parse_number(data, p, end)
        if status != OK:
            if status == HARD:
                if n_hard < slots:
                    hard[n_hard, 0] = p
                    hard[n_hard, 1] = after
                    hard[n_hard, 2] = n
                n_hard += 1
            elif status == TRUNCATED:
                return ARRAY_TRUNCATED, after, n, n_hard
            else:
                return ARRAY_BAD_NUMBER, after, n, n_hard
        out[out_start + n] = value
        n += 1
        p = after
        while p < end and (data[p] == 32 or data[p] == 10 or data[p] == 13 or data[p] == 9):
            p += 1
        if p == end:
            break
        if data[p] != 44:  # ,
            return ARRAY_BAD_SEPARATOR, p, n, n_hard
        p += 1
        while p < end and (data[p] == 32 or data[p] == 10 or data[p] == 13 or data[p] == 9):
            p += 1
        if p == end:
            return ARRAY_TRAILING_COMMA, p, n, n_hard
    if n != count:
        return ARRAY_TOO_FEW, end, n, n_hard
    return ARRAY_OK, end, n, n_hard


@kernel(parallel=True)
def decode_arrays(buf, starts, ends, out_starts, counts, order, out, status, hard):
    """Decode spans ``order[k]`` in parallel; status[i] = (code, position, parsed, hard count).

    An ``i`` outside any per-span array (starts, ends, out_starts, counts, hard, status) is skipped.
    """
    n_spans = min(starts.shape[0], ends.shape[0], out_starts.shape[0], counts.shape[0], hard.shape[0])
    n_spans = min(n_spans, status.shape[0]) if status.shape[1] >= 4 else 0
    for k in prange(order.shape[0]):
        i = order[k]
        if i >= 0 and i < n_spans:
            code, position, parsed, n_hard = decode_array(
                buf, starts[i], ends[i], out, out_starts[i], counts[i], hard[i]
            )
            status[i, 0] = code
            status[i, 1] = position
            status[i, 2] = parsed
            status[i, 3] = n_hard
