"""Pass 1 of the single-JSON reader: the file's structure, without parsing a number.

The structure walker (kernels.structure) indexes structural bytes a probe at a
time and, inside an attention data array, has its closing bracket found by every
thread at once (kernels.search; memchr on a file read from disk), so the bulk of
the file is stepped over. The result is a Layout: where every generated
token and its data array open and close. Broken or truncated files are reported
here, or cut after their last complete token when recovery is asked for. Text whose
top-level value is not an object (``null``, ``123``, an array, no JSON at all) is
"not a capture" (``top_level_problem``), never a capture cut short.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CaptureError
from ..progress import progress_bar
from .json_brackets import ClosingBrackets, jumped_from
from .mapped import MappedFile

if TYPE_CHECKING:
    from .json_ahead import ReduceAhead
    from .streamed import StreamedFile


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
    jumped: np.ndarray | None = None  # per token, where its bracket search began past a jump (json_brackets)


PROBE_BYTES = 1 << 12  # structural bytes indexed at once after an array: a token's fields, its array's start
TOP_PEEK_BYTES = 1 << 16  # how much of a text is looked at to tell what its top-level value is
JSON_SPACE = b" \t\r\n"
TEXT_SPACE = b"\xef\xbb\xbf" + JSON_SPACE  # what may come before the top-level value: a UTF-8 BOM, JSON whitespace
EXPECTED = "an object with a 'generated_tokens' list"
NUMBER_START = re.compile(rb"-?(?:[0-9]|Infinity)|NaN")
LITERAL = re.compile(rb"(true|false|null)(?![A-Za-z0-9_])")


def _excerpt(text: bytes, quoted: bool = True) -> str:
    """The first bytes of ``text``, short, for a message (``quoted``: as a Python string, escapes shown)."""
    shown = text[:24].decode("utf-8", "replace") + ("..." if len(text) > 24 else "")
    return repr(shown) if quoted else shown


def _not_json(text: bytes, subject: str, supported: str | None) -> str:
    also = f"; supported: {supported}" if supported else ""
    return f"not a capture: {subject} is neither JSON nor a known binary format (it starts with {_excerpt(text)}){also}"


def _described(value: object, text: bytes) -> str:
    if value is None:
        return "JSON null"
    if isinstance(value, bool):
        return f"JSON {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"the JSON number {_excerpt(text.rstrip(JSON_SPACE), quoted=False)}"
    if isinstance(value, str):
        return f"a JSON string ({_excerpt(text.rstrip(JSON_SPACE), quoted=False)})"
    return "a JSON array"


def top_level_problem(
    head: bytes, complete: bool, subject: str = "the file", supported: str | None = None
) -> tuple[str, int] | None:
    """Why text starting with ``head`` cannot be a capture, as (message, byte offset); None when its
    top-level value is an object, or when ``head`` (``complete``: the whole text) shows no value yet.

    A whole text (small) is parsed, so ``123abc`` is "not JSON" and ``"text"`` is named; of a
    long one only the first token is looked at: nothing in it is parsed, arrays never.
    ``supported``: the formats to list when the text is not JSON at all.
    """
    text = head.lstrip(TEXT_SPACE)
    at = len(head) - len(text)
    if text.startswith(b"{"):
        return None
    if not text:
        if not complete:
            return None
        what = "is empty" if not head else "holds only whitespace"
        return f"not a capture: {subject} {what}; expected a JSON object with a 'generated_tokens' list", at
    if text.startswith(b"["):
        return f"not a capture: {subject} holds a JSON array, not {EXPECTED}", at
    if complete:
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _not_json(text, subject, supported), at + exc.start
        try:
            value = json.loads(decoded)
        except json.JSONDecodeError as exc:
            return _not_json(text, subject, supported), at + len(decoded[: exc.pos].encode("utf-8"))
        return f"not a capture: {subject} holds {_described(value, text)}, not {EXPECTED}", at
    literal = LITERAL.match(text)
    if literal:
        what = f"JSON {literal.group(1).decode()}"
    elif text.startswith(b'"'):
        what = f"a JSON string ({_excerpt(text, quoted=False)})"
    elif NUMBER_START.match(text):
        what = f"a JSON number ({_excerpt(text, quoted=False)})"
    else:
        return _not_json(text, subject, supported), at
    return f"not a capture: {subject} holds {what}, not {EXPECTED}", at


def check_top_level(
    head: bytes, complete: bool, path: str, subject: str = "the file", supported: str | None = None
) -> None:
    """Raise the CaptureError of ``top_level_problem``, if there is one."""
    problem = top_level_problem(head, complete, subject, supported)
    if problem is not None:
        raise CaptureError(problem[0], path, problem[1])


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
    mapped: MappedFile | StreamedFile,
    window_bytes: int,
    progress: bool = False,
    probe_bytes: int | None = None,  # PROBE_BYTES unless given
    recover: bool = False,
    ahead: ReduceAhead | None = None,
    jump: bool = False,
) -> Layout:
    """Pass 1: walk the file's structure, jumping over the bulk of each attention array.

    Structural bytes are indexed ``probe_bytes`` at a time (doubling while no array
    is open); when a probe ends inside an attention data array, ClosingBrackets finds
    its closing bracket (memchr when ``ahead`` folds tokens from a file read from disk).
    Pages are released every ``window_bytes``, but not those of tokens ``ahead``
    (json_ahead) still has to fold: it is fed the events as they are found. ``mapped`` may
    be a ``streamed.StreamedFile`` (the ahead route's file read once from disk): each probe
    first ``ensure``s its bytes are read. ``jump``: step over most of each array (json_brackets);
    the layout is then provisional until pass 2 confirms ``layout.jumped``.
    """
    from ..kernels import structure as st

    _check_starts_an_object(mapped)
    # a file read from disk (the ahead route) waits for its pages: one thread searches, without the GIL
    brackets = ClosingBrackets(mapped.bytes, mapped.read if jump else None) if ahead is None else None
    buf = mapped.bytes
    size = mapped.size
    state, kinds, roles = st.new_walker_state()
    event_blocks = []
    position = 0
    released = 0
    probe_bytes = PROBE_BYTES if probe_bytes is None else probe_bytes
    probe = probe_bytes
    with progress_bar(size, progress, "scan") as bar:
        while position < size and state[st.S_ERROR] == st.WALK_OK:
            stop = min(position + probe, size)
            mapped.ensure(stop)
            positions = st.find_structural(buf, position, stop)
            events = np.empty((positions.shape[0] + 1, 3), dtype=np.int64)
            n = st.walk_structure(buf, positions, state, kinds, roles, events)
            event_blocks.append(events[:n])
            if ahead is not None:
                ahead.feed(events[:n])
            bar.update(stop - position)
            position = stop
            probe = min(probe * 2, window_bytes)
            if state[st.S_ERROR] == st.WALK_OK and st.inside_data(state, roles) and position < size:
                if brackets is None:
                    close = mapped.find_byte_without_gil(b"]", position)
                else:
                    opened = _last_event(event_blocks, st.EVENT_DATA_OPEN)
                    token_open = _last_event(event_blocks, st.EVENT_TOKEN_OPEN) if jump else -1  # for its shape
                    close = brackets.find(position, opened, token_open)
                if close < 0:
                    bar.update(size - position)
                    position = size
                    break
                closing = np.array([close], dtype=np.int64)
                events = np.empty((1, 3), dtype=np.int64)
                n = st.walk_structure(buf, closing, state, kinds, roles, events)
                event_blocks.append(events[:n])
                if ahead is not None:
                    ahead.feed(events[:n])
                bar.update(close + 1 - position)
                position = close + 1
                probe = probe_bytes
            if position - released >= window_bytes:
                held = ahead.held_from() if ahead is not None else None
                upto = min(position, _walker_reads_from(state, position))
                upto = max(released, upto if held is None else min(upto, held))
                mapped.release(released, upto)
                released = upto
    truncated = state[st.S_DEPTH] != 0 or state[st.S_IN_STRING] or not state[st.S_CLOSED]
    if ahead is not None and state[st.S_ERROR] == st.WALK_OK and (recover or not truncated):
        ahead.finish()
    mapped.release(released, size)
    events = np.concatenate(event_blocks) if event_blocks else np.empty((0, 3), np.int64)
    complete = int(np.count_nonzero(events[:, 0] == st.EVENT_TOKEN_CLOSE))
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
    if brackets is not None:
        layout.jumped = jumped_from(brackets.jumps, layout.data_open)
    return layout


def _walker_reads_from(state: np.ndarray, position: int) -> int:
    """The first byte the walker may still read: the last string's, while it is open or may be a key
    whose colon is yet to come (the key is read then), else ``position``. A mapped file's pages come
    back when read again; a ``StreamedFile``'s chunk handed back does not."""
    from ..kernels import structure as st

    if state[st.S_IN_STRING] or state[st.S_PREVIOUS] == state[st.S_STRING_END]:
        return max(0, int(state[st.S_STRING_START]))
    return position


def _last_event(event_blocks: list, kind: int) -> int:
    """The position of the last event of ``kind`` found so far (EVENT_DATA_OPEN: where the attention
    data array the walk is inside opened), or -1."""
    for events in reversed(event_blocks):
        found = np.flatnonzero(events[:, 0] == kind)
        if len(found):
            return int(events[found[-1], 2])
    return -1


def _check_starts_an_object(mapped: MappedFile) -> None:
    """A document whose top-level value is not an object is not a capture; say so before the walk,
    which would otherwise take ``null`` or ``123`` (never closed by a bracket) for a truncated capture.
    ``detect`` calls the same check for every file opened by path; this covers the reader used on its own."""
    if mapped.read(0, 256).lstrip(TEXT_SPACE).startswith(b"{"):  # the common case: one small read
        return
    head = mapped.read(0, TOP_PEEK_BYTES)
    check_top_level(head, len(head) == mapped.size, mapped.path)


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
