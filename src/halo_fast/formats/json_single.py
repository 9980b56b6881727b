"""The guide's single-JSON capture (``attention_capture_<ts>.json``), decoded exactly.

Pass 1 walks the file window by window (kernels.structure) and finds every
``generated_tokens[i].attention.data`` array. Everything else -- metadata,
prompt tokens, each token's small fields -- is a "skeleton": the file with those
arrays emptied, small enough for pysimdjson (or ``json`` when it holds NaN or
Infinity). Shapes from the skeleton size one float32 allocation, and pass 2
(kernels.arrays) parses every array into its slice in parallel.
"""

from __future__ import annotations

import bisect
import json
import re
import warnings
from dataclasses import dataclass

import numpy as np

from ..capture import PROMPT_COLUMNS, TOKEN_COLUMNS, Capture, Table
from ..errors import CaptureError
from .base import CaptureSource
from .mapped import MappedFile, output_buffer

MAX_DIMENSION = 1 << 40  # a larger layer/head/context count is a corrupt shape, not a model
DEFAULT_WINDOW_BYTES = 4 << 20  # file bytes resident at once, beyond the output


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


class _NoProgress:
    def __enter__(self) -> "_NoProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def _progress(total: int, enabled: bool, description: str):
    """A tqdm bar on stderr, or (without importing tqdm: a short run's time counts) one that shows nothing."""
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=description, disable=not enabled, leave=False)


def scan_structure(mapped: MappedFile, window_bytes: int, progress: bool = False, probe_bytes: int = 1 << 16,
                   recover: bool = False) -> Layout:
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
    with _progress(size, progress, "scan") as bar:
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
            "(recover=True, or --recover, keeps them)", mapped.path, mapped.size, step,
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


class Skeleton:
    """The file with every attention data array emptied to ``[]``, and a map back to file offsets."""

    def __init__(self, mapped: MappedFile, layout: Layout):
        opens = layout.data_open[layout.data_open >= 0]
        closes = layout.data_close[layout.data_open >= 0]
        pieces = []
        self._skeleton_starts = []
        self._file_starts = []
        cursor = 0
        length = 0
        for open_at, close_at in zip(opens.tolist(), closes.tolist()):
            pieces.append(mapped.read(cursor, open_at + 1))
            self._skeleton_starts.append(length)
            self._file_starts.append(cursor)
            length += open_at + 1 - cursor
            cursor = close_at
        end, suffix = mapped.size, b""
        if layout.recovery is not None:
            end, suffix = layout.recovery["end"], layout.recovery["suffix"]
        pieces.append(mapped.read(cursor, end))
        pieces.append(suffix)
        self._skeleton_starts.append(length)
        self._file_starts.append(cursor)
        self.text = b"".join(pieces)
        self.path = mapped.path

    @classmethod
    def from_text(cls, text: bytes, skeleton_starts: list, file_starts: list, path: str) -> "Skeleton":
        """A skeleton gathered elsewhere (a stream); piece k starts at skeleton_starts[k] / file_starts[k]."""
        skeleton = cls.__new__(cls)
        skeleton.text = text
        skeleton._skeleton_starts = list(skeleton_starts) or [0]
        skeleton._file_starts = list(file_starts) or [0]
        skeleton.path = path
        return skeleton

    def file_offset(self, skeleton_offset: int) -> int:
        i = bisect.bisect_right(self._skeleton_starts, skeleton_offset) - 1
        return self._file_starts[i] + skeleton_offset - self._skeleton_starts[i]

    def parse(self):
        try:
            import simdjson

            return simdjson.Parser().parse(self.text, True)
        except Exception:  # NaN/Infinity, huge integers, lone surrogates: json decides
            pass
        try:
            return json.loads(self.text)
        except json.JSONDecodeError as exc:
            raise CaptureError(f"invalid JSON: {exc.msg}", self.path, self.file_offset(exc.pos)) from None
        except UnicodeDecodeError as exc:
            raise CaptureError(f"not UTF-8 text: {exc.reason}", self.path, self.file_offset(exc.start)) from None
        except RecursionError:
            raise CaptureError("JSON nested too deeply", self.path) from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise CaptureError(f"invalid JSON: {exc}", self.path) from None


