"""JSON lines: one generated-token object (or KoboldCPP token event) per line, the streaming form.

The metadata and prompt tokens are a first line (``{"metadata": ..., "prompt_tokens": [...]}``
or flat fields + ``prompt_tokens``) or a sibling ``metadata.json``. Each line goes
through the single-JSON passes on its own (``token_object``), so numbers and base64
decode exactly as there. Event lines of another ``type`` (not "token") are skipped.

Plain files are memory-mapped and lines found with memchr; ``.gz`` files are
decompressed in chunks (``gzip_stream.decompressed_blocks``: every gzip member), one line in memory at a time, twice
(pass 1 shapes, pass 2 values) -- never the whole text. Error offsets in a .gz are into
the decompressed text.

Truncation: a file whose last line is unterminated and holds an object cut short, or a
gzip stream that ends early, is truncated; ``recover=True`` keeps every complete line
before the cut (``recovery`` says where). A broken line before that is corruption and
always an error. In a damaged gzip stream only whole members whose checksum matched are
trusted (text decoded after damage can be wrong without any error).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from ..errors import CaptureError
from .base import SourceOptions
from .gzip_stream import GzipStreamError, gz_lines
from .mapped import MappedFile
from .token_list import TokenListSource, split_metadata

RECOVER_HINT = "(recover=True, or --recover, keeps them)"
WHOLE_CAPTURE = (
    "not JSON lines: the first line holds a whole single-JSON capture (a 'generated_tokens' list); "
    "name the file .json (or .json.gz) to read it as one"
)
NOT_A_CUT = (
    "; recover=True does not skip it: only an unterminated last line (or a gzip stream ending early) "
    "is truncation, a damaged line before it is corruption"
)


def _is_metadata(record: dict) -> bool:
    return "prompt_tokens" in record or ("metadata" in record and "attention" not in record and "step" not in record)


def _cut_is_metadata(text: bytes) -> bool:
    """A cut first line: the metadata line (or too short to tell), not a token line."""
    head = text.lstrip()
    if b'"prompt_tokens"' in head or head.startswith(b'{"metadata"'):
        return True
    return not any(key in head for key in (b'"step"', b'"type"', b'"attention"'))


class JsonLines(TokenListSource):
    format_name = "jsonl"

    def __init__(self, path, *, options: SourceOptions | None = None, gzipped: bool = False):
        super().__init__(path, options=options)
        self.gzipped = gzipped
        self.format_name = "jsonl.gz" if gzipped else "jsonl"
        self.mapped = None
        self.skipped = 0
        self._cursor = None
        self._end = None  # with a recovered cut: where the kept text ends (pass 2 stops there)

    def _lines(self):
        """(offset, framed buffer, terminated) of every non-blank line (before ``_end``)."""
        from .token_object import frame_bytes, framed

        if self.gzipped:
            try:
                for offset, line, terminated in gz_lines(self.path):
                    if self._end is not None and offset >= self._end:
                        return
                    if line.strip():
                        yield offset, frame_bytes(line), terminated
            except GzipStreamError:
                if self._end is None:  # a recovered stream's damage lies past the kept text
                    raise
            return
        m = self.mapped
        stop = m.size if self._end is None else self._end
        position = 0
        while position < stop:
            end = m.find(b"\n", position)
            end = m.size if end < 0 else end
            if end > position and (end - position >= 64 or m.read(position, end).strip()):
                buffer, view = framed(end - position)
                np.frombuffer(view, dtype=np.uint8)[:] = m.bytes[position:end]
                yield position, buffer, end < m.size
            m.release(position, end)
            position = end + 1

    def __enter__(self) -> JsonLines:
        if not self.gzipped:
            self.mapped = MappedFile(self.path).__enter__()
        try:
            self._plan()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _plan(self) -> None:
        from .token_object import PREFIX, SUFFIX, parse_token

        metadata = None
        metadata_end = None
        records, shapes, has, self._starts, ends = [], [], [], [], []
        cut = None
        lines = self._lines()
        try:
            for k, (offset, buffer, terminated) in enumerate(lines):
                try:
                    token = parse_token(buffer, self.path, offset, self.window_bytes)
                except CaptureError as exc:
                    cut = self._cut_at(exc, lines, k, offset, buffer, terminated, len(records))
                    break
                record = token.record
                if k == 0 and isinstance(record.get("generated_tokens"), list):  # detect sends most to json_single
                    raise CaptureError(WHOLE_CAPTURE, self.path, offset)
                line_end = offset + len(buffer) - len(PREFIX) - len(SUFFIX)
                if k == 0 and metadata is None and _is_metadata(record):
                    metadata = split_metadata(record, self.path)
                    metadata_end = line_end
                    continue
                if "type" in record and "attention" not in record:  # an event of another kind
                    self.skipped += 1
                    continue
                records.append(record)
                shapes.append(token.shape)
                has.append(token.has_attention)
                self._starts.append(offset)
                ends.append(line_end)
        except GzipStreamError as exc:  # every line decompressed before the problem was complete
            cut = self._stream_cut(exc, exc.lines_end, int(exc.text_end > exc.lines_end), None, len(records))
        finally:
            lines.close()
        if cut is not None and cut["stream"] is not None and cut["stream"].kind == "damaged":
            # only lines whose newline lies in the trusted text count; the rest may be wrong
            trusted = cut["stream"].trusted
            keep = sum(1 for end in ends if end < trusted)
            if metadata_end is not None and metadata_end >= trusted:
                cut["metadata_line"] = True
            cut.update(
                truncated_at=trusted,
                complete_tokens=keep,
                partial_tokens=cut["partial_tokens"] + len(records) - keep,
                kept_bytes=ends[keep - 1] + 1 if keep else (metadata_end + 1 if metadata_end is not None else 0),
            )
            del records[keep:], shapes[keep:], has[keep:], self._starts[keep:]
        if cut is not None:
            self._recovered(cut, metadata is None and not records and cut["partial_tokens"] == 0)
        if metadata is None:
            metadata = self._sibling_metadata()
        self.metadata, prompt = metadata
        self.set_prompt(prompt)
        shapes = np.array(shapes, dtype=np.int64).reshape(-1, 3)
        self.finish_tokens(records, shapes, np.array(has, dtype=bool), lambda i: (self.path, self._starts[i]))

    def _sibling_metadata(self) -> tuple[dict, list]:
        sibling = os.path.join(os.path.dirname(os.path.abspath(self.path)), "metadata.json")
        if os.path.isfile(sibling):
            from .directory import _read_small_json

            return split_metadata(_read_small_json(sibling), sibling)
        message = "no metadata line and no sibling metadata.json: empty metadata and prompt"
        if self.strict:
            raise CaptureError(message, self.path, 0)
        warnings.warn(f"{self.path}: {message}", stacklevel=4)
        return {}, []

    def _cut_at(
        self, exc: CaptureError, lines, k: int, offset: int, buffer: bytearray, terminated: bool, complete: int
    ) -> dict:
        """Line ``k`` does not parse: a cut (the record of it) when it is an unterminated last line
        holding an object cut short (or a damaged gzip stream made it); otherwise raise."""
        from .token_object import PREFIX, SUFFIX, is_cut_object, step_in

        text = bytes(buffer[len(PREFIX) : len(buffer) - len(SUFFIX)])
        metadata_line = k == 0 and _cut_is_metadata(text)
        step = None if metadata_line else step_in(text, complete)
        damage = None
        if self.gzipped:  # the rest of the stream says whether zlib gave this line before noticing damage
            try:
                for _ in lines:
                    pass
            except GzipStreamError as error:
                damage = error
            if damage is not None and damage.kind != "early":
                return self._stream_cut(damage, offset, int(not metadata_line), step, complete, metadata_line)
        if not terminated and is_cut_object(text, self.window_bytes):
            return {
                "truncated_at": offset + len(text),
                "kept_bytes": offset,
                "partial_tokens": int(not metadata_line),
                "step": step,
                "metadata_line": metadata_line,
                "complete_tokens": complete,
                "stream": damage,
            }
        reason = exc.reason
        if reason.startswith("truncated at byte"):  # a token object cut short, but not at the end of the file
            reason = "the line is an incomplete JSON object"
        where = exc.offset if exc.offset is not None else offset
        raise CaptureError(reason + (NOT_A_CUT if self.recover else ""), self.path, where, exc.step) from None

    def _stream_cut(
        self, damage: GzipStreamError, kept: int, partial: int, step, complete: int, metadata_line: bool = False
    ) -> dict:
        return {
            "truncated_at": damage.text_end,
            "kept_bytes": kept,
            "partial_tokens": partial,
            "step": step,
            "metadata_line": metadata_line,
            "complete_tokens": complete,
            "stream": damage,
        }

    def _recovered(self, cut: dict, nothing_seen: bool) -> None:
        """Raise for a cut unless recovering; then keep the text before it and set ``recovery``."""
        at, complete, stream = cut["truncated_at"], cut["complete_tokens"], cut["stream"]
        unit = "decompressed byte" if self.gzipped else "byte"
        if stream is None:
            problem = f"truncated at {unit} {at}"
        elif stream.kind == "early":
            problem = f"gzip stream ends early at decompressed byte {at}"
        else:
            problem = f"truncated at decompressed byte {at}"
        why = f": {stream.reason}" if stream is not None and stream.kind == "damaged" else ""
        if not self.recover:
            raise CaptureError(
                f"{problem} after {complete} complete generated tokens{why} {RECOVER_HINT}", self.path, at, cut["step"]
            )
        if cut["metadata_line"] or nothing_seen:
            raise CaptureError(f"{problem} before any generated token{why}: nothing to recover", self.path, at)
        self._end = cut["kept_bytes"]
        self.recovery = {
            "truncated_at": at,
            "complete_tokens": complete,
            "partial_tokens": cut["partial_tokens"],
            "kept_bytes": cut["kept_bytes"],
        }
        if self.gzipped:
            self.recovery["offsets"] = "decompressed"
            if stream is not None:
                self.recovery["gzip_error"] = "ends early" if stream.kind == "early" else stream.detail

    def __exit__(self, *exc_info) -> None:
        if self.mapped is not None:
            self.mapped.__exit__(*exc_info)
            self.mapped = None

    def _token_at(self, offset: int, end_hint=None):
        from .token_object import framed, parse_token

        m = self.mapped
        end = m.find(b"\n", offset)
        end = m.size if end < 0 else end
        buffer, view = framed(end - offset)
        np.frombuffer(view, dtype=np.uint8)[:] = m.bytes[offset:end]
        return parse_token(buffer, self.path, offset, self.window_bytes)

    def token_values(self, i: int) -> np.ndarray:
        from .token_object import parse_token

        if not self.gzipped:
            return self._token_at(self._starts[i]).values()
        # gzip: continue the stream when reading forward (the usual order), restart it otherwise
        target = self._starts[i]
        if self._cursor is None or self._cursor[0] > target:
            self._cursor = [-1, self._lines()]
        for offset, buffer, _ in self._cursor[1]:
            self._cursor[0] = offset
            if offset == target:
                return parse_token(buffer, self.path, offset, self.window_bytes).values()
        raise CaptureError("the gzip file changed while reading", self.path, target)

    def decode(self) -> np.ndarray:
        from .mapped import output_buffer
        from .token_object import parse_token

        values = output_buffer(int(self.offsets[-1]))
        rows = {start: i for i, start in enumerate(self._starts)}
        with self.token_bar(int(self.has_attention.sum()), "decode") as bar:
            for offset, buffer, _ in self._lines():  # one pass in file order (a single stream for .gz)
                i = rows.get(offset)
                if i is None or not self.has_attention[i]:
                    continue
                values[self.offsets[i] : self.offsets[i + 1]] = parse_token(
                    buffer, self.path, offset, self.window_bytes
                ).values()
                bar.update(1)
        return values
