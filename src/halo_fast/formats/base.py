"""What every input format provides, and the generic ways to decode or reduce it.

A format's source, opened as a context manager, has done its structure pass:
it knows the metadata, the prompt and token tables, every token's shape and
where its values start in the flat output (``offsets``). It must give one
token's values exactly (``token_values``). ``decode`` and ``reduce`` have
generic implementations on top of that; formats with a faster route (the JSON
decoder's parallel kernels) override them.
"""

from __future__ import annotations

import numpy as np

from ..capture import Capture, Table


class CaptureSource:
    format_name = "unknown"  # shown by `info`
    path: str
    metadata: dict
    prompt_table: Table
    token_table: Table
    shapes: np.ndarray  # int64 [n, 3]: layers, heads, context of each token
    has_attention: np.ndarray  # bool [n]
    offsets: np.ndarray  # int64 [n + 1]: where each token's values start in the flat buffer
    progress: bool = False
    recovery: dict | None = None  # what was salvaged from a truncated input (recover=True)

    def __enter__(self) -> CaptureSource:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def step_of(self, i: int):
        return self.token_table["step"][i]

    def token_values(self, i: int) -> np.ndarray:
        """Token i's attention, flat float32 of length offsets[i+1] - offsets[i], exact."""
        raise NotImplementedError

    def decode(self) -> np.ndarray:
        """Every token's values in one flat float32 buffer."""
        from .mapped import output_buffer

        values = output_buffer(int(self.offsets[-1]))
        for i in np.flatnonzero(self.has_attention).tolist():
            values[self.offsets[i] : self.offsets[i + 1]] = self.token_values(i)
        return values

    def reduce(self, ids: np.ndarray, plan) -> np.ndarray:
        """float32 [len(ids), groups, max context] folded as ``plan`` says, NaN beyond each context."""
        from ..reduction import fold_tokens

        return fold_tokens(plan, ids, self.shapes, self.token_values)

    def capture(self) -> Capture:
        cap = Capture(
            metadata=self.metadata,
            prompt_tokens=self.prompt_table,
            tokens=self.token_table,
            values=self.decode(),
            offsets=self.offsets,
            shapes=self.shapes,
            path=self.path,
        )
        cap.recovery = self.recovery
        return cap