def _shape_of(attention: dict, path: str, offset: int, step) -> tuple[int, int, int]:
    from .encoded import aggregated_shape

    shape = aggregated_shape(attention) or attention.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < MAX_DIMENSION for d in shape)
    ):
        raise CaptureError(f"attention shape must be [layers, heads, context], got {shape!r}", path, offset, step)
    context_length = attention.get("context_length", shape[2])
    if context_length != shape[2]:
        raise CaptureError(
            f"context_length {context_length!r} disagrees with attention shape {shape}", path, offset, step
        )
    return shape[0], shape[1], shape[2]


def _element_offset(mapped: MappedFile, layout: Layout, k: int) -> int | None:
    """Byte offset of generated_tokens[k] when it is not an object (the walker did not record it)."""
    start = int(layout.token_close[k - 1]) + 1 if k > 0 else layout.tokens_open + 1
    if start <= 0:
        return None
    text = mapped.read(start, min(start + 4096, mapped.size))
    stripped = text.lstrip(b" \t\r\n,")
    return start + len(text) - len(stripped)


def check_layers_heads(shapes: np.ndarray, has_attention: np.ndarray, where) -> None:
    """Every token with attention has the first one's layers x heads; ``where(i)``: (path, offset, step)."""
    if not has_attention.any():
        return
    first = shapes[np.argmax(has_attention)]
    differs = np.flatnonzero(has_attention & ((shapes[:, 0] != first[0]) | (shapes[:, 1] != first[1])))
    if len(differs):
        i = int(differs[0])
        raise CaptureError(
            f"token has {shapes[i, 0]} layers x {shapes[i, 1]} heads, the first has {first[0]} x {first[1]}", *where(i)
        )


