"""The skeleton of a single-JSON capture: the file with its attention arrays emptied.

What is left -- metadata, prompt tokens, each token's small fields -- is small enough
for pysimdjson (or ``json`` when it holds NaN or Infinity). Its shapes are checked
and sized here (plan_tokens), before pass 2 allocates anything.

"Small enough" is checked, not assumed: numbers anywhere but under
``generated_tokens[i].attention.data`` (a misspelt key, another layout) stay in the
skeleton, and parsing a skeleton takes about five times its size in memory. So a
skeleton over MAX_SKELETON_BYTES is refused before it is read, with what made it
large and where (``check_skeleton_size``).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..capture import TOKEN_COLUMNS, Table
from ..errors import CaptureError
from .base import check_document
from .json_scan import Layout
from .mapped import MappedFile

MAX_DIMENSION = 1 << 40  # a larger layer/head/context count is a corrupt shape, not a model

# The largest skeleton parsed (bytes of JSON outside the attention data arrays; base64 attention strings,
# which belong there, do not count). A real one is metadata, the prompt's token records (~100 bytes each)
# and a few fields per generated token: kilobytes to a few MB. 64 MiB is ~600,000 prompt tokens, past any
# context a JSON capture can hold (at 28 x 28 heads one token's attention over 600k positions is ~5 GB
# of text), while parsing it costs ~5x, about 330 MB: what a misplaced array may cost before it is refused.
MAX_SKELETON_BYTES = 64 << 20
ACCOUNT_WINDOW = 1 << 18  # bytes looked at per step when accounting for a too-large skeleton
MIN_BULK_RUN = 4096  # a stretch this long without a bracket, quote or colon is bulk, not a field


class Skeleton:
    """The file with every attention data array emptied to ``[]``, and a map back to file offsets."""

    def __init__(self, mapped: MappedFile, layout: Layout):
        opens = layout.data_open[layout.data_open >= 0]
        closes = layout.data_close[layout.data_open >= 0]
        regions = []  # the file ranges the skeleton is made of: up to each data array's '[', from its ']'
        cursor = 0
        for open_at, close_at in zip(opens.tolist(), closes.tolist()):
            regions.append((cursor, open_at + 1))
            cursor = close_at
        end, suffix = mapped.size, b""
        if layout.recovery is not None:
            end, suffix = layout.recovery["end"], layout.recovery["suffix"]
        regions.append((cursor, end))
        size = sum(stop - start for start, stop in regions) + len(suffix)
        if size > MAX_SKELETON_BYTES:  # before a byte of it is copied

            def step_of(token: int):
                from .json_scan import step_hint

                return step_hint(mapped, layout.events, token) if layout.events is not None else token

            check_skeleton_size(mapped.bytes, regions, size, mapped.path, release=mapped.release, step_of=step_of)
        pieces = []
        self._skeleton_starts = []
        self._file_starts = []
        length = 0
        for start, stop in regions:
            pieces.append(mapped.read(start, stop))
            self._skeleton_starts.append(length)
            self._file_starts.append(start)
            length += stop - start
        pieces.append(suffix)
        self.text = b"".join(pieces)
        self.path = mapped.path

    @classmethod
    def from_text(cls, text: bytes, skeleton_starts: list, file_starts: list, path: str) -> Skeleton:
        """A skeleton gathered elsewhere (a stream); piece k starts at skeleton_starts[k] / file_starts[k]."""
        skeleton = cls.__new__(cls)
        skeleton.text = text
        skeleton._skeleton_starts = list(skeleton_starts) or [0]
        skeleton._file_starts = list(file_starts) or [0]
        skeleton.path = path
        if len(text) > MAX_SKELETON_BYTES:  # gathered already, but not parsed: that would cost ~5x more
            buf = np.frombuffer(text, dtype=np.uint8)
            check_skeleton_size(buf, [(0, len(text))], len(text), path, to_file=skeleton.file_offset)
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


@dataclass
class _Open:
    """A container open during the accounting walk (check_skeleton_size)."""

    bracket: int  # ord("[") or ord("{")
    name: str | int | None  # its key in the parent object, its index in the parent array; None at the top
    at: int  # position of its opening bracket
    jumped: int  # bytes of attention data arrays jumped over before it opened
    elements: int = 0  # commas directly inside it so far: the index of an array's next element
    keys: list = field(default_factory=list)  # an object's keys so far
    close: int = -1


@dataclass
class _Run:
    """A long stretch of the skeleton without a structural byte (bulk), and where it is."""

    length: int = -1
    start: int = -1
    offset: int = -1  # where to point: the array's '[', the string's quote, else the stretch itself
    names: list = field(default_factory=list)  # path of the container it is in
    container: _Open | None = None
    name: str | int | None = None  # its key or index inside the container; None: the container's own content
    in_string: bool = False
    attention: _Open | None = None  # the generated_tokens[i].attention object it is in, if any


def _path_text(names) -> str:
    """``generated_tokens[3].attention.dat0`` for the names under the top-level object (index -1: ``[i]``)."""
    text = ""
    for name in names:
        if isinstance(name, int):
            text += f"[{name}]" if name >= 0 else "[i]"
        elif name is not None:
            text += f".{name}" if text else name
    return text


def _attention_of(stack: list) -> _Open | None:
    """stack[3] when the stack goes top-level object > generated_tokens list > token > 'attention' object."""
    if (
        len(stack) >= 4
        and stack[0].bracket == 123
        and stack[1].bracket == 91
        and stack[1].name == "generated_tokens"
        and stack[2].bracket == 123
        and stack[3].bracket == 123
        and stack[3].name == "attention"
    ):
        return stack[3]
    return None


def _key_text(buf: np.ndarray, start: int, end: int) -> str:
    """The key whose quotes are at start and end, unescaped (a long or broken one shortened)."""
    if end - start > 1024:
        return f"<a key of {end - start} bytes>"
    raw = buf[start : end + 1].tobytes()
    try:
        return str(json.loads(raw))
    except ValueError:
        return raw[1:-1].decode("utf-8", "replace")


@dataclass
class _Bulk:
    """Long stretches found under one path pattern (array indices as ``*``): how much, how many, the longest."""

    total: int = 0
    count: int = 0
    longest: _Run = field(default_factory=_Run)


@dataclass
class _Account:
    encoded: int = 0  # bytes of base64 strings under generated_tokens[i].attention.data
    bulk: dict = field(default_factory=dict)  # path pattern -> _Bulk
    parts: dict = field(default_factory=dict)  # the top-level object's parts: name -> (skeleton bytes, offset)


def _account(buf: np.ndarray, regions: list, release: Callable | None = None) -> _Account:
    """Walk the skeleton's JSON structure: base64 attention bytes, where its long stretches are, part sizes.

    A long stretch without a structural byte is bulk (numbers, a long string); it is
    filed under its path with array indices as ``*``, so the 2,000 ``dat0`` arrays of
    ``generated_tokens[*].attention.dat0`` add up. Memory stays flat however large the
    skeleton: the structural bytes are indexed ACCOUNT_WINDOW bytes at a time
    (kernels.structure.find_structural), commas counted in the same window (a few MB at
    most), and the walk keeps only the open containers. ``regions`` are (start, stop)
    ranges of ``buf``; between two of them an attention data array was cut out.
    """
    from ..kernels.structure import find_structural

    result = _Account()
    stack: list[_Open] = []
    in_string = after_colon = string_is_data = False
    escaped = string_start = string_end = previous = -1
    string_name: str | int | None = None
    key: str | None = None
    jumped = 0

    def note_run(start: int, stop: int) -> None:
        """File [start, stop) under its path when it is long (a base64 attention string is no bulk)."""
        if stop - start < MIN_BULK_RUN or (in_string and string_is_data):
            return
        top = stack[-1] if stack else None
        if in_string:
            name, offset = string_name, string_start
        elif top is not None and top.bracket == 91:
            name, offset = None, top.at
        else:
            name, offset = (key if after_colon else None), start
        names = [o.name for o in stack]
        pattern = tuple("*" if isinstance(n, int) else n for n in [*names, name]) + (in_string,)
        bulk = result.bulk.setdefault(pattern, _Bulk())
        bulk.total += stop - start
        bulk.count += 1
        if stop - start > bulk.longest.length:
            bulk.longest = _Run(stop - start, start, offset, names, top, name, in_string, _attention_of(stack))

    def closed(container: _Open, at: int) -> None:
        container.close = at
        if len(stack) == 1:  # a part of the top-level object
            result.parts[container.name] = (at + 1 - container.at - (jumped - container.jumped), container.at)

    for number, (region_start, region_end) in enumerate(regions):
        if number:
            jumped += region_start - regions[number - 1][1]
        last = region_start - 1
        commas_so_far = commas_at_last = 0
        for lo in range(region_start, region_end, ACCOUNT_WINDOW):
            hi = min(lo + ACCOUNT_WINDOW, region_end)
            positions = find_structural(buf, lo, hi)
            commas = np.flatnonzero(buf[lo:hi] == 44)  # at most ACCOUNT_WINDOW / 2 of them
            if len(positions):
                totals = commas_so_far + np.searchsorted(commas, positions - lo)
                before = np.diff(totals, prepend=commas_at_last).tolist()  # commas since the previous position
                commas_at_last = int(totals[-1])
                for p, c, n in zip(positions.tolist(), buf[positions].tolist(), before):
                    if p - last > 1:
                        note_run(last + 1, p)
                    last = p
                    if in_string:
                        if p == escaped:
                            continue
                        if c == 92:
                            escaped = p + 1
                        elif c == 34:
                            in_string = False
                            string_end = previous = p
                            if string_is_data:
                                result.encoded += p + 1 - string_start
                        continue
                    top = stack[-1] if stack else None
                    if top is not None and top.bracket == 91:
                        top.elements += n
                    value = after_colon and n == 0 and top is not None and top.bracket == 123
                    name: str | int | None = None
                    if top is not None:
                        name = top.elements if top.bracket == 91 else (key if value else None)
                    if c == 34:
                        in_string, string_start, string_name = True, p, name
                        string_is_data = (
                            value and key == "data" and len(stack) == 4 and _attention_of(stack) is not None
                        )
                    elif c == 58:
                        if previous == string_end and n == 0 and top is not None and top.bracket == 123:
                            key = _key_text(buf, string_start, string_end)
                            top.keys.append(key)
                    elif c == 91 or c == 123:
                        stack.append(_Open(c, name, p, jumped))
                    elif (c == 93 or c == 125) and stack:
                        closed(stack.pop(), p)
                    after_colon = c == 58
                    previous = p
            commas_so_far += len(commas)
            if release is not None:
                release(lo, hi)
        if region_end - last > 1:
            note_run(last + 1, region_end)
    end = regions[-1][1] if regions else 0
    for container in stack[1:2]:  # a part still open where the skeleton's text stops (a recovered file)
        result.parts[container.name] = (end - container.at - (jumped - container.jumped), container.at)
    return result


def _found(buf: np.ndarray, run: _Run, where: str, size: int) -> str:
    """``metadata.x holds 4.2 MB of numbers`` (or a string, or text) for the bulk ``run``."""
    if run.in_string:
        return f"{where} holds a string of {_mb(size)}"
    sample = buf[run.start : run.start + 256].tobytes().strip(b" \t\r\n,")
    numbers = sample and not sample.strip(b"0123456789.eE+-, \t\r\n")
    return f"{where} holds {_mb(size)} of {'numbers' if numbers else 'text'}"


def _mb(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count} bytes"


def check_skeleton_size(
    buf: np.ndarray,
    regions: list,
    size: int,
    path: str,
    *,
    to_file: Callable[[int], int] = lambda offset: offset,
    release: Callable | None = None,
    step_of: Callable[[int], object] | None = None,
) -> None:
    """Raise a CaptureError when the skeleton (``regions`` of ``buf``, ``size`` bytes in all) is over
    MAX_SKELETON_BYTES once its base64 attention strings are set aside, saying where its bulk is.

    ``to_file`` maps an offset in ``buf`` to one in the file; ``step_of(token index)`` gives a step.
    """
    account = _account(buf, regions, release)
    counted = size - account.encoded
    if counted <= MAX_SKELETON_BYTES:
        return
    parts = sorted(account.parts.items(), key=lambda item: -item[1][0])
    shown = ", ".join(f"{name} {_mb(count)}" for name, (count, _) in parts[:3] if count * 100 >= counted)
    tail = (
        f"Everything outside the generated_tokens[i].attention.data arrays is parsed as one JSON document, "
        f"here {_mb(counted)}{f' ({shown})' if shown else ''}, over the limit of "
        f"{MAX_SKELETON_BYTES / (1 << 20):g} MiB (halo_fast.formats.json_skeleton.MAX_SKELETON_BYTES)"
    )
    bulk = max(account.bulk.values(), key=lambda b: b.total, default=None)
    if bulk is None or bulk.total * 4 < counted:  # no bulk: many small values (a huge prompt?)
        offset = parts[0][1][1] if parts else 0
        message = f"no single array or string is large, but the JSON around the attention arrays is. {tail}"
        raise CaptureError(message, path, to_file(offset))
    run = bulk.longest
    names = run.names[1:] + ([run.name] if run.name is not None else [])
    size_here = run.length
    container = run.container
    if container is not None and container.bracket == 91 and run.name is None and not run.in_string:
        size_here = container.close + 1 - container.at if container.close >= 0 else size_here  # the whole array
    found = _found(buf, run, _path_text(names) or "the top level", size_here)
    if bulk.count > 1:
        pattern = _path_text([-1 if isinstance(n, int) else n for n in names])
        found += f" ({_mb(bulk.total)} in {bulk.count} such places, {pattern})"
    if run.attention is not None:
        attention = _path_text(run.names[1:4])
        if names[3:4] == ["data"]:
            problem = f"{attention}.data is not an array of numbers: {found}"
        else:
            problem = f"{attention} has keys {run.attention.keys}, expected the values in 'data': {found}"
    else:
        problem = f"{found}, outside the attention data arrays"
    step = None
    if step_of is not None and len(names) >= 2 and names[0] == "generated_tokens" and isinstance(names[1], int):
        step = step_of(names[1])
    raise CaptureError(f"{problem}. {tail}", path, to_file(max(run.offset, 0)), step)


def shape_of(attention: dict, path: str, offset: int, step) -> tuple[int, int, int]:
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
    tokens = check_document(document, path).generated_tokens
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
        shape = shape_of(attention, path, int(layout.data_open[i]), step)
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
        raise CaptureError('attention \'data\' is a string without "encoding": "base64"', path, offset, step)
    shape = shape_of(attention, path, offset, step)
    check_encoded(attention, shape[0] * shape[1] * shape[2], path, offset, step)
    shapes[i] = shape
    has_attention[i] = True


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
