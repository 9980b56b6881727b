"""Pass 1 of the JSON decoder: find where every attention ``data`` array is.

Two steps per window of the file:

1. ``find_structural``: the positions of the bytes that shape JSON outside
   numbers -- quote, backslash, brackets, braces, colon. Inside attention arrays
   there are none; the driver does not even index their bulk, it jumps to the
   closing bracket (kernels.search), and pass 2 checks every byte it skipped.
2. ``walk_structure`` (serial, over that index only): a JSON state machine that
   follows strings and escapes, nesting and keys, and reports an event whenever
   a generated token or its ``attention.data`` array opens or closes. Its state
   lives in small arrays, so a window can end anywhere (inside a string, between
   a backslash and what it escapes) and the next window continues.

Only the path ``generated_tokens[i].attention.data`` counts: a ``data`` key in
an unrelated object, or the text ``"data":[`` inside a string, is never taken for
attention.

Every loop is bounded by the arrays it indexes (ranges clipped to the buffer,
positions outside it end a walk, nesting limited by the state arrays' length), so
no arguments make a kernel read or write outside them.
"""

from __future__ import annotations

import numpy as np

from .jit import kernel

QUOTE, BACKSLASH, COLON = 34, 92, 58
OPEN_ARRAY, CLOSE_ARRAY, OPEN_OBJECT, CLOSE_OBJECT = 91, 93, 123, 125

# Container roles on the walker's stack.
ROLE_OTHER, ROLE_ROOT, ROLE_TOKENS, ROLE_TOKEN, ROLE_ATTENTION, ROLE_DATA = 0, 1, 2, 3, 4, 5
# Keys the walker recognises (in the containers where they matter).
KEY_OTHER, KEY_GENERATED_TOKENS, KEY_ATTENTION, KEY_DATA = 0, 1, 2, 3

# Events: (kind, token index, byte position)
EVENT_TOKEN_OPEN, EVENT_TOKEN_CLOSE, EVENT_DATA_OPEN, EVENT_DATA_CLOSE, EVENT_ATTENTION_KEY = 1, 2, 3, 4, 5
EVENT_TOKENS_OPEN, EVENT_TOKENS_CLOSE = 6, 7  # the generated_tokens array itself

# Walker errors
WALK_OK = 0
WALK_MISMATCH = 1  # a closing bracket that does not match the open one
WALK_TOO_DEEP = 2
WALK_IN_DATA = 3  # a string, object, nested array or ':' inside attention data
WALK_AFTER_END = 4  # structure after the top-level value closed
WALK_MESSAGES = {
    WALK_MISMATCH: "closing bracket does not match the open one",
    WALK_TOO_DEEP: "nesting deeper than 512 levels",
    WALK_IN_DATA: "attention data holds something other than numbers (a string, object or nested array)",
    WALK_AFTER_END: "extra data after the end of the top-level JSON value",
}

MAX_DEPTH = 512

# Walker state slots (int64 array), carried from one window to the next.
S_DEPTH, S_IN_STRING, S_ESCAPED, S_STRING_START, S_STRING_END = 0, 1, 2, 3, 4
S_PREVIOUS, S_KEY, S_TOKENS, S_TOKEN, S_CLOSED, S_ERROR, S_ERROR_AT = 5, 6, 7, 8, 9, 10, 11
STATE_SIZE = 12

KEY_TEXT_GENERATED_TOKENS = np.frombuffer(b"generated_tokens", dtype=np.uint8).copy()
KEY_TEXT_ATTENTION = np.frombuffer(b"attention", dtype=np.uint8).copy()
KEY_TEXT_DATA = np.frombuffer(b"data", dtype=np.uint8).copy()


def inside_data(state, roles) -> bool:
    """Is the walker inside an attention data array (outside any string)?"""
    depth = state[S_DEPTH]
    return bool(depth > 0 and roles[depth - 1] == ROLE_DATA and not state[S_IN_STRING])


def new_walker_state():
    """Fresh state for walk_structure: (scalars, container kinds, roles)."""
    state = np.zeros(STATE_SIZE, dtype=np.int64)
    state[S_ESCAPED] = -1
    state[S_PREVIOUS] = -1
    state[S_TOKEN] = -1
    return state, np.zeros(MAX_DEPTH, dtype=np.uint8), np.zeros(MAX_DEPTH, dtype=np.uint8)


@kernel()
def _is_structural(b):
    return b == 34 or b == 92 or b == 91 or b == 93 or b == 123 or b == 125 or b == 58


@kernel()
def count_structural(buf, lo, hi):
    """How many p in [lo, hi) (clipped to buf) hold a structural byte."""
    count = 0
    for p in range(max(lo, 0), min(hi, buf.shape[0])):
        b = buf[p]
        count += (b == 34) | (b == 92) | (b == 91) | (b == 93) | (b == 123) | (b == 125) | (b == 58)
    return count


