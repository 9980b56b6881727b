"""Attention sent as base64 text (KoboldCPP's token events) instead of a JSON number array.

``{"encoding": "base64", "dtype": "float32", "data": "dTNE..."}`` is the tensor's
little-endian float32 bytes. The bytes already are the exact values, so decoding
is a bounds check and one C-speed base64 pass into the caller's float32 slice:
no number parsing at all. ``"format": "aggregated"`` rows (one row already
reduced over layers and heads) are treated as shape ``[1, 1, ctx]``.
"""

from __future__ import annotations

import binascii

import numpy as np

from ..errors import CaptureError

DTYPES = ("float32", "f4", "<f4", "float32le")


def is_encoded(attention: dict) -> bool:
    """True when ``attention['data']`` is a base64 string this module decodes."""
    return isinstance(attention.get("data"), str) and attention.get("encoding") == "base64"


def check_encoded(attention: dict, count: int, path, offset, step) -> None:
    """Raise before any allocation when the text cannot hold exactly ``count`` float32 values."""
    dtype = attention.get("dtype", "float32")
    if dtype not in DTYPES:
        raise CaptureError(f"base64 attention of dtype {dtype!r} is not supported (float32 only)", path, offset, step)
    text = attention["data"]
    expected = 4 * -(-4 * count // 3)
    if len(text) != expected:
        raise CaptureError(
            f"base64 data is {len(text)} characters; shape needs {count} float32 values = {expected} characters",
            path,
            offset,
            step,
        )


def decode_encoded(attention: dict, out: np.ndarray, path, offset, step) -> None:
    """Decode the base64 float32 values into ``out`` (float32, already the right length)."""
    try:
        raw = binascii.a2b_base64(attention["data"], strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise CaptureError(f"invalid base64 attention data: {exc}", path, offset, step) from None
    if len(raw) != out.nbytes:
        raise CaptureError(f"base64 data decodes to {len(raw)} bytes, the shape needs {out.nbytes}", path, offset, step)
    out[:] = np.frombuffer(raw, dtype="<f4")


def aggregated_shape(attention: dict):
    """``[1, 1, ctx]`` for an aggregated row (shape may be sent as [ctx] or [1, 1, ctx]); else None."""
    if attention.get("format") != "aggregated":
        return None
    shape = attention.get("shape")
    if isinstance(shape, list) and len(shape) in (1, 3) and all(d == 1 for d in shape[:-1]):
        return [1, 1, shape[-1]]
    if shape is None and "context_length" in attention:
        return [1, 1, attention["context_length"]]
    return shape  # _shape_of reports it
