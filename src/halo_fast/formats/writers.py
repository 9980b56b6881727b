"""Write a synthetic capture in the other containers of FORMATS.md (directories, JSON lines, gzip).

Every container is written from the same ``SyntheticCapture`` as
``synth.write_capture``, with the same number text, so each must decode to
arrays identical to the single-JSON file's: the tests' ground truth, and
sample inputs for tools that consume these formats.
"""

from __future__ import annotations

import base64
import gzip
import json
import os

import numpy as np

from ..synth import SyntheticCapture, _TokenWriter, dumps


def _synth(kwargs: dict) -> SyntheticCapture:
    return SyntheticCapture(**kwargs)


def _metadata_doc(synth: SyntheticCapture, style: str) -> dict:
    return {**synth.metadata(style), "prompt_tokens": synth.prompt_tokens}


def write_directory(path, *, kind: str = "bin", style: str = "js", skip=(), **kwargs) -> str:
    """A stream-to-disk directory; ``kind`` "bin" (meta + raw float32) or "json" (token files).
    ``skip``: token indices whose files are left out (to make gaps)."""
    synth = _synth(kwargs)
    writer = _TokenWriter(synth, style)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "metadata.json"), "w", encoding="utf-8") as f:
        json.dump(_metadata_doc(synth, style), f, indent=2)
    for step in range(synth.tokens):
        if step in skip:
            continue
        base = os.path.join(path, f"token_{step:05d}")
        if kind == "json":
            with open(base + ".json", "wb") as f:
                f.write(writer.token_bytes(step))
            continue
        token = synth.generated_token(step)
        ctx = synth.prompt + step
        has = synth.has_attention(step)
        meta = {
            "file_index": step,
            "generation_step": step,
            "token_id": token["token_id"],
            "text": token["text"],
            "position": token["position"],
            "timestamp": token["timestamp"],
            "attention_shape": [synth.layers, synth.heads, ctx] if has else None,
            "attention_context_length": ctx if has else None,
        }
        with open(base + "_meta.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
        if has:
            synth.attention(step).astype("<f4").tofile(base + "_attn.bin")
    return os.fspath(path)


def _event(synth: SyntheticCapture, step: int, events: bool) -> dict:
    token = synth.generated_token(step)
    attention = None
    if synth.has_attention(step):
        values = synth.attention(step)
        ctx = synth.prompt + step
        attention = {
            "format": "per_layer",
            "shape": [synth.layers, synth.heads, ctx],
            "context_length": ctx,
            "encoding": "base64",
            "dtype": "float32",
            "data": base64.b64encode(values.astype("<f4").tobytes()).decode("ascii"),
        }
    if events:
        return {"type": "token", "token": token, "attention": attention}
    return {**token, "attention": attention}


def jsonlines_bytes(
    *, style: str = "js", metadata: str = "line", encoding: str = "json", events: bool = False, **kwargs
):
    """Lines of the JSON-lines form, one bytes object per line (generator)."""
    if style == "indent":
        raise ValueError("JSON lines cannot be indented")
    synth = _synth(kwargs)
    writer = _TokenWriter(synth, style)
    if metadata == "line":
        yield dumps({"metadata": synth.metadata(style), "prompt_tokens": synth.prompt_tokens}, style).encode() + b"\n"
    for step in range(synth.tokens):
        if encoding == "json" and not events:
            yield writer.token_bytes(step) + b"\n"
        else:
            yield dumps(_event(synth, step, events), style).encode() + b"\n"


def write_jsonlines(path, *, compress: bool = False, metadata: str = "line", style: str = "js", **kwargs) -> str:
    """A JSON-lines capture; ``metadata`` "line" (first line) or "sibling" (metadata.json beside it)."""
    path = os.fspath(path)
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        for line in jsonlines_bytes(metadata=metadata, style=style, **kwargs):
            f.write(line)
    if metadata == "sibling":
        synth = _synth({k: v for k, v in kwargs.items() if k not in ("encoding", "events")})
        with open(os.path.join(os.path.dirname(os.path.abspath(path)), "metadata.json"), "w") as f:
            json.dump(_metadata_doc(synth, style), f, indent=2)
    return path


def gzip_file(source, target, level: int = 6) -> str:
    """``target`` = gzip of ``source``, streamed."""
    with open(source, "rb") as f, gzip.open(target, "wb", compresslevel=level) as g:
        while chunk := f.read(1 << 20):
            g.write(chunk)
    return os.fspath(target)


def synth_values(**kwargs) -> list[np.ndarray | None]:
    synth = _synth(kwargs)
    return [synth.attention(s).ravel() if synth.has_attention(s) else None for s in range(synth.tokens)]
