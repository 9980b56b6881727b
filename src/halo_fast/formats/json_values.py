"""Pass 2 of the single-JSON reader: every attention array's numbers, in parallel.

``decode_attention`` parses them into one float32 buffer (kernels.arrays);
``reduce_attention`` parses and folds them token by token (kernels.reduce) without
holding a full tensor. Both go window by window, release the mapped pages behind
them, and finish the rare numbers the fast parser declines with ``json.loads``.
"""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CaptureError
from ..progress import progress_bar
from .json_scan import Layout
from .mapped import MappedFile, output_buffer

if TYPE_CHECKING:
    from .json_single import ScannedJson


def _decode_encoded_tokens(path, layout: Layout, tokens, offsets, values, ids) -> None:
    """Fill the base64 tokens among ``ids`` (those without a data array) into their slices."""
    from .encoded import decode_encoded

    for i in ids.tolist():
        decode_encoded(
            tokens[i]["attention"],
            values[offsets[i] : offsets[i + 1]],
            path,
            int(layout.token_open[i]),
            tokens[i].get("step", i),
        )


def _batches(ids: np.ndarray, sizes: np.ndarray, window_bytes: int, min_tokens: int) -> list[np.ndarray]:
    """Consecutive runs of tokens covering about window_bytes of file, and enough tokens to keep every thread busy."""
    batches = []
    first = 0
    covered = 0
    for k, size in enumerate(sizes.tolist()):
        covered += size
        if covered >= window_bytes and k + 1 - first >= min_tokens:
            batches.append(ids[first : k + 1])
            first = k + 1
            covered = 0
    if first < len(ids):
        batches.append(ids[first:])
    return batches


def _interleave(ids: np.ndarray, n_threads: int) -> np.ndarray:
    """Order so that numba's contiguous per-thread blocks each get every n-th token (balanced sizes)."""
    return np.concatenate([ids[r::n_threads] for r in range(n_threads)])


def _reference_value(text: bytes, path: str, offset: int, step) -> np.float32:
    """What np.asarray(json.loads(text), float32) gives for one number."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.asarray([json.loads(text)], dtype=np.float32)[0]
    except (OverflowError, ValueError) as exc:
        raise CaptureError(f"number out of float range: {exc}", path, offset, step) from None


def decode_attention(
    mapped: MappedFile,
    layout: Layout,
    tokens,
    shapes,
    has_attention,
    offsets,
    window_bytes: int,
    progress: bool = False,
) -> np.ndarray:
    """Pass 2: parse every data array into one float32 buffer, window by window."""
    import numba

    from ..kernels.arrays import HARD_SLOTS

    values = output_buffer(int(offsets[-1]))
    counts = np.diff(offsets)
    ids = np.flatnonzero(has_attention & (layout.data_open >= 0))
    encoded = np.flatnonzero(has_attention & (layout.data_open < 0))
    if len(encoded):
        _decode_encoded_tokens(mapped.path, layout, tokens, offsets, values, encoded)
    n = len(layout.data_open)
    status = np.zeros((n, 4), dtype=np.int64)
    hard = np.zeros((n, HARD_SLOTS, 3), dtype=np.int64)
    n_threads = numba.get_num_threads()
    sizes = layout.data_close[ids] - layout.data_open[ids]
    data_bytes = int(sizes.sum())
    batches = _batches(ids, sizes, window_bytes, n_threads)
    with progress_bar(data_bytes, progress, "decode") as bar:
        for batch in batches:
            if not len(batch):
                continue
            _decode_batch(mapped, layout, tokens, batch, offsets, counts, values, status, hard, n_threads)
            bar.update(int((layout.data_close[batch] - layout.data_open[batch]).sum()))
    return values


def _decode_batch(mapped, layout, tokens, batch, offsets, counts, values, status, hard, n_threads) -> None:
    """Parse the tokens ``batch`` (text arrays, in file order) in parallel into ``values`` at ``offsets``,
    raise on the first bad one, give the hard numbers the reference's value, release their pages."""
    from ..kernels.arrays import ARRAY_OK, HARD_SLOTS, MESSAGES, decode_arrays

    status[batch] = 0
    order = _interleave(batch, n_threads)
    decode_arrays(mapped.bytes, layout.data_open, layout.data_close, offsets, counts, order, values, status, hard)
    _check_status(mapped, layout, tokens, status, counts, batch, MESSAGES, ARRAY_OK)
    for i in batch[status[batch, 3] > 0].tolist():
        _finish_hard(mapped, layout, tokens, offsets, counts, values, status, hard, i, HARD_SLOTS)
    mapped.release(int(layout.data_open[batch[0]]), int(layout.data_close[batch[-1]]) + 1)


