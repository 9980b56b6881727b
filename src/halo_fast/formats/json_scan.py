"""Pass 1 of the single-JSON reader: the file's structure, without parsing a number.

The structure walker (kernels.structure) indexes structural bytes a probe at a
time and, inside an attention data array, lets memchr find its closing bracket, so
the bulk of the file is stepped over. The result is a Layout: where every generated
token and its data array open and close. Broken or truncated files are reported
here, or cut after their last complete token when recovery is asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import CaptureError
from ..progress import progress_bar
from .mapped import MappedFile


@dataclass
class Layout:
    """Byte positions found by pass 1, one entry per generated token (-1: absent)."""

    token_open: np.ndarray
    token_close: np.ndarray
    data_open: np.ndarray
    data_close: np.ndarray
    tokens_open: int = -1  # the '[' of generated_tokens
    events: np.ndarray | None = None  # pass 1's (kind, token, position) rows
    recovery: dict | None = None  # set when a truncated file was cut after its last complete token


STEP_FIELD = re.compile(rb'"(?:generation_)?step"\s*:\s*(-?\d+)\s*[,}]')  # whole: a cut "12" is not step 1


def step_hint(mapped: MappedFile, events: np.ndarray, token: int):
    """A broken token's step, read from its first bytes (the skeleton cannot be parsed); else its index."""
    from ..kernels.structure import EVENT_TOKEN_OPEN

    opens = events[(events[:, 0] == EVENT_TOKEN_OPEN) & (events[:, 1] == token)]
    if not len(opens):
        return token
    start = int(opens[0, 2])
    found = STEP_FIELD.search(mapped.read(start, min(start + 4096, mapped.size)))
    return int(found.group(1)) if found else token


def check_data_content(mapped: MappedFile, events: np.ndarray) -> None:
    """Raise for the first attention array (found so far) holding a string, object or nested array."""
    from ..kernels import structure as st

    for kind, token, start in events.tolist():
        if kind != st.EVENT_DATA_OPEN:
            continue
        closes = events[(events[:, 0] == st.EVENT_DATA_CLOSE) & (events[:, 1] == token) & (events[:, 2] > start)]
        end = int(closes[0, 2]) if len(closes) else mapped.size
        bad = st.first_non_number_byte(mapped.bytes, start, end)
        if bad >= 0:
            raise CaptureError(
                st.WALK_MESSAGES[st.WALK_IN_DATA], mapped.path, int(bad), step_hint(mapped, events, token)
            )


