"""Exact JSON number parsing into float32, as numba kernels.

The contract is bit-exactness with ``np.asarray(json.loads(text), np.float32)``:
a decimal is first rounded to the nearest double (what ``json.loads`` does), then
the double to the nearest float32 (what numpy does). So every number goes through
a correctly rounded double:

* Clinger's fast path when the digits fit in 53 bits and the power of ten is exact;
* otherwise, since only the float32 is kept, one multiply by the nearest double of
  the power of ten (``float32_shortcut``): within a few double ulps of the exact
  double, so it gives the same float32 unless it lies next to the midpoint between
  two float32 values, which is checked;
* otherwise the Eisel-Lemire algorithm (128-bit truncated powers of five);
* numbers it cannot settle (more significant digits than a uint64 holds, integers
  above 2**53, or the rare ambiguous Eisel-Lemire product) are reported as "hard" and
  finished in Python by the reference itself, so exactness never rests on a guess.

The digits are read eight bytes at a time (SWAR); a number written "0." + at most 23 digits, the
shape of every JavaScript attention weight, takes ``_fraction_fast``: three chunks at fixed offsets,
no loop over the digits, and anything it declines takes the general path.

All arithmetic on mantissas stays in uint64 (numba would otherwise promote mixed
signed/unsigned arithmetic to float64).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import config
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros
from numba.extending import intrinsic

from .jit import kernel
from .pow5 import LARGEST_POWER, SMALLEST_POWER, build_table

POW5_HIGH, POW5_LOW = build_table()
POW10_EXACT = np.array([10.0**i for i in range(23)], dtype=np.float64)
# POW2[k] = 2**(k - 1075): scales a 53-bit integer mantissa to a double with biased exponent k.
POW2 = np.array([2.0 ** (k - 1075) for k in range(2047)], dtype=np.float64)
POW2[0] = 2.0**-1074

U0 = np.uint64(0)
U1 = np.uint64(1)
U3 = np.uint64(3)
U9 = np.uint64(9)
U10 = np.uint64(10)
U32 = np.uint64(32)
U52 = np.uint64(52)
U63 = np.uint64(63)
MASK32 = np.uint64(0xFFFFFFFF)
ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
PRECISION_MASK = np.uint64(0x1FF)  # ALL_ONES >> 55: 52 mantissa bits + 3
HIDDEN_BIT = np.uint64(1 << 52)
TWO_HIDDEN = np.uint64(2 << 52)
MAX_CLINGER_MANTISSA = np.uint64(1 << 53)
# Clinger's path is taken only below 10**15 (exact either way): the 16- and 17-digit
# numbers float64 writers mostly print then all take Eisel-Lemire, a predictable
# branch instead of a coin flip on which side of 2**53 each one falls.
MAX_CLINGER_PREFERRED = np.uint64(10**15)
# float32_shortcut: the nearest double of 10**q for SHORTCUT_MIN_Q <= q <= SHORTCUT_MAX_Q (Python's
# float() of a decimal literal is correctly rounded), and how near the float32 midpoint it declines
SHORTCUT_MIN_Q = -80
SHORTCUT_MAX_Q = 22
POW10_NEAREST = np.array([float(f"1e{q}") for q in range(SHORTCUT_MIN_Q, SHORTCUT_MAX_Q + 1)], dtype=np.float64)
SHORTCUT_MARGIN = 16  # doubles either side of a float32 midpoint (the product is within 7 of the exact double)
BELOW_FLOAT32_MASK = np.uint64((1 << 29) - 1)  # a double's 29 mantissa bits below a float32's
FLOAT32_MIDPOINT = 1 << 28  # those bits at the midpoint between two float32 values
SHORTCUT_MIN_EXPONENT = 1023 - 125  # biased double exponents whose values are float32 normals, with room
SHORTCUT_MAX_EXPONENT = 1023 + 126
I64_LIMIT = np.uint64(1 << 63)
MAX_BEFORE_DIGIT = np.uint64(10**18)  # w * 10 + d still exact in a uint64
U100000000 = np.uint64(10**8)
POW10_U64 = np.array([10**i for i in range(9)], dtype=np.uint64)
# MAX_BEFORE_DIGITS[n]: w * 10**n + n digits stays below 10**19, and the digit loop
# (which takes digits while w < MAX_BEFORE_DIGIT) would take all n of them
MAX_BEFORE_DIGITS = np.array([10 ** (19 - n) for n in range(9)], dtype=np.uint64)
ZEROS = np.uint64(0x3030303030303030)
SEVENTY_SIXES = np.uint64(0x7676767676767676)
HIGH_BITS = np.uint64(0x8080808080808080)
U8 = np.uint64(8)
U56 = np.uint64(56)
LOW_BYTE_PAIRS = np.uint64(0x000000FF000000FF)
MUL_100_1000000 = np.uint64(100 + (1000000 << 32))
MUL_1_10000 = np.uint64(1 + (10000 << 32))
NOT_ONE = np.uint64(0xFFFFFFFFFFFFFFFE)
NOT_HIDDEN = np.uint64(0xFFFFFFFFFFFFFFFF ^ (1 << 52))

# parse_value status codes
OK = 0
HARD = 1  # valid JSON number that the Python reference must finish
BAD_NUMBER = -1  # not a JSON number / literal
TRUNCATED = -2  # the span ended inside a number or literal

NAN32 = np.float32(np.nan)
INF32 = np.float32(np.inf)


@intrinsic
def _mul_64x64(typingctx, a, b):
    """Full 128-bit product of two uint64, as (high, low): one machine multiply."""
    if a != types.uint64 or b != types.uint64:
        return None
    signature = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context, builder, sig, args):
        wide = ir.IntType(128)
        product = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        high = builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), ir.IntType(64))
        low = builder.trunc(product, ir.IntType(64))
        return context.make_tuple(builder, sig.return_type, (high, low))

    return signature, codegen


@intrinsic
def _bits_of_double(typingctx, x):
    """The IEEE-754 bits of a float64, as a uint64 (a register move)."""
    if x != types.float64:
        return None
    signature = types.uint64(types.float64)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return signature, codegen


@kernel(inline="always")
def float32_shortcut(w, q):
    """float32 of the double nearest to w * 10**q (w uint64 > 0), by one multiply: returns (ok, value).

    The product of float64(w) and the nearest double of 10**q carries three roundings,
    each of at most half a double ulp (relative 2**-53), so it lies within 2.5 ulps of
    w * 10**q: counted in doubles, within 7 of the correctly rounded one, even where the
    two lie on either side of a power of two (ulps half as large below). A float32 changes only
    where a double crosses the midpoint between two float32 values (low 29 mantissa
    bits 0x10000000): if no double within SHORTCUT_MARGIN ulps of the product is one,
    the exact double rounds to the same float32. ok is False otherwise (about one
    number in 2**24), and outside the float32 normal range: Eisel-Lemire decides those.
    """
    if q < SHORTCUT_MIN_Q or q > SHORTCUT_MAX_Q or w >= I64_LIMIT:
        return False, NAN32
    value = np.float64(np.int64(w)) * POW10_NEAREST[q - SHORTCUT_MIN_Q]
    bits = _bits_of_double(value)
    exponent = np.int64(bits >> U52)
    if exponent < SHORTCUT_MIN_EXPONENT or exponent > SHORTCUT_MAX_EXPONENT:
        return False, NAN32
    if abs(np.int64(bits & BELOW_FLOAT32_MASK) - FLOAT32_MIDPOINT) <= SHORTCUT_MARGIN:
        return False, NAN32
    return True, np.float32(value)


@kernel(inline="always")  # a call spilled the parser's registers
def eisel_lemire(w, q):
    """Correctly rounded double nearest to w * 10**q (w uint64 > 0).

    Returns (ok, value); ok is False in the rare case the truncated product cannot
    decide the rounding, and the caller must use an exact slow path.
    """
    if q < SMALLEST_POWER:
        return True, 0.0
    if q > LARGEST_POWER:
        return True, np.inf
    lz = np.int64(leading_zeros(w))  # one instruction (w > 0)
    w = w << np.uint64(lz)
    index = q - SMALLEST_POWER
    high, low = _mul_64x64(w, POW5_HIGH[index])
    if (high & PRECISION_MASK) == PRECISION_MASK:
        high2, _low2 = _mul_64x64(w, POW5_LOW[index])
        new_low = low + high2
        if high2 > new_low:
            high += U1
        low = new_low
    if low == ALL_ONES and (q < -27 or q > 55):
        return False, 0.0
    upperbit = high >> U63
    shift = upperbit + U9
    mantissa = high >> shift
    power2 = (((152170 + 65536) * q) >> 16) + 63 + np.int64(upperbit) - lz + 1023
    if power2 <= 0:
        if -power2 + 1 >= 64:
            return True, 0.0
        mantissa >>= np.uint64(-power2 + 1)
        mantissa += mantissa & U1
        mantissa >>= U1
        # mantissa < 2**52: subnormal; == 2**52: rounded up to the smallest normal
        return True, np.float64(mantissa) * POW2[0]
    if low <= U1 and q >= -4 and q <= 23 and (mantissa & U3) == U1:
        if (mantissa << shift) == high:
            mantissa &= NOT_ONE
    mantissa += mantissa & U1
    mantissa >>= U1
    if mantissa >= TWO_HIDDEN:
        mantissa = HIDDEN_BIT
        power2 += 1
    if power2 >= 0x7FF:
        return True, np.inf
    # mantissa carries its hidden bit here: value = mantissa * 2**(power2 - 1075)
    return True, np.float64(mantissa) * POW2[power2]


def _is_bytes(buf):
    return (isinstance(buf, types.Array) and buf.dtype == types.uint8) or buf == types.CPointer(types.uint8)


@intrinsic
def _raw_load_u64(typingctx, buf, index):
    """Eight bytes of a uint8 array (or of a byte_view) at any offset, as one uint64 (little-endian machines).

    Unchecked -- no bounds check even under NUMBA_BOUNDSCHECK=1: callers guarantee
    index + 8 <= the end they may read to (see load_u64).
    """
    if not (_is_bytes(buf) and isinstance(index, types.Integer)):
        return None
    signature = types.uint64(buf, index)

    def codegen(context, builder, sig, args):
        if isinstance(sig.args[0], types.Array):
            data = context.make_array(sig.args[0])(context, builder, args[0]).data
        else:
            data = args[0]
        offset = context.cast(builder, args[1], sig.args[1], types.intp)
        pointer = builder.bitcast(builder.gep(data, [offset]), ir.IntType(64).as_pointer())
        return builder.load(pointer, align=1)

    return signature, codegen


@intrinsic
def _data_pointer(typingctx, buf):
    """The first byte of a contiguous uint8 array, as a raw pointer (no reference count)."""
    if not (isinstance(buf, types.Array) and buf.dtype == types.uint8 and buf.layout == "C"):
        return None
    signature = types.CPointer(types.uint8)(buf)

    def codegen(context, builder, sig, args):
        return context.make_array(sig.args[0])(context, builder, args[0]).data

    return signature, codegen


@kernel(inline="always")
def _same_array(buf):
    return buf


@kernel(inline="always")
def _checked_load_u64(buf, index):
    """load_u64 byte by byte through ordinary (bounds-checked) indexing: the NUMBA_BOUNDSCHECK=1 version."""
    value = U0
    for k in range(8):
        value |= np.uint64(buf[index + k]) << np.uint64(8 * k)
    return value


# The hot loops read bytes through byte_view(buf): a raw pointer, which numba
# indexes without the negative-index fix-up, and which -- unlike an array handed
# to an inlined function -- carries no reference count (that cost an atomic
# incref/decref pair per number: numba cannot prune them across the parser's many
# exits). Every read stays below an `end` that is at most the buffer's length:
# parse_value clamps it, decode_array and reduce_array check their span against
# the buffer before reading. Single bytes are read only at p < end; the eight-byte
# reads of load_u64 only where p + 8 <= end (_take_digits: one compare per read;
# the last bytes before end go through the byte-by-byte loop), so neither reaches
# past the buffer, nor past a view's end into the bytes of the buffer it was cut from.
#
# Under NUMBA_BOUNDSCHECK=1 the view is the array itself and load_u64 reads its eight
# bytes one by one through ordinary indexing, so checked runs check every read --
# the raw intrinsic would not be checked (it sees only a pointer).
byte_view = _same_array if config.BOUNDSCHECK else _data_pointer
load_u64 = _checked_load_u64 if config.BOUNDSCHECK else _raw_load_u64


@kernel(inline="always")
def _eight_digit_value(chunk):
    """Value of eight digit values (0..9) packed little-endian in a uint64, first digit lowest (SWAR)."""
    chunk = (chunk * U10) + (chunk >> np.uint64(8))
    chunk = (
        ((chunk & LOW_BYTE_PAIRS) * MUL_100_1000000) + (((chunk >> np.uint64(16)) & LOW_BYTE_PAIRS) * MUL_1_10000)
    ) >> U32
    return chunk & MASK32


@kernel(inline="always")
def _non_digit_bytes(values):
    """The high bit of each byte of ``values`` (a chunk XOR ZEROS) that was not a digit, others clear.

    A digit byte is 0..9 here, any other byte 10 or more: adding 0x76 sets the high bit of the
    latter without a carry out of the former, and OR-ing ``values`` keeps bytes above 0x7F flagged.
    """
    return ((values + SEVENTY_SIXES) | values) & HIGH_BITS


@kernel(inline="always")
def _leading_digits_value(values, n):
    """Value of the first n (0..8) digit bytes of ``values`` (a chunk XOR ZEROS): those bytes moved to
    the top, so the bytes after them, digits or not, are shifted out (two shifts: one of 64 is undefined)."""
    return _eight_digit_value((values << (U56 - (n << U3))) << U8)


@kernel(inline="always")
def _take_digits(buf, p, end, w):
    """Fold the digits at buf[p:] into w, eight bytes at a time: returns (w, p, digits taken).

    Stops early -- leaving the rest to the digit-by-digit loop -- within eight bytes of
    end or when w grows too large to take every digit exactly; where it takes digits it
    gives exactly what that loop would. The last, partial block is counted with one
    trailing-zero count instead of a loop whose exit depends on each number's length.
    """
    taken = 0
    while p + 8 <= end:
        values = load_u64(buf, p) ^ ZEROS  # a digit byte becomes 0..9, any other byte 10 or more
        n = trailing_zeros(_non_digit_bytes(values)) >> U3  # leading digit bytes, 0..8
        if w >= MAX_BEFORE_DIGITS[n]:
            break
        if n == U8:
            w = w * U100000000 + _eight_digit_value(values)
            taken += 8
            p += 8
        else:
            w = w * POW10_U64[n] + _leading_digits_value(values, n)
            taken += np.int64(n)
            p += np.int64(n)
            break
    return w, p, taken


FRACTION_SPAN = 26  # bytes from a number's start the fraction fast path reads: "0." and three chunks


@kernel(inline="always")
def _fraction_fast(buf, p):
    """The digits of a number "0.ddd..." at buf[p] as (ok, w, next position, digits after the point).

    The shape JavaScript writes every attention weight in (``0.0008848331053741276``): the
    24 bytes after "0." are read as three chunks at fixed offsets, the digit run's length comes
    from their non-digit masks, and its value from the chunks' SWAR values, with no loop
    over the digits. ok is False -- the general path decides -- where the run is empty,
    longer than 23 digits, or followed by an exponent, or where its value reaches 10**19 (more
    digits than a uint64 holds exactly). Where ok, w and the position are what the general
    path's digit loops give (the same integer of the same digits, below 10**19).

    Unchecked: the caller guarantees buf[p] == "0", buf[p + 1] == "." and p + FRACTION_SPAN <= the
    end it may read to; the last byte read, after at most 23 digits, is buf[p + 25].
    """
    start = p + 2
    first = load_u64(buf, start) ^ ZEROS
    second = load_u64(buf, start + 8) ^ ZEROS
    third = load_u64(buf, start + 16) ^ ZEROS
    first_mask = _non_digit_bytes(first)
    second_mask = _non_digit_bytes(second)
    third_mask = _non_digit_bytes(third)
    if (first_mask | second_mask) == U0:
        if third_mask == U0:
            return False, U0, p, 0
        n = trailing_zeros(third_mask) >> U3
        high = _eight_digit_value(first) * U100000000 + _eight_digit_value(second)
        if high >= MAX_BEFORE_DIGITS[n]:  # high * 10**n + n digits would reach 10**19
            return False, U0, p, 0
        w = high * POW10_U64[n] + _leading_digits_value(third, n)
        digits = 16 + np.int64(n)
    elif first_mask == U0:
        n = trailing_zeros(second_mask) >> U3
        w = _eight_digit_value(first) * POW10_U64[n] + _leading_digits_value(second, n)
        digits = 8 + np.int64(n)
    else:
        n = trailing_zeros(first_mask) >> U3
        if n == U0:
            return False, U0, p, 0
        w = _leading_digits_value(first, n)
        digits = np.int64(n)
    after = start + digits
    if (buf[after] | 32) == 101:  # e or E: an exponent follows
        return False, U0, p, 0
    return True, w, after, digits


@kernel()
def fraction_fast(buf, p, end):
    """_fraction_fast at buf[p] where its preconditions hold (the tests' entry), else (False, 0, p, 0)."""
    end = min(end, buf.shape[0])
    if p < 0 or p + FRACTION_SPAN > end or buf[p] != 48 or buf[p + 1] != 46:
        return False, U0, p, 0
    return _fraction_fast(byte_view(buf), p)


@kernel(inline="always")
def _is_digit(b):
    return b >= 48 and b <= 57


@kernel(inline="always")
def _match(buf, p, end, word):
    """True if buf[p:p+len(word)] == word and it fits before end."""
    n = len(word)
    if p + n > end:
        return False
    for i in range(n):
        if buf[p + i] != word[i]:
            return False
    return True


LIT_NULL = np.frombuffer(b"null", dtype=np.uint8).copy()
LIT_NAN = np.frombuffer(b"NaN", dtype=np.uint8).copy()
LIT_INFINITY = np.frombuffer(b"Infinity", dtype=np.uint8).copy()


@kernel(inline="always")
def parse_value(buf, p, end):
    """Parse one JSON number or literal starting at buf[p], not reading at or past end.

    Returns (value: float32, next_position, status) with status OK, HARD (valid,
    but finish it with the reference), BAD_NUMBER or TRUNCATED. An ``end`` past the
    buffer is taken as its length (the parse never reads beyond ``buf``, even when
    ``buf`` is a view of a larger buffer); a negative ``p`` is BAD_NUMBER.
    """
    end = min(end, buf.shape[0])
    if p < 0:
        return NAN32, p, BAD_NUMBER
    return parse_number(byte_view(buf), p, end)


@kernel(inline="always")
def parse_number(buf, p, end):
    """parse_value on a byte_view (or the array): what loops that hold a byte_view call.

    Unchecked: the caller guarantees 0 <= p and end <= the buffer's length (a
    byte_view has no length to check against).
    """
    if p >= end:
        return NAN32, p, TRUNCATED
    b = buf[p]
    negative = False
    if not _is_digit(b):  # the common case (a digit) skips every test below
        if b == 45:  # -
            negative = True
            p += 1
            if p >= end:
                return NAN32, p, TRUNCATED
            b = buf[p]
            if b == 73:
                if _match(buf, p, end, LIT_INFINITY):
                    return -INF32, p + 8, OK
                return NAN32, p, BAD_NUMBER
            if not _is_digit(b):
                return NAN32, p, BAD_NUMBER
        elif b == 110:  # n
            if _match(buf, p, end, LIT_NULL):
                return NAN32, p + 4, OK
            return NAN32, p, BAD_NUMBER
        elif b == 78:  # N
            if _match(buf, p, end, LIT_NAN):
                return NAN32, p + 3, OK
            return NAN32, p, BAD_NUMBER
        elif b == 73:  # I
            if _match(buf, p, end, LIT_INFINITY):
                return INF32, p + 8, OK
            return NAN32, p, BAD_NUMBER
        else:
            return NAN32, p, BAD_NUMBER

    if b == 48 and p + FRACTION_SPAN <= end and buf[p + 1] == 46:  # "0." with room: the fast path
        fast, w, after, digits = _fraction_fast(buf, p)
        if fast:
            # a _finish of its own: the constants below let the compiler drop its tests
            return _finish(w, -digits, negative, False, False, after)
    w, p, exponent, is_integer, too_many, status = _general_digits(buf, p, end, b)
    if status != OK:
        return NAN32, p, status
    return _finish(w, exponent, negative, is_integer, too_many, p)


@kernel(inline="always")
def _general_digits(buf, p, end, b):
    """The digits, point and exponent of a number whose first digit b is at buf[p], one chunk or byte
    at a time: (w, next position, exponent, is_integer, too_many, status OK / BAD_NUMBER / TRUNCATED)."""
    w = U0
    too_many = False  # more digits than a uint64 holds exactly: the reference finishes it
    exponent = 0
    if b == 48:  # a leading 0 stands alone
        p += 1
    else:
        w, p, _taken = _take_digits(buf, p, end, w)
        while p < end and _is_digit(buf[p]):
            if w < MAX_BEFORE_DIGIT:
                w = w * U10 + np.uint64(buf[p] - 48)
            else:
                too_many = True
            p += 1
    is_integer = True
    if p < end and buf[p] == 46:  # .
        is_integer = False
        p += 1
        if p >= end:
            return w, p, exponent, False, False, TRUNCATED
        if not _is_digit(buf[p]):
            return w, p, exponent, False, False, BAD_NUMBER
        w, p, taken = _take_digits(buf, p, end, w)
        exponent -= taken
        while p < end and _is_digit(buf[p]):
            if w < MAX_BEFORE_DIGIT:
                w = w * U10 + np.uint64(buf[p] - 48)
                exponent -= 1
            else:
                too_many = True
            p += 1
    if p < end and (buf[p] == 101 or buf[p] == 69):  # e E
        is_integer = False
        p += 1
        if p >= end:
            return w, p, exponent, False, False, TRUNCATED
        exp_negative = False
        if buf[p] == 45 or buf[p] == 43:
            exp_negative = buf[p] == 45
            p += 1
            if p >= end:
                return w, p, exponent, False, False, TRUNCATED
        if not _is_digit(buf[p]):
            return w, p, exponent, False, False, BAD_NUMBER
        literal = 0
        while p < end and _is_digit(buf[p]):
            if literal < 100000000:
                literal = literal * 10 + (buf[p] - 48)
            p += 1
        exponent += -literal if exp_negative else literal
    return w, p, exponent, is_integer, too_many, OK


@kernel(inline="always")
def _finish(w, exponent, negative, is_integer, too_many, p):
    """parse_number's result for the digits w, the power of ten and the sign: (value, p, status)."""
    if too_many or (is_integer and w > MAX_CLINGER_MANTISSA):
        return NAN32, p, HARD
    if w == U0:
        # json.loads turns "-0" into the integer 0, but "-0.0" into the float -0.0
        if negative and not is_integer:
            return -np.float32(0.0), p, OK
        return np.float32(0.0), p, OK
    if w < MAX_CLINGER_PREFERRED and exponent >= -22 and exponent <= 22:
        value = np.float64(w)
        if exponent >= 0:
            value = value * POW10_EXACT[exponent]
        else:
            value = value / POW10_EXACT[-exponent]
    else:
        near, single = float32_shortcut(w, exponent)
        if near:
            return -single if negative else single, p, OK
        ok, value = eisel_lemire(w, exponent)
        if not ok:
            return NAN32, p, HARD
    if negative:
        value = -value
    return np.float32(value), p, OK
