"""Writing synthetic captures in every format a capture can come in: the single JSON
(``write_capture``, streamed, in parallel for large captures), capture directories, JSON lines
and gzip (for the format tests and the bench)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import sys

import numpy as np

from ..store.atomic import atomic_path
from .model import SyntheticCapture
from .numbers import STYLES, dumps, format_floats

_PLACEHOLDER = "@@halo_fast_synth_placeholder@@"
_TOKEN_SEPARATOR = {"js": ",", "py": ", ", "indent": ",\n    "}


class TokenWriter:
    """Text of the document frame and of one generated token, in one style."""

    def __init__(self, synth: SyntheticCapture, style: str):
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.synth, self.style = synth, style
        self.placeholder = dumps(_PLACEHOLDER, style)

    def frame(self, metadata: dict) -> tuple[str, str]:
        doc = {"metadata": metadata, "prompt_tokens": self.synth.prompt_tokens, "generated_tokens": []}
        if self.synth.tokens == 0:
            return dumps(doc, self.style), ""
        doc["generated_tokens"] = [_PLACEHOLDER]
        head, tail = dumps(doc, self.style).split(self.placeholder)
        return head, tail

    def token(self, step: int, values: np.ndarray | None = None) -> list[str]:
        """The token's text in pieces: [before data, data, after data] (or one piece)."""
        synth = self.synth
        tok = synth.generated_token(step)
        if not synth.has_attention(step):
            tok["attention"] = None
            return [self._indent(dumps(tok, self.style))]
        if values is None:
            values = synth.attention(step)
        ctx = synth.prompt + step
        tok["attention"] = {"shape": [synth.layers, synth.heads, ctx], "context_length": ctx, "data": _PLACEHOLDER}
        before, after = self._indent(dumps(tok, self.style)).split(self.placeholder)
        return [before, format_floats(values, self.style), after]

    def _indent(self, text: str) -> str:
        # a token is an item of "generated_tokens": two levels deep in the document
        return text.replace("\n", "\n    ") if self.style == "indent" else text

    def token_bytes(self, step: int) -> bytes:
        return "".join(self.token(step)).encode("utf-8")


# Worker side of the parallel writer: each process builds its own SyntheticCapture.
_WORKER: TokenWriter | None = None


def _worker_init(kwargs: dict, style: str) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: no traceback per worker
    _WORKER = TokenWriter(SyntheticCapture(**kwargs), style)


def _worker_token(step: int) -> bytes:
    return _WORKER.token_bytes(step)


def _in_order(pool, count: int, depth: int):
    """Token texts from the pool in step order, with at most ``depth`` in flight (bounded memory)."""
    from collections import deque

    pending: deque = deque()
    submitted = 0
    for _ in range(count):
        while submitted < count and len(pending) < depth:
            pending.append(pool.apply_async(_worker_token, (submitted,)))
            submitted += 1
        yield pending.popleft().get()


def _default_workers(synth: SyntheticCapture) -> int:
    values = synth.layers * synth.heads * (synth.prompt + synth.tokens // 2) * synth.tokens
    if values < 4_000_000:  # < ~80 MB: not worth starting processes
        return 0
    return min(os.cpu_count() or 1, 8)


def write_capture(
    path,
    *,
    layers=28,
    heads=28,
    prompt=200,
    tokens=64,
    seed=0,
    style="js",
    logits=False,
    null_first=True,
    progress=False,
    workers=None,
) -> dict:
    """Write a synthetic capture to ``path`` (atomically) and return the metadata written.

    ``style``: ``"js"`` (``JSON.stringify``), ``"py"`` (``json.dumps``) or ``"indent"``
    (``json.dumps(indent=2)``).  ``logits``: write raw pre-softmax logits instead of
    probabilities.  ``null_first``: step 0 has ``"attention": null``.  ``progress``: a
    tqdm bar on stderr.  ``workers``: processes formatting tokens in parallel (``None``:
    one per CPU for large captures, ``0``: in this process); the output does not depend on it.

    The truth is in ``metadata["synth"]``: the planted sentence groups (``name``,
    ``sentences`` as [turn_id, sentence_id], ``decay_rate``, ``initial_share``,
    ``positions``), ``bos``, ``anchors`` and ``local_window``.
    """
    kwargs = dict(
        layers=layers, heads=heads, prompt=prompt, tokens=tokens, seed=seed, logits=logits, null_first=null_first
    )
    synth = SyntheticCapture(**kwargs)
    writer = TokenWriter(synth, style)
    metadata = synth.metadata(style)
    head, tail = writer.frame(metadata)
    if workers is None:
        workers = _default_workers(synth)
    bar = None
    pool = None
    try:
        with atomic_path(path, force=True) as tmp, open(tmp, "wb", buffering=1 << 22) as out:
            out.write(head.encode("utf-8"))
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=synth.tokens, unit="tok", file=sys.stderr, desc=os.path.basename(path))
            separator = _TOKEN_SEPARATOR[style].encode()
            if workers and synth.tokens > 1:
                import multiprocessing

                ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
                pool = ctx.Pool(workers, initializer=_worker_init, initargs=(kwargs, style))
                chunks = _in_order(pool, synth.tokens, depth=2 * workers)
            else:
                chunks = (writer.token_bytes(step) for step in range(synth.tokens))
            for step, chunk in enumerate(chunks):
                if step:
                    out.write(separator)
                out.write(chunk)
                if bar is not None:
                    bar.update(1)
            out.write(tail.encode("utf-8"))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.close()
    return metadata


def estimate_tokens(
    size_bytes: float, *, layers=28, heads=28, prompt=200, seed=0, style="js", logits=False, null_first=True
) -> int:
    """How many generated tokens make a capture of about ``size_bytes`` (from sampled tokens)."""
    rows = layers * heads

    def bytes_per_value(step):
        synth = SyntheticCapture(
            layers=layers, heads=heads, prompt=prompt, tokens=step + 1, seed=seed, logits=logits, null_first=False
        )
        writer = TokenWriter(synth, style)
        return len(writer.token_bytes(step)) / (rows * (prompt + step))

    def size(n, bpv):
        steps = np.arange(n)
        with_attention = steps[1:] if null_first else steps
        return 2000 + 100 * prompt + 150 * n + bpv * rows * float(np.sum(prompt + with_attention))

    def solve(bpv):
        lo, hi = 0, 1
        while size(hi, bpv) < size_bytes:
            hi *= 2
        while lo < hi:
            mid = (lo + hi) // 2
            if size(mid, bpv) < size_bytes:
                lo = mid + 1
            else:
                hi = mid
        return lo

    n = solve(bytes_per_value(0))
    return max(1, solve(bytes_per_value(max(0, n // 2))))


def _synth(kwargs: dict) -> SyntheticCapture:
    return SyntheticCapture(**kwargs)


def _metadata_doc(synth: SyntheticCapture, style: str) -> dict:
    return {**synth.metadata(style), "prompt_tokens": synth.prompt_tokens}


def write_directory(path, *, kind: str = "bin", style: str = "js", skip=(), **kwargs) -> str:
    """A stream-to-disk directory; ``kind`` "bin" (meta + raw float32) or "json" (token files).
    ``skip``: token indices whose files are left out (to make gaps)."""
    synth = _synth(kwargs)
    writer = TokenWriter(synth, style)
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
    writer = TokenWriter(synth, style)
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
