"""A reduce's pass 2 run inside pass 1, so that each page of a mapped capture is read once.

The plain route reads a single-JSON capture twice: pass 1 (json_scan) walks all of it
for its structure, then pass 2 (json_values) parses the attention arrays. While the
file sits in the page cache that costs little; a capture larger than memory is read
from disk twice, and the second read is most of the time.

``ReduceAhead`` (used for files larger than the page cache can hold: ``outgrows_page_cache``)
folds each token as soon as pass 1 has walked past its closing brace,
while its pages are still mapped. What the fold needs -- the token's step (for the
selection) and shape -- is certain only once the skeleton is parsed after pass 1, so
here it is read from the token's own bytes (its ``"step"`` and ``"shape"`` fields, by
pattern): a guess. ``result`` keeps a folded row only where the guess and the plan
equal what the skeleton says, and sends every other selected token through the plain
pass 2. So the output is the plain route's, bit for bit, whatever the file holds; a
wrong guess costs the time of folding that token twice.

Where an array holds something the plain pass reports as an error, everything folded
ahead is dropped and the plain pass runs in full, so the error raised is its own.

The folds run on a thread of their own (the kernels release the GIL), so pass 1 walks
the next window -- on a file being read from disk, mostly waiting for its bytes --
while the last one is parsed. At most IN_FLIGHT windows wait or fold at once: their
bytes stay resident until folded, so that bounds the memory.

``json_single`` hands this route a ``streamed.StreamedFile``: the file read once with
O_DIRECT into a small ring of reused memory, which costs far less CPU than mapping a
file larger than the page cache (the kernel then reclaims a page of cache for every
page it reads). Where that is not available, a ``MappedFile``: both give file positions.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SelectionError
from ..reduction import ReducePlan, ReduceRequest, keep_mask, make_plan, output_array
from .mapped import MappedFile, mem_available_bytes

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from .streamed import StreamedFile

FIELD_BYTES = 1 << 16  # a token's bytes outside its data array beyond this: not guessed, left to pass 2
SHAPE_FIELD = re.compile(rb'"shape"\s*:\s*\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]')
STEP_FIELD = re.compile(rb'"step"\s*:\s*(-?\d+)\s*[,}]')
IN_FLIGHT = 2  # windows handed to the fold thread and not yet collected


def outgrows_page_cache(size: int) -> bool:
    """Whether a file of ``size`` bytes cannot stay in the page cache from pass 1 to pass 2 (it is larger
    than the memory the kernel could give it, MemAvailable): only then does folding ahead save a read
    from disk. A file that stays cached is read from memory by both passes, and there folding ahead
    measured 2-7% slower (its thread beside pass 1 on two cores; bench/RESULTS.md), so it is not used."""
    return size > mem_available_bytes()


def same_plan(a: ReducePlan, b: ReducePlan) -> bool:
    return (
        a.op == b.op
        and tuple(a.over) == tuple(b.over)
        and (a.n_layers, a.n_heads) == (b.n_layers, b.n_heads)
        and all(
            np.array_equal(getattr(a, name), getattr(b, name))
            for name in ("layers", "heads", "row_group", "first_row", "group_size")
        )
    )


@dataclass
class _Folded:
    """One call's tokens folded ahead: their guessed shapes, the rows, which rows are final."""

    tokens: np.ndarray  # int64[k] token indices
    shapes: np.ndarray  # int64[k, 3] as guessed
    rows: np.ndarray  # float32[k, groups, max context of these k]
    ok: np.ndarray  # bool[k]: folded completely (not a token with a number the reference must finish)