def _check_status(mapped, layout, tokens, status, counts, batch, messages, ok_code):
    failed = batch[status[batch, 0] != ok_code]
    if not len(failed):
        return
    i = int(failed[0])
    code, position, parsed = (int(v) for v in status[i, :3])
    message = messages[code]
    if code in (3, 4):
        message += f" (shape says {int(counts[i])} values, found {'more than ' if code == 3 else ''}{parsed})"
    raise CaptureError(message, mapped.path, position, tokens[i].get("step", i))


def _finish_hard(mapped, layout, tokens, offsets, counts, values, status, hard, i, slots):
    """Give the numbers the fast parser declined the reference's own value."""
    from ..kernels.arrays import decode_arrays

    n_hard = int(status[i, 3])
    rows = hard[i]
    if n_hard > slots:  # more than the slots remembered: re-run this one token with room for all
        one = np.zeros(1, dtype=np.int64)
        rerun_hard = np.zeros((1, n_hard, 3), dtype=np.int64)
        rerun_status = np.zeros((1, 4), dtype=np.int64)
        decode_arrays(
            mapped.bytes,
            layout.data_open[i : i + 1],
            layout.data_close[i : i + 1],
            offsets[i : i + 1],
            counts[i : i + 1],
            one,
            values,
            rerun_status,
            rerun_hard,
        )
        rows = rerun_hard[0]
    step = tokens[i].get("step", i)
    base = int(offsets[i])
    for start, stop, index in rows[:n_hard].tolist():
        values[base + index] = _reference_value(mapped.read(start, stop), mapped.path, start, step)


def reduce_attention(scan: ScannedJson, ids: np.ndarray, plan) -> np.ndarray:
    """Pass 2, fused: parse and fold the selected tokens, never holding their full tensors.

    Returns float32 [len(ids), groups, max context], NaN beyond each token's context.
    """
    import numba

    from ..kernels.arrays import ARRAY_OK, MESSAGES
    from ..kernels.reduce import ARRAY_HAS_HARD, reduce_arrays, reduce_decoded
    from ..reduction import output_array

    layout = scan.layout
    n = len(layout.data_open)
    contexts = scan.shapes[:, 2].copy()
    max_context = int(contexts[ids].max()) if len(ids) else 0
    data = output_array(len(ids), plan, max_context)
    out_rows = np.full(n, -1, dtype=np.int64)
    out_rows[ids] = np.arange(len(ids))
    n_threads = numba.get_num_threads()
    acc = np.zeros((n_threads, plan.n_groups, max_context), dtype=np.float64)
    counts = np.zeros((n_threads, plan.n_groups, max_context), dtype=np.int64)
    values = np.zeros((n_threads, max_context), dtype=np.float32)
    status = np.zeros((n, 4), dtype=np.int64)
    n_rows = plan.n_layers * plan.n_heads
    encoded = ids[layout.data_open[ids] < 0]
    for i in encoded.tolist():  # base64 tokens: decode (no parsing), then fold
        reduce_decoded(
            decode_one(scan, i),
            n_rows,
            int(contexts[i]),
            plan.row_group,
            plan.first_row,
            plan.group_size,
            plan.op_code,
            acc[0],
            counts[0],
            data[out_rows[i]],
        )
    ids = ids[layout.data_open[ids] >= 0]
    sizes = layout.data_close[ids] - layout.data_open[ids]
    with progress_bar(int(sizes.sum()), scan.progress, "reduce") as bar:
        for batch in _batches(ids, sizes, scan.window_bytes, n_threads):
            order = _interleave(batch, n_threads)
            reduce_arrays(
                scan.mapped.bytes,
                layout.data_open,
                layout.data_close,
                contexts,
                out_rows,
                order,
                n_rows,
                plan.row_group,
                plan.first_row,
                plan.group_size,
                plan.op_code,
                acc,
                counts,
                values,
                data,
                status,
            )
            hard = batch[status[batch, 0] == ARRAY_HAS_HARD]
            status[hard, 0] = ARRAY_OK
            _check_status(scan.mapped, layout, scan.tokens, status, np.diff(scan.offsets), batch, MESSAGES, ARRAY_OK)
            for i in hard.tolist():  # rare: decode this token exactly, then fold it the same way
                reduce_decoded(
                    decode_one(scan, i),
                    n_rows,
                    int(contexts[i]),
                    plan.row_group,
                    plan.first_row,
                    plan.group_size,
                    plan.op_code,
                    acc[0],
                    counts[0],
                    data[out_rows[i]],
                )
            scan.mapped.release(int(layout.data_open[batch[0]]), int(layout.data_close[batch[-1]]) + 1)
            bar.update(int((layout.data_close[batch] - layout.data_open[batch]).sum()))
    return data


