"""Small capture documents built from given tensors, for tests of what comes after decoding."""

from __future__ import annotations

import json


def capture_doc(tensors, steps=None, null_first=False, texts=None):
    """A capture dict holding the given float32 [L, H, ctx] tensors as its generated tokens."""
    prompt = [
        {"token_id": i, "text": f" p{i}", "position": i, "turn_id": 0, "message_role": "user", "sentence_id": i // 3}
        for i in range(max((t.shape[2] for t in tensors), default=1))
    ]
    tokens = []
    for i, t in enumerate(tensors):
        step = steps[i] if steps is not None else i
        attention = None
        if not (null_first and i == 0):
            attention = {
                "shape": list(t.shape),
                "context_length": t.shape[2],
                "data": [float(x) for x in t.ravel()],
            }
        tokens.append(
            {
                "step": step,
                "token_id": 100 + i,
                "text": (texts or {}).get(i, f" g{i}"),
                "position": len(prompt) + i,
                "timestamp": 1000 + i,
                "attention": attention,
            }
        )
    return {"metadata": {"model": "test"}, "prompt_tokens": prompt, "generated_tokens": tokens}


def write(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f)
    return str(path)


def capture_in_memory(doc, path="memory.json"):
    """The :class:`~halo_fast.Capture` of a document from :func:`capture_doc`, built without the decoder
    (for tests that run the analysis kernels as plain Python)."""
    import numpy as np

    from halo_fast.capture import PROMPT_COLUMNS, TOKEN_COLUMNS, Capture, Table

    records, shapes, blocks = [], [], []
    for token in doc["generated_tokens"]:
        attention = token["attention"]
        shape = attention["shape"] if attention else [0, 0, 0]
        records.append(dict(token, context_length=shape[2], has_attention=attention is not None))
        shapes.append(shape)
        blocks.append(np.array(attention["data"] if attention else [], dtype=np.float32))
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blocks])]).astype(np.int64)
    values = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return Capture(
        doc["metadata"],
        Table.from_records(doc["prompt_tokens"], PROMPT_COLUMNS),
        Table.from_records(records, TOKEN_COLUMNS),
        values,
        offsets,
        np.array(shapes, dtype=np.int64),
        path,
    )
