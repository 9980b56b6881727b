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
