"""JSON lines: one generated-token object (or KoboldCPP token event) per line, the streaming form.

The metadata and prompt tokens are a first line (``{"metadata": ..., "prompt_tokens": [...]}``
or flat fields + ``prompt_tokens``) or a sibling ``metadata.json``. Each line goes
through the single-JSON passes on its own (``token_object``), so numbers and base64
decode exactly as there. Event lines of another ``type`` (not "token") are skipped.

Plain files are memory-mapped and lines found with memchr; ``.gz`` files are
decompressed in chunks, one line in memory at a time, twice (pass 1 shapes, pass 2
values) -- never the whole text. Error offsets in a .gz are into the decompressed text.
"""

from __future__ import annotations

import gzip
import json
import os
import warnings

import numpy as np

from ..errors import CaptureError
from .mapped import MappedFile
from .token_list import TokenListSource, split_metadata

GZIP_CHUNK = 1 << 20


def gz_lines(path: str, chunk: int = GZIP_CHUNK):
    """(offset, line bytes) of a gzip file's decompressed text, streamed ``chunk`` bytes at a time."""
    try:
        with gzip.open(path, "rb") as g:
            pending = bytearray()
            offset = 0
            searched = 0
            while True:
                block = g.read(chunk)
                if not block:
                    break
                pending += block
                start = 0
                while (newline := pending.find(b"\n", max(start, searched))) >= 0:
                    yield offset + start, bytes(pending[start:newline])
                    start = newline + 1
                del pending[:start]
                offset += start
                searched = len(pending)
            if pending:
                yield offset, bytes(pending)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise CaptureError(f"damaged gzip stream: {exc}", path) from None


def _is_metadata(record: dict) -> bool:
    return "prompt_tokens" in record or ("metadata" in record and "attention" not in record and "step" not in record)


class JsonLines(TokenListSource):
    format_name = "jsonl"

    def __init__(self, path, window_bytes: int = 4 << 20, progress: bool = False, strict: bool = False,
                 gzipped: bool = False):
        self.path = os.fspath(path)
        self.window_bytes = window_bytes
        self.progress = progress
        self.strict = strict
        self.gzipped = gzipped
        self.format_name = "jsonl.gz" if gzipped else "jsonl"
        self.mapped = None
        self.skipped = 0
        self._cursor = None

    def _lines(self):
        """(offset, framed buffer) of every non-blank line."""
        from .token_object import frame_bytes, framed

        if self.gzipped:
            for offset, line in gz_lines(self.path):
                if line.strip():
                    yield offset, frame_bytes(line)
            return
        m = self.mapped
        position = 0
        while position < m.size:
            end = m.find(b"\n", position)
            end = m.size if end < 0 else end
            if end > position and (end - position >= 64 or m.read(position, end).strip()):
                buffer, view = framed(end - position)
                np.frombuffer(view, dtype=np.uint8)[:] = m.bytes[position:end]
                yield position, buffer
            m.release(position, end)
            position = end + 1

    def __enter__(self) -> "JsonLines":
        from .token_object import parse_token

        if not self.gzipped:
            self.mapped = MappedFile(self.path).__enter__()
        try:
            metadata = None
            records, shapes, has, self._starts = [], [], [], []
            for k, (offset, buffer) in enumerate(self._lines()):
                token = parse_token(buffer, self.path, offset, self.window_bytes)
                record = token.record
                if k == 0 and metadata is None and _is_metadata(record):
                    metadata = split_metadata(record, self.path)
                    continue
                if "type" in record and "attention" not in record:  # an event of another kind
                    self.skipped += 1
                    continue
                records.append(record)
                shapes.append(token.shape)
                has.append(token.has_attention)
                self._starts.append(offset)
            if metadata is None:
                sibling = os.path.join(os.path.dirname(os.path.abspath(self.path)), "metadata.json")
                if os.path.isfile(sibling):
                    from .directory import _read_small_json

                    metadata = split_metadata(_read_small_json(sibling), sibling)
                else:
                    message = "no metadata line and no sibling metadata.json: empty metadata and prompt"
                    if self.strict:
                        raise CaptureError(message, self.path, 0)
                    warnings.warn(f"{self.path}: {message}", stacklevel=2)
                    metadata = ({}, [])
            self.metadata, prompt = metadata
            self.set_prompt(prompt)
            shapes = np.array(shapes, dtype=np.int64).reshape(-1, 3)
            self.finish_tokens(records, shapes, np.array(has, dtype=bool),
                               lambda i: (self.path, self._starts[i]))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

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
        for offset, buffer in self._cursor[1]:
            self._cursor[0] = offset
            if offset == target:
                return parse_token(buffer, self.path, offset, self.window_bytes).values()
        raise CaptureError("the gzip file changed while reading", self.path, target)

    def decode(self) -> np.ndarray:
        from .mapped import output_buffer
        from .token_object import parse_token

        values = output_buffer(int(self.offsets[-1]))
        rows = {start: i for i, start in enumerate(self._starts)}
        for offset, buffer in self._lines():  # one pass in file order (a single stream for .gz)
            i = rows.get(offset)
            if i is None or not self.has_attention[i]:
                continue
            values[self.offsets[i] : self.offsets[i + 1]] = parse_token(buffer, self.path, offset,
                                                                        self.window_bytes).values()
        return values