def plan_tokens(document, layout: Layout, mapped: MappedFile):
    """Shapes, value offsets and token table from the skeleton; all checks before any allocation."""
    path = mapped.path
    if not isinstance(document, dict) or not isinstance(document.get("generated_tokens"), list):
        raise CaptureError(
            "not a capture: expected a JSON object with a 'generated_tokens' list "
            "(supported: the single-JSON capture of the Data Capture guide)",
            path,
            0,
        )
    tokens = document["generated_tokens"]
    n = len(tokens)
    if n != len(layout.token_open):
        bad = next((i for i, t in enumerate(tokens) if not isinstance(t, dict)), len(layout.token_open))
        raise CaptureError(f"generated token #{bad} is not a JSON object", path, _element_offset(mapped, layout, bad))
    shapes = np.zeros((n, 3), dtype=np.int64)
    has_attention = np.zeros(n, dtype=bool)
    for i, token in enumerate(tokens):
        step = token.get("step", i)
        attention = token.get("attention")
        offset = int(layout.token_open[i])
        if attention is None:
            continue
        if not isinstance(attention, dict):
            raise CaptureError("'attention' is neither an object nor null", path, offset, step)
        data = attention.get("data")
        if layout.data_open[i] < 0:
            if data is None:
                continue
            if isinstance(data, str):
                _plan_encoded(attention, shapes, has_attention, i, path, offset, step)
                continue
            raise CaptureError("attention 'data' is not an array", path, offset, step)
        shape = _shape_of(attention, path, int(layout.data_open[i]), step)
        count = shape[0] * shape[1] * shape[2]
        span = int(layout.data_close[i] - layout.data_open[i])
        if count > span // 2:
            raise CaptureError(
                f"shape {list(shape)} needs {count} values but the data array is only {span + 1} bytes",
                path,
                int(layout.data_open[i]),
                step,
            )
        shapes[i] = shape
        has_attention[i] = True
    check_layers_heads(shapes, has_attention, lambda i: (path, int(layout.data_open[i]), tokens[i].get("step", i)))
    counts = shapes.prod(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return tokens, shapes, has_attention, offsets


def _plan_encoded(attention: dict, shapes, has_attention, i: int, path, offset, step) -> None:
    """A base64 data string (formats.encoded): shape and length checked here, decoded in pass 2."""
    from .encoded import check_encoded, is_encoded

    if not is_encoded(attention):
        raise CaptureError("attention 'data' is a string without \"encoding\": \"base64\"", path, offset, step)
    shape = _shape_of(attention, path, offset, step)
    check_encoded(attention, shape[0] * shape[1] * shape[2], path, offset, step)
    shapes[i] = shape
    has_attention[i] = True


def _decode_encoded_tokens(path, layout: Layout, tokens, offsets, values, ids) -> None:
    """Fill the base64 tokens among ``ids`` (those without a data array) into their slices."""
    from .encoded import decode_encoded

    for i in ids.tolist():
        decode_encoded(tokens[i]["attention"], values[offsets[i] : offsets[i + 1]], path,
                       int(layout.token_open[i]), tokens[i].get("step", i))


def token_table(tokens: list, shapes: np.ndarray, has_attention: np.ndarray) -> Table:
    records = []
    for i, token in enumerate(tokens):
        attention = token.get("attention")
        context = attention.get("context_length") if isinstance(attention, dict) else None
        if has_attention[i]:
            context = int(shapes[i, 2])
        records.append(
            {
                "step": token.get("step", i),
                "token_id": token.get("token_id"),
                "text": token.get("text"),
                "position": token.get("position"),
                "timestamp": token.get("timestamp"),
                "context_length": context,
                "has_attention": bool(has_attention[i]),
            }
        )
    return Table.from_records(records, TOKEN_COLUMNS)


def _batches(ids: np.ndarray, sizes: np.ndarray, window_bytes: int, min_tokens: int) -> list[np.ndarray]:
    """Consecutive runs of tokens covering about window_bytes of file, and enough tokens to keep every thread busy."""
    batches = []
    first = 0
    covered = 0
    for k, size in enumerate(sizes.tolist()):
        covered += size
        if covered >= window_bytes and k + 1 - first >= min_tokens:
            batches.append(ids[first : k + 1])
            first = k + 1
            covered = 0
    if first < len(ids):
        batches.append(ids[first:])
    return batches


def _interleave(ids: np.ndarray, n_threads: int) -> np.ndarray:
    """Order so that numba's contiguous per-thread blocks each get every n-th token (balanced sizes)."""
    return np.concatenate([ids[r::n_threads] for r in range(n_threads)])


def _reference_value(text: bytes, path: str, offset: int, step) -> np.float32:
    """What np.asarray(json.loads(text), float32) gives for one number."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.asarray([json.loads(text)], dtype=np.float32)[0]
    except (OverflowError, ValueError) as exc:
        raise CaptureError(f"number out of float range: {exc}", path, offset, step) from None


def decode_attention(mapped: MappedFile, layout: Layout, tokens, shapes, has_attention, offsets, window_bytes: int,
                     progress: bool = False) -> np.ndarray:
    """Pass 2: parse every data array into one float32 buffer, window by window."""
    import numba

    from ..kernels.arrays import ARRAY_OK, HARD_SLOTS, MESSAGES, decode_arrays

    buf = mapped.bytes
    values = output_buffer(int(offsets[-1]))
    counts = np.diff(offsets)
    ids = np.flatnonzero(has_attention & (layout.data_open >= 0))
    encoded = np.flatnonzero(has_attention & (layout.data_open < 0))
    if len(encoded):
        _decode_encoded_tokens(mapped.path, layout, tokens, offsets, values, encoded)
    n = len(layout.data_open)
    status = np.zeros((n, 4), dtype=np.int64)
    hard = np.zeros((n, HARD_SLOTS, 3), dtype=np.int64)
    n_threads = numba.get_num_threads()
    sizes = layout.data_close[ids] - layout.data_open[ids]
    data_bytes = int(sizes.sum())
    batches = _batches(ids, sizes, window_bytes, n_threads)
    with _progress(data_bytes, progress, "decode") as bar:
        for batch in batches:
            if not len(batch):
                continue
            order = _interleave(batch, n_threads)
            decode_arrays(buf, layout.data_open, layout.data_close, offsets, counts, order, values, status, hard)
            _check_status(mapped, layout, tokens, status, counts, batch, MESSAGES, ARRAY_OK)
            for i in batch[status[batch, 3] > 0]:
                _finish_hard(mapped, layout, tokens, offsets, counts, values, status, hard, int(i), HARD_SLOTS)
            lo, hi = int(layout.data_open[batch[0]]), int(layout.data_close[batch[-1]]) + 1
            mapped.release(lo, hi)
            bar.update(int((layout.data_close[batch] - layout.data_open[batch]).sum()))
    return values


def _check_status(mapped, layout, tokens, status, counts, batch, messages, ok_code):
    failed = batch[status[batch, 0] != ok_code]
    if not len(failed):
        return
    i = int(failed[0])
    code, position, parsed = (int(v) for v in status[i, :3])
    message = messages[code]
    if code in (3, 4):
        message += f" (shape says {int(counts[i])} values, found {'more than ' if code == 3 else ''}{parsed})"
    raise CaptureError(message, mapped.path, position, tokens[i].get("step", i))


def _finish_hard(mapped, layout, tokens, offsets, counts, values, status, hard, i, slots):
    """Give the numbers the fast parser declined the reference's own value."""
    from ..kernels.arrays import decode_arrays

    n_hard = int(status[i, 3])
    rows = hard[i]
    if n_hard > slots:  # more than the slots remembered: re-run this one token with room for all
        one = np.zeros(1, dtype=np.int64)
        rerun_hard = np.zeros((1, n_hard, 3), dtype=np.int64)
        rerun_status = np.zeros((1, 4), dtype=np.int64)
        decode_arrays(mapped.bytes, layout.data_open[i : i + 1], layout.data_close[i : i + 1], offsets[i : i + 1],
                      counts[i : i + 1], one, values, rerun_status, rerun_hard)
        rows = rerun_hard[0]
    step = tokens[i].get("step", i)
    base = int(offsets[i])
    for start, stop, index in rows[:n_hard].tolist():
        values[base + index] = _reference_value(mapped.read(start, stop), mapped.path, start, step)


def reduce_attention(scan: "ScannedJson", ids: np.ndarray, plan) -> np.ndarray:
    """Pass 2, fused: parse and fold the selected tokens, never holding their full tensors.

    Returns float32 [len(ids), groups, max context], NaN beyond each token's context.
    """
    import numba

    from ..kernels.arrays import ARRAY_OK, MESSAGES
    from ..kernels.reduce import ARRAY_HAS_HARD, reduce_arrays, reduce_decoded
    from ..reduction import output_array

    layout = scan.layout
    n = len(layout.data_open)
    contexts = scan.shapes[:, 2].copy()
    max_context = int(contexts[ids].max()) if len(ids) else 0
    data = output_array(len(ids), plan, max_context)
    out_rows = np.full(n, -1, dtype=np.int64)
    out_rows[ids] = np.arange(len(ids))
    n_threads = numba.get_num_threads()
    acc = np.zeros((n_threads, plan.n_groups, max_context), dtype=np.float64)
    counts = np.zeros((n_threads, plan.n_groups, max_context), dtype=np.int64)
    status = np.zeros((n, 4), dtype=np.int64)
    n_rows = plan.n_layers * plan.n_heads
    encoded = ids[layout.data_open[ids] < 0]
    for i in encoded.tolist():  # base64 tokens: decode (no parsing), then fold
        reduce_decoded(_decode_one(scan, i), n_rows, int(contexts[i]), plan.row_group, plan.first_row,
                       plan.group_size, plan.op_code, acc[0], counts[0], data[out_rows[i]])
    ids = ids[layout.data_open[ids] >= 0]
    sizes = layout.data_close[ids] - layout.data_open[ids]
    with _progress(int(sizes.sum()), scan.progress, "reduce") as bar:
        for batch in _batches(ids, sizes, scan.window_bytes, n_threads):
            order = _interleave(batch, n_threads)
            reduce_arrays(scan.mapped.bytes, layout.data_open, layout.data_close, contexts, out_rows, order, n_rows,
                          plan.row_group, plan.first_row, plan.group_size, plan.op_code, acc, counts, data, status)
            hard = batch[status[batch, 0] == ARRAY_HAS_HARD]
            status[hard, 0] = ARRAY_OK
            _check_status(scan.mapped, layout, scan.tokens, status, np.diff(scan.offsets), batch, MESSAGES, ARRAY_OK)
            for i in hard.tolist():  # rare: decode this token exactly, then fold it the same way
                values = _decode_one(scan, i)
                reduce_decoded(values, n_rows, int(contexts[i]), plan.row_group, plan.first_row, plan.group_size,
                               plan.op_code, acc[0], counts[0], data[out_rows[i]])
            scan.mapped.release(int(layout.data_open[batch[0]]), int(layout.data_close[batch[-1]]) + 1)
            bar.update(int((layout.data_close[batch] - layout.data_open[batch]).sum()))
    return data


def _decode_one(scan: "ScannedJson", i: int) -> np.ndarray:
    """One token's attention, decoded in full (hard numbers finished by the reference)."""
    from ..kernels.arrays import ARRAY_OK, HARD_SLOTS, MESSAGES, decode_arrays

    layout = scan.layout
    count = int(scan.offsets[i + 1] - scan.offsets[i])
    values = np.empty(count, dtype=np.float32)
    if layout.data_open[i] < 0:  # base64 text (formats.encoded)
        from .encoded import decode_encoded

        token = scan.tokens[i]
        decode_encoded(token["attention"], values, scan.path, int(layout.token_open[i]), token.get("step", i))
        return values
    status = np.zeros((1, 4), dtype=np.int64)
    hard = np.zeros((1, HARD_SLOTS, 3), dtype=np.int64)
    counts = np.array([count], dtype=np.int64)
    zero = np.zeros(1, dtype=np.int64)
    decode_arrays(scan.mapped.bytes, layout.data_open[i : i + 1], layout.data_close[i : i + 1], zero, counts, zero,
                  values, status, hard)
    _check_status(scan.mapped, layout, [scan.tokens[i]], status, counts, zero, MESSAGES, ARRAY_OK)
    local = Layout(layout.token_open[i : i + 1], layout.token_close[i : i + 1], layout.data_open[i : i + 1],
                   layout.data_close[i : i + 1])
    if status[0, 3]:
        _finish_hard(scan.mapped, local, [scan.tokens[i]], zero, counts, values, status, hard, 0, HARD_SLOTS)
    return values


class ScannedJson(CaptureSource):
    """A mapped single-JSON capture after pass 1 and the skeleton parse: everything but the floats.

    Use as a context manager; ``mapped`` stays open for a pass 2 (decode or reduce).
    """

    format_name = "json"

    def __init__(self, path, window_bytes: int = DEFAULT_WINDOW_BYTES, progress: bool = False, recover: bool = False):
        self.path = str(path)
        self.window_bytes = window_bytes
        self.progress = progress
        self.recover = recover
        self.mapped = MappedFile(path)

    def __enter__(self) -> "ScannedJson":
        self.mapped.__enter__()
        try:
            self.layout = scan_structure(self.mapped, self.window_bytes, self.progress, recover=self.recover)
            self.recovery = _public(self.layout.recovery)
            try:
                self.document = Skeleton(self.mapped, self.layout).parse()
            except CaptureError:
                check_data_content(self.mapped, self.layout.events)
                raise
            self.tokens, self.shapes, self.has_attention, self.offsets = plan_tokens(
                self.document, self.layout, self.mapped
            )
            prompt = self.document.get("prompt_tokens") or []
            if not isinstance(prompt, list):
                raise CaptureError("'prompt_tokens' is not a list", self.path, None)
            self.prompt_table = Table.from_records(prompt, PROMPT_COLUMNS)
            self.token_table = token_table(self.tokens, self.shapes, self.has_attention)
            metadata = self.document.get("metadata")
            if metadata is not None and not isinstance(metadata, dict):
                raise CaptureError("'metadata' is not a JSON object", self.path, None)
            self.metadata = metadata or {}
        except BaseException:
            self.mapped.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.mapped.__exit__(*exc_info)

    def step_of(self, i: int):
        return self.tokens[i].get("step", i)

    def token_values(self, i: int) -> np.ndarray:
        """Token i's values; the mapped pages they were parsed from are handed back, so reading the
        capture token by token (convert, lazy readers) keeps memory flat."""
        values = _decode_one(self, i)
        if self.layout.data_open[i] >= 0:
            self.mapped.release(int(self.layout.data_open[i]), int(self.layout.data_close[i]) + 1)
        return values

    def decode(self) -> np.ndarray:
        return decode_attention(self.mapped, self.layout, self.tokens, self.shapes, self.has_attention, self.offsets,
                                self.window_bytes, self.progress)

    def reduce(self, ids: np.ndarray, plan) -> np.ndarray:
        return reduce_attention(self, ids, plan)


def _public(recovery: dict | None) -> dict | None:
    if recovery is None:
        return None
    return {key: recovery[key] for key in ("truncated_at", "complete_tokens", "partial_tokens", "kept_bytes")}


def load_json(path, *, window_bytes: int = DEFAULT_WINDOW_BYTES, progress: bool = False, recover: bool = False) -> Capture:
    """Decode a single-JSON capture; see the module docstring for how."""
    with ScannedJson(path, window_bytes, progress, recover) as scan:
        return scan.capture()