class ReduceAhead:
    """Fed pass 1's events in file order (``feed``); folds complete tokens a window at a time."""

    def __init__(self, mapped: MappedFile | StreamedFile, request: ReduceRequest, window_bytes: int):
        import numba

        self.mapped = mapped
        self.request = request
        self.window_bytes = window_bytes
        self.n_threads = numba.get_num_threads()
        self.plan: ReducePlan | None = None
        self.stopped: str | None = None  # why nothing more is folded ahead
        self.folded: list[_Folded] = []
        self._open: dict[int, list[int]] = {}  # token -> [token open, data open, data close]
        self._pending: list[tuple[int, int, int, int, int, int]] = []  # token, open, close, layers, heads, ctx
        self._pending_bytes = 0
        self._acc = np.zeros((0, 0, 0), dtype=np.float64)  # the fold thread's scratch
        self._counts = np.zeros((0, 0, 0), dtype=np.int64)
        self._values = np.zeros((0, 0), dtype=np.float32)
        self._pool: ThreadPoolExecutor | None = None
        self._flight: deque[tuple[Future, int]] = deque()  # (fold, first byte it reads), in file order
        try:
            keep_mask(np.zeros(1, np.int64), np.ones(1, bool), request.every, request.tokens)
        except SelectionError:
            self.stopped = "the token selection is invalid"  # the plain route says so

    def held_from(self) -> int | None:
        """The first file position whose pages a token still waiting to be folded needs (None: none)."""
        starts = [entry[0] for entry in self._open.values()]
        if self._pending:
            starts.append(self._pending[0][1])
        if self._flight:
            starts.append(self._flight[0][1])
        return min(starts) if starts else None

    def feed(self, events: np.ndarray) -> None:
        """Pass 1's new (kind, token, position) rows; tokens closed by them are folded once a window is ready."""
        from ..kernels import structure as st

        if self.stopped is not None:
            return
        for kind, token, at in events.tolist():
            if kind == st.EVENT_TOKEN_OPEN:
                self._open[token] = [at, -1, -1]
            elif kind == st.EVENT_DATA_OPEN and token in self._open:
                self._open[token][1] = at
            elif kind == st.EVENT_DATA_CLOSE and token in self._open:
                self._open[token][2] = at
            elif kind == st.EVENT_TOKEN_CLOSE and token in self._open:
                self._ready(token, *self._open.pop(token), at)
        if len(self._pending) >= self.n_threads and self._pending_bytes >= self.window_bytes:
            self._fold()

    def finish(self) -> None:
        """Fold what is still waiting (pass 1 has reached the end of the file)."""
        if self._pending and self.stopped is None:
            self._fold()
        while self._flight:
            self._collect()
        self._open.clear()
        self.close()

    def close(self) -> None:
        """Wait for the fold thread (it reads the mapped file: it must be done before the file is closed)."""
        if self._pool is not None:
            for future, _ in self._flight:
                future.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None
        self._flight.clear()

    def _ready(self, token: int, token_open: int, data_open: int, data_close: int, token_close: int) -> None:
        """Guess a complete token's step and shape from its fields and queue it, if selected."""
        if data_open < 0 or data_close < data_open:  # no data array (null, base64): pass 2's
            return
        if (data_open - token_open) + (token_close - data_close) > FIELD_BYTES:
            return
        fields = self.mapped.read(token_open, data_open) + self.mapped.read(data_close, token_close + 1)
        shapes = SHAPE_FIELD.findall(fields)
        steps = STEP_FIELD.findall(fields)
        if len(shapes) != 1 or len(steps) > 1:
            return
        layers, heads, ctx = (int(d) for d in shapes[0])
        step = int(steps[0]) if steps else token
        if not keep_mask(np.array([step]), np.ones(1, bool), self.request.every, self.request.tokens)[0]:
            return
        if self.plan is None:
            r = self.request
            try:
                self.plan = make_plan(r.op, r.over, r.layers, r.heads, layers, heads)
            except (SelectionError, ValueError, KeyError):
                self.stopped = "the reduce plan is invalid"  # the plain route says so
                return
        if (layers, heads) != (self.plan.n_layers, self.plan.n_heads):
            return
        self._pending.append((token, data_open, data_close, layers, heads, ctx))
        self._pending_bytes += data_close - data_open

    def _fold(self) -> None:
        """Hand the waiting tokens to the fold thread (first waiting for a window to come back, if
        IN_FLIGHT are out)."""
        pending = np.array(self._pending, dtype=np.int64)
        self._pending.clear()
        self._pending_bytes = 0
        while len(self._flight) >= IN_FLIGHT:
            self._collect()
        if self.stopped is not None:
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor  # here: not a cost of importing the package

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="halo_fast-fold")
        self._flight.append((self._pool.submit(self._fold_window, pending), int(pending[0, 1])))

    def _collect(self) -> None:
        folded = self._flight.popleft()[0].result()
        if folded is None:
            self.stopped = "an attention array holds an error"  # the plain pass raises it, as without this
            self.folded.clear()
        elif self.stopped is None:
            self.folded.append(folded)

    def _fold_window(self, pending: np.ndarray) -> _Folded | None:
        """On the fold thread: reduce the tokens ``pending`` (rows of _pending); None if an array holds an error."""
        import numba

        from ..kernels.arrays import ARRAY_OK
        from ..kernels.reduce import ARRAY_HAS_HARD, reduce_arrays
        from .json_values import _interleave

        plan = self.plan
        assert plan is not None
        numba.set_num_threads(self.n_threads)  # the caller's setting is its own thread's
        k = len(pending)
        contexts = pending[:, 5].copy()
        max_context = int(contexts.max())
        if self._acc.shape[2] < max_context or self._acc.shape[1] != plan.n_groups:
            self._acc = np.zeros((self.n_threads, plan.n_groups, max_context), dtype=np.float64)
            self._counts = np.zeros((self.n_threads, plan.n_groups, max_context), dtype=np.int64)
            self._values = np.zeros((self.n_threads, max_context), dtype=np.float32)
        rows = output_array(k, plan, max_context)
        status = np.zeros((k, 4), dtype=np.int64)
        opens, closes = pending[:, 1].copy(), pending[:, 2].copy()
        reduce_arrays(
            self.mapped.bytes,
            opens,
            closes,
            contexts,
            np.arange(k, dtype=np.int64),
            _interleave(np.arange(k, dtype=np.int64), self.n_threads),
            plan.n_layers * plan.n_heads,
            plan.row_group,
            plan.first_row,
            plan.group_size,
            plan.op_code,
            self._acc,
            self._counts,
            self._values,
            rows,
            status,
        )
        self.mapped.release(int(opens[0]), int(closes[-1]) + 1)
        codes = status[:, 0]
        if np.any((codes != ARRAY_OK) & (codes != ARRAY_HAS_HARD)):
            return None
        return _Folded(pending[:, 0].copy(), pending[:, 3:6].copy(), rows, codes == ARRAY_OK)

    def result(self, scan, ids: np.ndarray, plan: ReducePlan) -> np.ndarray:
        """What ``json_values.reduce_attention(scan, ids, plan)`` returns: the rows folded ahead where
        the skeleton confirms their guess, the plain pass 2 for every other token of ``ids``."""
        from .json_values import reduce_attention

        if self.plan is None or not self.folded or self.stopped is not None or not same_plan(self.plan, plan):
            self.folded.clear()
            return reduce_attention(scan, ids, plan)
        n = max(len(scan.shapes), max(int(f.tokens.max()) + 1 for f in self.folded))
        where = np.full((n, 2), -1, dtype=np.int64)  # token -> (call, row) of a confirmed fold
        for number, folded in enumerate(self.folded):
            tokens = folded.tokens[folded.ok]
            inside = tokens < len(scan.shapes)  # a recovered file ends before some tokens folded ahead
            confirmed = np.zeros(len(tokens), dtype=bool)
            confirmed[inside] = np.all(scan.shapes[tokens[inside]] == folded.shapes[folded.ok][inside], axis=1)
            where[tokens[confirmed], 0] = number
            where[tokens[confirmed], 1] = np.flatnonzero(folded.ok)[confirmed]
        max_context = int(scan.shapes[ids, 2].max()) if len(ids) else 0
        data = output_array(len(ids), plan, max_context)
        settled = where[ids, 0] >= 0
        for number, folded in enumerate(self.folded):
            mine = np.flatnonzero(where[ids, 0] == number)
            width = min(folded.rows.shape[2], max_context)  # wider only for tokens that are not in ids
            data[mine, :, :width] = folded.rows[where[ids[mine], 1], :, :width]
        self.folded.clear()
        rest = np.flatnonzero(~settled)
        if len(rest):
            part = reduce_attention(scan, ids[rest], plan)
            data[rest, :, : part.shape[2]] = part
        return data