def scan_structure(
    mapped: MappedFile, window_bytes: int, progress: bool = False, probe_bytes: int = 1 << 16, recover: bool = False
) -> Layout:
    """Pass 1: walk the file's structure, jumping over the bulk of each attention array.

    Structural bytes are indexed ``probe_bytes`` at a time (doubling while no array
    is open); when a probe ends inside an attention data array, memchr finds its
    closing bracket. Pages are released every ``window_bytes``.
    """
    from ..kernels import structure as st

    buf = mapped.bytes
    size = mapped.size
    state, kinds, roles = st.new_walker_state()
    event_blocks = []
    position = 0
    released = 0
    probe = probe_bytes
    with progress_bar(size, progress, "scan") as bar:
        while position < size and state[st.S_ERROR] == st.WALK_OK:
            stop = min(position + probe, size)
            positions = st.find_structural(buf, position, stop)
            events = np.empty((positions.shape[0] + 1, 3), dtype=np.int64)
            n = st.walk_structure(buf, positions, state, kinds, roles, events)
            event_blocks.append(events[:n])
            bar.update(stop - position)
            position = stop
            probe = min(probe * 2, window_bytes)
            if state[st.S_ERROR] == st.WALK_OK and st.inside_data(state, roles) and position < size:
                close = mapped.find(b"]", position)
                if close < 0:
                    bar.update(size - position)
                    position = size
                    break
                closing = np.array([close], dtype=np.int64)
                events = np.empty((1, 3), dtype=np.int64)
                n = st.walk_structure(buf, closing, state, kinds, roles, events)
                event_blocks.append(events[:n])
                bar.update(close + 1 - position)
                position = close + 1
                probe = probe_bytes
            if position - released >= window_bytes:
                mapped.release(released, position)
                released = position
    mapped.release(released, size)
    events = np.concatenate(event_blocks) if event_blocks else np.empty((0, 3), np.int64)
    complete = int(np.count_nonzero(events[:, 0] == st.EVENT_TOKEN_CLOSE))
    truncated = state[st.S_DEPTH] != 0 or state[st.S_IN_STRING] or not state[st.S_CLOSED]
    recovery = None
    if truncated and recover and state[st.S_ERROR] == st.WALK_OK:
        events, recovery = _cut_after_complete_tokens(mapped, events, int(state[st.S_TOKENS]))
    elif state[st.S_ERROR] != st.WALK_OK or truncated:
        check_data_content(mapped, events)  # a string or array inside data misleads the jump: say so
        token = int(state[st.S_TOKEN])
        step = step_hint(mapped, events, token) if token >= 0 else None
        if state[st.S_ERROR] != st.WALK_OK:
            raise CaptureError(st.WALK_MESSAGES[int(state[st.S_ERROR])], mapped.path, int(state[st.S_ERROR_AT]), step)
        raise CaptureError(
            f"truncated at byte {mapped.size} after {complete} complete generated tokens "
            "(recover=True, or --recover, keeps them)",
            mapped.path,
            mapped.size,
            step,
        )
    lists = events[events[:, 0] == st.EVENT_TOKENS_OPEN]
    if len(lists) > 1:
        raise CaptureError("the capture has two 'generated_tokens' keys", mapped.path, int(lists[1, 2]))
    n_tokens = int(state[st.S_TOKENS]) if recovery is None else recovery["complete_tokens"]
    layout = Layout(*(np.full(n_tokens, -1, dtype=np.int64) for _ in range(4)), int(lists[0, 2]) if len(lists) else -1)
    columns = {
        st.EVENT_TOKEN_OPEN: layout.token_open,
        st.EVENT_TOKEN_CLOSE: layout.token_close,
        st.EVENT_DATA_OPEN: layout.data_open,
        st.EVENT_DATA_CLOSE: layout.data_close,
    }
    for kind, column in columns.items():
        rows = events[events[:, 0] == kind]
        duplicated = np.flatnonzero(np.bincount(rows[:, 1], minlength=n_tokens) > 1)
        if len(duplicated):
            token = int(duplicated[0])
            at = int(rows[rows[:, 1] == token][1, 2])
            raise CaptureError(f"generated token #{token} has two attention data arrays", mapped.path, at)
        column[rows[:, 1]] = rows[:, 2]
    keys = events[events[:, 0] == st.EVENT_ATTENTION_KEY]
    repeated = np.flatnonzero(np.bincount(keys[:, 1], minlength=n_tokens) > 1)
    if len(repeated):
        token = int(repeated[0])
        at = int(keys[keys[:, 1] == token][1, 2])
        raise CaptureError(f"generated token #{token} has two 'attention' keys", mapped.path, at)
    layout.events = events
    layout.recovery = recovery
    return layout


def _cut_after_complete_tokens(mapped: MappedFile, events: np.ndarray, opened: int):
    """For a truncated file: keep the text up to the last complete generated token and close it.

    Returns the events before the cut and a recovery record whose ``end`` and
    ``suffix`` tell the skeleton where the kept text stops and what closes it.
    """
    from ..kernels import structure as st

    kinds = events[:, 0]
    list_closed = events[kinds == st.EVENT_TOKENS_CLOSE]
    list_opened = events[kinds == st.EVENT_TOKENS_OPEN]
    token_closes = events[kinds == st.EVENT_TOKEN_CLOSE]
    if len(list_closed):  # the token list is whole; the cut came after it
        end, suffix = int(list_closed[0, 2]) + 1, b"}"
    elif len(token_closes):
        end, suffix = int(token_closes[-1, 2]) + 1, b"]}"
    elif len(list_opened):
        end, suffix = int(list_opened[0, 2]) + 1, b"]}"
    else:
        raise CaptureError(
            f"truncated at byte {mapped.size} before any generated token: nothing to recover", mapped.path, mapped.size
        )
    complete = len(token_closes)
    kept = events[(events[:, 2] < end) & ((events[:, 1] < complete) | (events[:, 1] < 0))]
    recovery = {
        "truncated_at": mapped.size,
        "complete_tokens": complete,
        "partial_tokens": opened - complete,
        "kept_bytes": end,
        "end": end,
        "suffix": suffix,
    }
    return kept, recovery