@kernel()
def write_structural(buf, lo, hi, positions):
    """The first len(positions) structural positions in [lo, hi) (clipped to buf) into positions; returns how many."""
    o = 0
    for p in range(max(lo, 0), min(hi, buf.shape[0])):
        if _is_structural(buf[p]) and o < positions.shape[0]:
            positions[o] = p
            o += 1
    return o


def find_structural(buf: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Sorted int64 positions p in [lo, hi) where buf[p] is structural (the range clipped to buf).

    Allocated here, not in a kernel: a kernel's np.empty makes loading it from numba's
    cache import numba's whole array library (numba.np.arrayobj), 0.04 s of every
    command's start.
    """
    positions = np.empty(count_structural(buf, lo, hi), dtype=np.int64)
    write_structural(buf, lo, hi, positions)
    return positions


@kernel()
def first_non_number_byte(buf, start, end):
    """First position in (start, end) holding a byte no JSON number, literal, comma or space uses; else -1.

    Pass 1 jumps over attention arrays to the first ']'; when the file then turns
    out malformed, this finds a string or nested array inside such an array.
    """
    for p in range(max(start + 1, 0), min(end, buf.shape[0])):
        b = buf[p]
        if (b >= 48 and b <= 57) or b == 44 or b == 32 or b == 10 or b == 13 or b == 9:
            continue
        if b == 46 or b == 45 or b == 43 or b == 101 or b == 69:  # . - + e E
            continue
        if (
            b == 110
            or b == 117
            or b == 108
            or b == 78
            or b == 97
            or b == 73
            or b == 102
            or b == 105
            or b == 116
            or b == 121
        ):  # letters of null, NaN, Infinity
            continue
        return p
    return -1


@kernel()
def _key_is(buf, start, end, word):
    """Does the JSON string body buf[start:end] spell word? Escapes (\\u0061) decoded.

    A body not wholly inside buf (start < 0) spells nothing; end is clipped to buf.
    """
    if start < 0:
        return False
    end = min(end, buf.shape[0])
    p = start
    i = 0
    n = len(word)
    while p < end:
        b = np.int64(buf[p])
        if b == 92:  # backslash
            if p + 1 >= end:
                return False
            e = buf[p + 1]
            if e == 117:  # \uXXXX
                if p + 6 > end:
                    return False
                code = 0
                for k in range(p + 2, p + 6):
                    h = np.int64(buf[k])
                    if h >= 48 and h <= 57:
                        code = code * 16 + h - 48
                    elif h >= 97 and h <= 102:
                        code = code * 16 + h - 87
                    elif h >= 65 and h <= 70:
                        code = code * 16 + h - 55
                    else:
                        return False
                b = code
                p += 6
            else:
                b = np.int64(e)
                if e == 110:
                    b = 10
                elif e == 116:
                    b = 9
                elif e == 114:
                    b = 13
                elif e == 98:
                    b = 8
                elif e == 102:
                    b = 12
                p += 2
        else:
            p += 1
        if i >= n or b != word[i]:
            return False
        i += 1
    return i == n


@kernel()
def walk_structure(buf, positions, state, kinds, roles, events):
    """Advance the walker over ``positions``; append (kind, token, position) rows to events.

    ``events`` needs at least len(positions) rows (each position adds at most one; the
    walk stops after len(events) positions). Returns the number of rows written.
    On an error the state records (S_ERROR, S_ERROR_AT) and the walk stops. A position
    outside buf (find_structural never gives one) ends the walk; nesting is limited to
    MAX_DEPTH and to the length of kinds and roles (WALK_TOO_DEEP), and a state whose
    depth does not fit them is an error before anything is read. A state array shorter
    than STATE_SIZE is not walked (0 events).
    """
    if state.shape[0] < STATE_SIZE:
        return 0
    n_buf = buf.shape[0]
    max_depth = min(MAX_DEPTH, kinds.shape[0], roles.shape[0])
    n_positions = min(positions.shape[0], events.shape[0]) if events.shape[1] >= 3 else 0
    n_events = 0
    depth = state[S_DEPTH]
    in_string = state[S_IN_STRING]
    escaped = state[S_ESCAPED]
    string_start = state[S_STRING_START]
    string_end = state[S_STRING_END]
    previous = state[S_PREVIOUS]  # position of the previous structural byte outside strings
    key = state[S_KEY]
    n_tokens = state[S_TOKENS]
    token = state[S_TOKEN]
    closed = state[S_CLOSED]
    error = state[S_ERROR]
    error_at = state[S_ERROR_AT]
    if error == WALK_OK and (depth < 0 or depth > max_depth):
        error = WALK_TOO_DEEP
        error_at = previous
    for i in range(n_positions):
        if error != WALK_OK:
            break
        p = positions[i]
        if p < 0 or p >= n_buf:
            break
        c = buf[p]
        if in_string:
            if p == escaped:
                continue
            if c == BACKSLASH:
                escaped = p + 1
            elif c == QUOTE:
                in_string = 0
                string_end = p
                previous = p
            continue
        if closed and depth == 0:
            error = WALK_AFTER_END
            error_at = p
            break
        role = roles[depth - 1] if depth > 0 else ROLE_OTHER
        if c == QUOTE:
            if role == ROLE_DATA:
                error = WALK_IN_DATA
                error_at = p
                break
            in_string = 1
            string_start = p
        elif c == COLON:
            if role == ROLE_DATA:
                error = WALK_IN_DATA
                error_at = p
                break
            key = KEY_OTHER
            if previous == string_end and string_end > string_start:
                if role == ROLE_ROOT:
                    if _key_is(buf, string_start + 1, string_end, KEY_TEXT_GENERATED_TOKENS):
                        key = KEY_GENERATED_TOKENS
                elif role == ROLE_TOKEN:
                    if _key_is(buf, string_start + 1, string_end, KEY_TEXT_ATTENTION):
                        key = KEY_ATTENTION
                        events[n_events, 0] = EVENT_ATTENTION_KEY
                        events[n_events, 1] = token
                        events[n_events, 2] = p
                        n_events += 1
                elif role == ROLE_ATTENTION:
                    if _key_is(buf, string_start + 1, string_end, KEY_TEXT_DATA):
                        key = KEY_DATA
            previous = p
        elif c == OPEN_ARRAY or c == OPEN_OBJECT:
            if role == ROLE_DATA:
                error = WALK_IN_DATA
                error_at = p
                break
            if depth >= max_depth:
                error = WALK_TOO_DEEP
                error_at = p
                break
            new_role = ROLE_OTHER
            if depth == 0:
                if c == OPEN_OBJECT:
                    new_role = ROLE_ROOT
            elif role == ROLE_ROOT and c == OPEN_ARRAY and key == KEY_GENERATED_TOKENS:
                new_role = ROLE_TOKENS
                events[n_events, 0] = EVENT_TOKENS_OPEN
                events[n_events, 1] = -1
                events[n_events, 2] = p
                n_events += 1
            elif role == ROLE_TOKENS and c == OPEN_OBJECT:
                new_role = ROLE_TOKEN
                token = n_tokens
                n_tokens += 1
                events[n_events, 0] = EVENT_TOKEN_OPEN
                events[n_events, 1] = token
                events[n_events, 2] = p
                n_events += 1
            elif role == ROLE_TOKEN and c == OPEN_OBJECT and key == KEY_ATTENTION:
                new_role = ROLE_ATTENTION
            elif role == ROLE_ATTENTION and c == OPEN_ARRAY and key == KEY_DATA:
                new_role = ROLE_DATA
                events[n_events, 0] = EVENT_DATA_OPEN
                events[n_events, 1] = token
                events[n_events, 2] = p
                n_events += 1
            kinds[depth] = c
            roles[depth] = new_role
            depth += 1
            key = KEY_OTHER
            previous = p
        elif c == CLOSE_ARRAY or c == CLOSE_OBJECT:
            opener = OPEN_ARRAY if c == CLOSE_ARRAY else OPEN_OBJECT
            if depth == 0 or kinds[depth - 1] != opener:
                error = WALK_MISMATCH
                error_at = p
                break
            if role == ROLE_DATA:
                events[n_events, 0] = EVENT_DATA_CLOSE
                events[n_events, 1] = token
                events[n_events, 2] = p
                n_events += 1
            elif role == ROLE_TOKENS:
                events[n_events, 0] = EVENT_TOKENS_CLOSE
                events[n_events, 1] = -1
                events[n_events, 2] = p
                n_events += 1
            elif role == ROLE_TOKEN:
                events[n_events, 0] = EVENT_TOKEN_CLOSE
                events[n_events, 1] = token
                events[n_events, 2] = p
                n_events += 1
                token = -1
            depth -= 1
            if depth == 0:
                closed = 1
            key = KEY_OTHER
            previous = p
        else:  # a backslash outside a string is not JSON; the skeleton parse reports it
            previous = p
    state[S_DEPTH] = depth
    state[S_IN_STRING] = in_string
    state[S_ESCAPED] = escaped
    state[S_STRING_START] = string_start
    state[S_STRING_END] = string_end
    state[S_PREVIOUS] = previous
    state[S_KEY] = key
    state[S_TOKENS] = n_tokens
    state[S_TOKEN] = token
    state[S_CLOSED] = closed
    state[S_ERROR] = error
    state[S_ERROR_AT] = error_at
    return n_events