def decode_windows(scan: ScannedJson, ids: np.ndarray, phase: str = "read"):
    """``ScannedJson.token_windows``: the tokens ``ids`` parsed in parallel about ``window_bytes`` of
    file at a time into one reused buffer, each window's mapped pages released behind it."""
    import numba

    from ..kernels.arrays import HARD_SLOTS

    layout = scan.layout
    n = len(layout.data_open)
    counts = np.diff(scan.offsets)
    local = np.zeros(n + 1, dtype=np.int64)  # where each token of the window starts in the buffer
    status = np.zeros((n, 4), dtype=np.int64)
    hard = np.zeros((n, HARD_SLOTS, 3), dtype=np.int64)
    n_threads = numba.get_num_threads()
    sizes = np.maximum(layout.data_close[ids] - layout.data_open[ids], 0)
    buffer = np.empty(0, dtype=np.float32)
    with progress_bar(int(sizes.sum()), scan.progress, phase) as bar:
        for batch in _batches(ids, sizes, scan.window_bytes, n_threads):
            starts = np.zeros(len(batch) + 1, dtype=np.int64)
            np.cumsum(counts[batch], out=starts[1:])
            if len(buffer) < starts[-1]:
                buffer = np.empty(int(starts[-1] * 1.25) + 1, dtype=np.float32)
            local[batch] = starts[:-1]
            parsed = batch[layout.data_open[batch] >= 0]
            for k in np.flatnonzero(layout.data_open[batch] < 0).tolist():  # base64 tokens
                buffer[starts[k] : starts[k + 1]] = decode_one(scan, int(batch[k]))
            if len(parsed):
                _decode_batch(scan.mapped, layout, scan.tokens, parsed, local, counts, buffer, status, hard, n_threads)
            yield batch, buffer, starts
            bar.update(int(sizes[np.searchsorted(ids, batch)].sum()))


def decode_one(scan: ScannedJson, i: int) -> np.ndarray:
    """One token's attention, decoded in full (hard numbers finished by the reference)."""
    from ..kernels.arrays import ARRAY_OK, HARD_SLOTS, MESSAGES, decode_arrays

    layout = scan.layout
    count = int(scan.offsets[i + 1] - scan.offsets[i])
    values = np.empty(count, dtype=np.float32)
    if layout.data_open[i] < 0:  # base64 text (formats.encoded)
        from .encoded import decode_encoded

        token = scan.tokens[i]
        decode_encoded(token["attention"], values, scan.path, int(layout.token_open[i]), token.get("step", i))
        return values
    status = np.zeros((1, 4), dtype=np.int64)
    hard = np.zeros((1, HARD_SLOTS, 3), dtype=np.int64)
    counts = np.array([count], dtype=np.int64)
    zero = np.zeros(1, dtype=np.int64)
    decode_arrays(
        scan.mapped.bytes,
        layout.data_open[i : i + 1],
        layout.data_close[i : i + 1],
        zero,
        counts,
        zero,
        values,
        status,
        hard,
    )
    _check_status(scan.mapped, layout, [scan.tokens[i]], status, counts, zero, MESSAGES, ARRAY_OK)
    local = Layout(
        layout.token_open[i : i + 1],
        layout.token_close[i : i + 1],
        layout.data_open[i : i + 1],
        layout.data_close[i : i + 1],
    )
    if status[0, 3]:
        _finish_hard(scan.mapped, local, [scan.tokens[i]], zero, counts, values, status, hard, 0, HARD_SLOTS)
    return values
