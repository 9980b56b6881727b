"""Finding one byte value in a span: 32-byte vector compares, and the span split over threads.

Pass 1 of the JSON decoder (formats.json_scan) steps over each attention data array
by looking for its closing bracket, and that search is most of pass 1's time.
``find_byte_split`` cuts the span into one part per thread; each part is searched
128 bytes at a time, four 32-byte vector compares whose results become one bit mask
(LLVM's ``icmp`` on ``<32 x i8>`` bitcast to ``i32``: two ``pcmpeqb``/``pmovmskb``
with SSE2 only, one ``vpcmpeqb`` with AVX-512, as the generated code shows; other
targets lower the same IR their own way), and the first set bit is the answer. The first part that holds the byte gives it, so the result is
the first position in the whole span, as a serial search would give.

``skip_to_stop`` finds the first of several bytes the same way, 32 at a time: where a
number of a row that ``reduce`` leaves out ends (a separator, whitespace or ``]``),
six compares or-ed into one mask; ``find_stop`` is its entry for the tests.

The vectors are plain LLVM IR, with no instruction set named: LLVM lowers them for
the CPU numba compiles for, and numba keys its cache on that CPU (name and features:
``codegen.magic_tuple()``), so a cache written on another CPU is compiled again, not
loaded. ``find_byte(..., vector=False)`` is the byte-by-byte twin the tests hold the
vector path to. Under NUMBA_BOUNDSCHECK=1 both are the byte loop: the vector load
reads through a raw pointer, which no bounds check sees.

Every read stays inside the buffer: spans are clipped to it, and a vector step is
taken only where its 128 (or 32) bytes lie before the span's end.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import config
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from .floats import byte_view
from .jit import kernel

LANES = 32  # bytes per vector compare
STEP = 4 * LANES  # bytes per step of the vector loop

_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_BYTES = ir.VectorType(_I8, LANES)


@intrinsic
def _equal_mask(typingctx, data, index, byte):
    """Bit i set iff data[index + i] == byte, for the 32 bytes at index (unchecked: index + 32 <= the end)."""
    if data != types.CPointer(types.uint8) or not isinstance(index, types.Integer):
        return None
    if not isinstance(byte, types.Integer):
        return None
    signature = types.uint64(data, index, byte)

    def codegen(context, builder, sig, args):
        offset = context.cast(builder, args[1], sig.args[1], types.intp)
        pointer = builder.bitcast(builder.gep(args[0], [offset]), _BYTES.as_pointer())
        loaded = builder.load(pointer, align=1)
        value = builder.trunc(context.cast(builder, args[2], sig.args[2], types.int64), _I8)
        splat = builder.insert_element(ir.Constant(_BYTES, ir.Undefined), value, ir.Constant(_I32, 0))
        splat = builder.shuffle_vector(
            splat, ir.Constant(_BYTES, ir.Undefined), ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
        )
        bits = builder.bitcast(builder.icmp_unsigned("==", loaded, splat), _I32)
        return builder.zext(bits, _I64)

    return signature, codegen


@kernel(inline="always")
def _find_bytes(data, lo, hi, byte):
    """First p in [lo, hi) with data[p] == byte, else -1: one byte at a time."""
    for p in range(lo, hi):
        if data[p] == byte:
            return p
    return -1


@kernel(inline="always")
def _find_vectors(data, lo, hi, byte):
    """_find_bytes, 128 bytes a step: two 64-bit masks from four vector compares, one test per step."""
    p = lo
    while p + STEP <= hi:
        first = _equal_mask(data, p, byte) | (_equal_mask(data, p + LANES, byte) << np.uint64(LANES))
        second = _equal_mask(data, p + 2 * LANES, byte) | (_equal_mask(data, p + 3 * LANES, byte) << np.uint64(LANES))
        if (first | second) != 0:
            if first != 0:
                return p + np.int64(trailing_zeros(first))
            return p + 2 * LANES + np.int64(trailing_zeros(second))
        p += STEP
    return _find_bytes(data, p, hi, byte)


# Where a number of a row left out ends (kernels.reduce steps over those numbers unparsed): at a
# separator, JSON whitespace, or a ']' (which the caller reports).
STOP_BYTES = (44, 32, 10, 13, 9, 93)  # , space \n \r \t ]


@intrinsic
def _stop_mask(typingctx, data, index):
    """Bit i set iff data[index + i] is one of STOP_BYTES, for the 32 bytes at index (unchecked:
    index + 32 <= the end)."""
    if data != types.CPointer(types.uint8) or not isinstance(index, types.Integer):
        return None
    signature = types.uint64(data, index)

    def codegen(context, builder, sig, args):
        offset = context.cast(builder, args[1], sig.args[1], types.intp)
        pointer = builder.bitcast(builder.gep(args[0], [offset]), _BYTES.as_pointer())
        loaded = builder.load(pointer, align=1)
        hits = None
        for byte in STOP_BYTES:
            equal = builder.icmp_unsigned("==", loaded, ir.Constant(_BYTES, [byte] * LANES))
            hits = equal if hits is None else builder.or_(hits, equal)
        return builder.zext(builder.bitcast(hits, _I32), _I64)

    return signature, codegen


@kernel(inline="always")
def _stop_bytes(data, lo, hi):
    """First p in [lo, hi) with data[p] one of STOP_BYTES, else hi: one byte at a time."""
    for p in range(lo, hi):
        b = data[p]
        if b == 44 or b == 32 or b == 10 or b == 13 or b == 9 or b == 93:
            return p
    return hi


@kernel(inline="always")
def _stop_vectors(data, lo, hi):
    """_stop_bytes, 32 bytes a step (a number of the JS shape takes one or two)."""
    p = lo
    while p + LANES <= hi:
        mask = _stop_mask(data, p)
        if mask != 0:
            return p + np.int64(trailing_zeros(mask))
        p += LANES
    return _stop_bytes(data, p, hi)


# raw vector loads are unchecked: NUMBA_BOUNDSCHECK=1 runs search byte by byte, through checked indexing
_find_fast = _find_bytes if config.BOUNDSCHECK else _find_vectors
skip_to_stop = _stop_bytes if config.BOUNDSCHECK else _stop_vectors


@kernel()
def find_stop(buf, start, stop, vector):
    """First p in [start, stop) (clipped to buf) with buf[p] one of STOP_BYTES, else the clipped stop;
    ``vector``: the vector path (the tests' entry to both)."""
    lo = max(start, 0)
    hi = min(stop, buf.shape[0])
    if hi <= lo:
        return lo
    if vector:
        return skip_to_stop(byte_view(buf), lo, hi)
    return _stop_bytes(buf, lo, hi)


@kernel()
def find_byte(buf, start, stop, byte, vector):
    """First p in [start, stop) (clipped to buf) with buf[p] == byte, else -1; ``vector``: the vector path."""
    lo = max(start, 0)
    hi = min(stop, buf.shape[0])
    if vector:
        return _find_fast(byte_view(buf), lo, hi, byte)
    return _find_bytes(buf, lo, hi, byte)


@kernel(parallel=True)
def find_byte_split(buf, start, stop, byte, found):
    """find_byte's vector path over [start, stop) cut into len(found) parts searched side by side.

    found[k] receives part k's first position (or -1); the result is the first part's
    that found one. Each part is searched to its end or its first match, so a match
    early in the span leaves the later parts' threads searching on: callers size the
    span to where they expect the byte.
    """
    lo = max(start, 0)
    hi = min(stop, buf.shape[0])
    parts = found.shape[0]
    if parts == 0 or hi <= lo:
        return -1
    data = byte_view(buf)
    length = -(-(hi - lo) // parts)
    for k in prange(parts):
        part_lo = min(lo + k * length, hi)
        found[k] = _find_fast(data, part_lo, min(part_lo + length, hi), byte)
    for k in range(parts):
        if found[k] >= 0:
            return found[k]
    return -1
