"""Shared plumbing for formats that hold generated tokens one by one (directories, JSON lines, HDF5).

They all end with the same thing: per-token records and shapes, from which
``finish_tokens`` checks that layers x heads agree (as the single-JSON reader
does), computes value offsets and builds the token table.
"""

from __future__ import annotations

import numpy as np

from ..errors import CaptureError
from .base import CaptureSource, check_document, prompt_table


def split_metadata(document, path: str) -> tuple[dict, list]:
    """(metadata, prompt_tokens) from a ``metadata.json``-style object: flat fields + prompt_tokens,
    or ``{"metadata": {...}, "prompt_tokens": [...]}``."""
    if not isinstance(document, dict):
        raise CaptureError("the metadata is not a JSON object", path, 0)
    prompt = check_document({**document, "generated_tokens": [], "metadata": None}, path).prompt_tokens
    rest = {k: v for k, v in document.items() if k not in ("prompt_tokens", "generated_tokens")}
    if set(rest) == {"metadata"} and isinstance(rest["metadata"], dict):
        rest = rest["metadata"]
    return rest, prompt


class TokenListSource(CaptureSource):
    """A source whose tokens were planned one by one; subclasses give ``token_values``."""

    def finish_tokens(self, records: list, shapes: np.ndarray, has_attention: np.ndarray, where) -> None:
        """Set shapes, offsets and tables; ``where(i)`` is (path, offset) of token i for errors."""
        from .json_skeleton import check_layers_heads, token_table

        check_layers_heads(shapes, has_attention, lambda i: (*where(i), records[i].get("step", i)))
        self.shapes = shapes
        self.has_attention = has_attention
        self.offsets = np.zeros(len(records) + 1, dtype=np.int64)
        np.cumsum(shapes.prod(axis=1), out=self.offsets[1:])
        self.token_table = token_table(records, shapes, has_attention)

    def set_prompt(self, prompt: list) -> None:
        self.prompt_table = prompt_table(prompt)
