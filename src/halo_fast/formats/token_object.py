"""One generated-token object on its own (a ``token_XXXXX.json`` file, a JSON line, an event).

Rather than a second JSON decoder, the object's bytes are framed as a one-token
capture (``{"generated_tokens":[`` ... ``]}``) in a buffer of their own and go
through the single-JSON reader's own passes: the same structure walk, shape
checks, exact float parser and base64 handling, so every container decodes to
bit-identical values. Error offsets are mapped back to the object's file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from ..errors import CaptureError
from .base import WINDOW_BYTES

PREFIX = b'{"generated_tokens":['
SUFFIX = b"]}"


class BufferFile:
    """The part of ``MappedFile``'s interface the single-JSON passes use, over bytes in memory."""

    def __init__(self, buffer: bytearray, path: str):
        self._buffer = buffer
        self.bytes = np.frombuffer(buffer, dtype=np.uint8)
        self.path = path

    @property
    def size(self) -> int:
        return len(self._buffer)

    def ensure(self, stop: int) -> None:
        pass  # all in memory

    def release(self, start: int, stop: int) -> None:
        pass

    def find(self, needle: bytes, start: int) -> int:
        return self._buffer.find(needle, start)

    def read(self, start: int, stop: int) -> bytes:
        return bytes(self._buffer[start:stop])


def framed(size: int) -> tuple[bytearray, memoryview]:
    """A buffer holding prefix + ``size`` bytes + suffix, and the writable view where the object goes."""
    buffer = bytearray(len(PREFIX) + size + len(SUFFIX))
    buffer[: len(PREFIX)] = PREFIX
    buffer[len(PREFIX) + size :] = SUFFIX
    return buffer, memoryview(buffer)[len(PREFIX) : len(PREFIX) + size]


def frame_bytes(*pieces) -> bytearray:
    """The framed buffer of the concatenated ``pieces`` (bytes-like), copied once."""
    buffer, view = framed(sum(len(piece) for piece in pieces))
    at = 0
    for piece in pieces:
        view[at : at + len(piece)] = piece
        at += len(piece)
    return buffer


@dataclass
class TokenObject:
    """A parsed token object: its fields (``attention`` without ``data``), shape and decoder state."""

    record: dict
    shape: np.ndarray  # int64 [3]
    has_attention: bool
    count: int
    _scan: SimpleNamespace | None  # None when parsed for its fields only (``parse_token(data_span=...)``)

    def values(self) -> np.ndarray:
        """The token's attention, flat float32, exact."""
        from .json_values import decode_one

        if self._scan is None:
            raise ValueError("this token object was parsed without its values")
        try:
            return decode_one(self._scan, 0)
        except CaptureError as exc:
            raise _relocated(exc, self._scan.path, self._scan.base_offset, self._scan.size) from None


def _relocated(exc: CaptureError, path: str, base_offset: int, size: int) -> CaptureError:
    offset = exc.offset
    if offset is not None:
        offset = base_offset + min(max(offset - len(PREFIX), 0), size)
    reason = exc.reason.replace("generated token #0 ", "the token object ")
    if reason.startswith("truncated at byte"):  # the frame's own byte count and recovery hint do not apply
        reason = f"truncated at byte {base_offset + size}: the token object is incomplete"
    return CaptureError(reason, path, offset, exc.step)


def parse_token(
    buffer: bytearray, path: str, base_offset: int = 0, window_bytes: int = WINDOW_BYTES, data_span: int | None = None
) -> TokenObject:
    """Structure pass over a framed token object (see ``framed``); the values are decoded by ``.values()``.

    ``data_span``: the caller cut the bulk of the attention array out of the text
    (``"data":[]`` is left) and gives the length it had, for the size checks; such a
    token gives its fields and shape only, not values.
    """
    from .json_scan import check_data_content, scan_structure
    from .json_skeleton import Skeleton, plan_tokens

    mapped = BufferFile(buffer, path)
    size = len(buffer) - len(PREFIX) - len(SUFFIX)
    try:
        layout = scan_structure(mapped, window_bytes)
        try:
            document = Skeleton(mapped, layout).parse()
        except CaptureError:
            check_data_content(mapped, layout.events)
            raise
        if data_span is not None and layout.data_open[0] >= 0:
            layout.data_close = layout.data_open + data_span
        tokens, shapes, has_attention, offsets = plan_tokens(document, layout, mapped)
    except CaptureError as exc:
        raise _relocated(exc, path, base_offset, size) from None
    if len(tokens) != 1:
        raise CaptureError(f"expected one token object, found {len(tokens)} values", path, base_offset)
    token = tokens[0]
    record = token
    if token.get("type") == "token" and isinstance(token.get("token"), dict):  # a KoboldCPP event
        record = dict(token["token"])
        record["attention"] = token.get("attention")
    attention = record.get("attention")
    if isinstance(attention, dict) and "data" in attention:
        record = dict(record)
        record["attention"] = {k: v for k, v in attention.items() if k != "data"}
    scan = None
    if data_span is None:
        scan = SimpleNamespace(
            layout=layout, offsets=offsets, mapped=mapped, tokens=tokens, path=path, base_offset=base_offset, size=size
        )
    return TokenObject(record, shapes[0].copy(), bool(has_attention[0]), int(offsets[1]), scan)


def read_token_file(path: str, window_bytes: int = WINDOW_BYTES) -> TokenObject:
    """Parse a file holding one token object."""
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            buffer, view = framed(size)
            got = f.readinto(view)
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc.strerror}", path) from None
    if got != size:
        raise CaptureError(f"short read: {got} of {size} bytes", path, got)
    if not size:
        raise CaptureError("empty file", path, 0)
    return parse_token(buffer, path, 0, window_bytes)


def is_cut_object(text: bytes, window_bytes: int = WINDOW_BYTES) -> bool:
    """Whether ``text`` is a JSON object cut short: sound structure so far (the single-JSON walker
    finds no error), opened, never closed -- what a write interrupted mid-object leaves.

    Like single-JSON recovery, only the structure is judged: the partial object's content is dropped unread.
    """
    from .json_scan import scan_structure

    try:
        layout = scan_structure(BufferFile(bytearray(PREFIX + text), ""), window_bytes, recover=True)
    except CaptureError:
        return False
    recovery = layout.recovery
    return recovery is not None and recovery["complete_tokens"] == 0 and recovery["partial_tokens"] == 1


def step_in(text: bytes, default):
    """The step a (possibly cut) token object's first bytes name, else ``default``."""
    from .json_scan import STEP_FIELD

    found = STEP_FIELD.search(text[:4096])
    return int(found.group(1)) if found else default
