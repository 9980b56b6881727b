"""The stream-to-disk capture directory (``capture_<ts>/``, docs/formats.md).

``metadata.json`` (metadata fields plus ``prompt_tokens``), then per generated
token either ``token_XXXXX.json`` (one token object) or ``token_XXXXX_meta.json``
+ ``token_XXXXX_attn.bin`` (raw little-endian float32; absent without attention).
The writer's queue can drop files, so gaps, missing or oversized ``.bin`` files and
strays are collected as ``problems``: a warning listing them, or a CaptureError
with ``strict=True``. A token whose ``.bin`` is unusable is kept without attention.

A token file cut short -- a ``.bin`` holding fewer bytes than its shape needs, a
``token_XXXXX.json`` or ``_meta.json`` ending inside its object, an empty one: what a
crash mid-write leaves -- is truncation: a CaptureError, or with ``recover=True`` the
token is dropped and ``recovery`` lists it. ``strict`` and ``recover`` are independent.

``.bin`` values need no parsing: ``decode`` reads each file straight into its
slice of the output and ``reduce`` folds each file right after reading it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings

import numpy as np

from ..errors import CaptureError
from .base import SourceOptions
from .token_list import TokenListSource, split_metadata

TOKEN_FILE = re.compile(r"^token_(\d+)(\.json|_meta\.json|_attn\.bin)$")
KIND = {".json": "json", "_meta.json": "meta", "_attn.bin": "bin"}


def is_capture_directory(path: str) -> bool:
    if not os.path.isdir(path):
        return False
    if os.path.isfile(os.path.join(path, "metadata.json")):
        return True
    return any(TOKEN_FILE.match(name) for name in os.listdir(path))


def _read_small_json(path: str):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc.strerror}", path) from None
    except json.JSONDecodeError as exc:
        raise CaptureError(f"invalid JSON: {exc.msg}", path, exc.pos) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CaptureError(f"invalid JSON: {exc}", path) from None


def _ranges(indices: list[int]) -> str:
    parts, start = [], None
    for k, i in enumerate(indices):
        if start is None:
            start = i
        if k + 1 == len(indices) or indices[k + 1] != i + 1:
            parts.append(str(start) if start == i else f"{start}-{i}")
            start = None
    return ", ".join(parts)


def read_into(path: str, out: np.ndarray) -> int:
    """Read a raw float32 file into ``out`` (no intermediate copy); returns the bytes read."""
    with open(path, "rb", buffering=0) as f:
        got = f.readinto(memoryview(out).cast("B"))
    if sys.byteorder == "big":
        out.byteswap(inplace=True)
    return got


class CaptureDirectory(TokenListSource):
    format_name = "directory"

    def __init__(self, path, *, options: SourceOptions | None = None):
        super().__init__(path, options=options)
        self.problems: list[str] = []
        self.truncated: list[dict] = []  # token files cut short: file, step, what it holds

    def __enter__(self) -> CaptureDirectory:
        meta_path = os.path.join(self.path, "metadata.json")
        if not os.path.isfile(meta_path):
            raise CaptureError("capture directory without metadata.json", self.path)
        self.metadata, prompt = split_metadata(_read_small_json(meta_path), meta_path)
        self.set_prompt(prompt)
        files: dict[int, dict[str, str]] = {}
        for name in os.listdir(self.path):
            found = TOKEN_FILE.match(name)
            if found:
                files.setdefault(int(found.group(1)), {})[KIND[found.group(2)]] = os.path.join(self.path, name)
        indices = sorted(files)
        if indices:
            missing = sorted(set(range(indices[-1] + 1)) - set(indices))
            if missing:
                self.problems.append(f"missing token indices {_ranges(missing)}")
        self._plan(indices, files)
        if self.truncated and not self.recover:
            raise self._truncation_error()
        self._report()
        if self.truncated:
            first = self.truncated[0]
            self.recovery = {
                "truncated_at": first["holds"],
                "complete_tokens": len(self.token_table),
                "partial_tokens": len(self.truncated),
                "kept_bytes": 0,
                "truncated_files": [os.path.basename(t["file"]) for t in self.truncated],
                "lost_steps": [t["step"] for t in self.truncated],
            }
        return self

    def _truncation_error(self) -> CaptureError:
        first = self.truncated[0]
        name = os.path.basename(first["file"])
        if first["needs"] is not None:
            what = f"{name} holds {first['holds']} of {first['needs']} bytes"
        elif first["holds"]:
            what = f"{name} ends at byte {first['holds']} inside its JSON object"
        else:
            what = f"{name} is empty"
        more = len(self.truncated) - 1
        if more:
            names = ", ".join(os.path.basename(t["file"]) for t in self.truncated[1:6])
            what += f"; {more} more token file(s) cut short: {names}{', ...' if more > 5 else ''}"
        return CaptureError(
            f"truncated: {what} (recover=True, or --recover, keeps the complete tokens)",
            first["file"],
            first["holds"],
            first["step"],
        )

    def _cut_json(self, path: str, index: int, exc: CaptureError) -> None:
        """A JSON token or meta file that does not parse: recorded as cut short if it is, else ``exc`` raised."""
        from .token_object import is_cut_object, step_in

        try:
            with open(path, "rb") as f:
                text = f.read()
        except OSError:
            raise exc from None
        if text.strip() and not is_cut_object(text, self.window_bytes):
            raise exc
        self.truncated.append({"file": path, "step": step_in(text, index), "holds": len(text), "needs": None})

    def _plan(self, indices: list[int], files: dict) -> None:
        from .json_skeleton import shape_of
        from .token_object import read_token_file

        records, kinds, paths = [], [], []
        n = sum(1 for i in indices if "json" in files[i] or "meta" in files[i])
        shapes = np.zeros((n, 3), dtype=np.int64)
        has_attention = np.zeros(n, dtype=bool)
        for index in indices:
            group = files[index]
            if "json" in group:
                if "meta" in group:
                    self.problems.append(f"token {index} has both a .json and a _meta.json file; the .json is used")
                try:
                    token = read_token_file(group["json"], self.window_bytes)
                except CaptureError as exc:
                    self._cut_json(group["json"], index, exc)
                    continue
                k = len(records)
                records.append(token.record)
                shapes[k] = token.shape
                has_attention[k] = token.has_attention
                kinds.append("json")
                paths.append(group["json"])
                continue
            if "meta" not in group:
                self.problems.append(f"{os.path.basename(group['bin'])} has no _meta.json; ignored")
                continue
            try:
                meta = _read_small_json(group["meta"])
            except CaptureError as exc:
                self._cut_json(group["meta"], index, exc)
                continue
            if not isinstance(meta, dict):
                raise CaptureError("token meta file is not a JSON object", group["meta"], 0)
            step = meta.get("generation_step", meta.get("step", index))
            shape = meta.get("attention_shape")
            attention = None
            k = len(records)
            if shape is not None:
                attention = {"shape": shape, "context_length": meta.get("attention_context_length", None)}
                if attention["context_length"] is None and isinstance(shape, list) and shape:
                    attention["context_length"] = shape[-1]
                shapes[k] = shape_of(attention, group["meta"], None, step)
                expected = int(shapes[k].prod()) * 4
                size = os.path.getsize(group["bin"]) if "bin" in group else None
                if size is None:
                    self.problems.append(f"token {index} (step {step}) has an attention shape but no .bin file")
                elif size < expected:
                    self.truncated.append({"file": group["bin"], "step": step, "holds": size, "needs": expected})
                    shapes[k] = 0
                    continue
                elif size != expected:
                    self.problems.append(
                        f"{os.path.basename(group['bin'])} is {size} bytes, its shape "
                        f"{shapes[k].tolist()} needs {expected}"
                    )
                else:
                    has_attention[k] = True
                if not has_attention[k]:
                    shapes[k] = 0
            elif "bin" in group:
                self.problems.append(
                    f"{os.path.basename(group['bin'])} has no attention_shape in its meta file; ignored"
                )
            records.append(
                {
                    "step": step,
                    "token_id": meta.get("token_id"),
                    "text": meta.get("text"),
                    "position": meta.get("position"),
                    "timestamp": meta.get("timestamp"),
                    "attention": attention,
                }
            )
            kinds.append("bin" if has_attention[k] else "none")
            paths.append(group.get("bin", group["meta"]))
        self._kinds, self._paths = kinds, paths
        n = len(records)  # fewer than planned when token files were cut short
        self.finish_tokens(records, shapes[:n], has_attention[:n], lambda i: (paths[i], None))

    def _report(self) -> None:
        if not self.problems:
            return
        message = f"{len(self.problems)} problem(s) in the capture directory: " + "; ".join(self.problems)
        if self.strict:
            raise CaptureError(message, self.path)
        warnings.warn(f"{self.path}: {message}", stacklevel=3)

    def token_values(self, i: int) -> np.ndarray:
        if self._kinds[i] == "json":
            from .token_object import read_token_file

            return read_token_file(self._paths[i], self.window_bytes).values()
        out = np.empty(int(self.offsets[i + 1] - self.offsets[i]), dtype=np.float32)
        self._read_bin(i, out)
        return out

    def _read_bin(self, i: int, out: np.ndarray) -> None:
        try:
            got = read_into(self._paths[i], out)
        except OSError as exc:
            raise CaptureError(f"cannot read: {exc.strerror}", self._paths[i], None, self.step_of(i)) from None
        if got != out.nbytes:
            raise CaptureError(
                f"changed while reading: {got} bytes, expected {out.nbytes}", self._paths[i], got, self.step_of(i)
            )

    def decode(self) -> np.ndarray:
        from .mapped import output_buffer

        values = output_buffer(int(self.offsets[-1]))
        wanted = np.flatnonzero(self.has_attention).tolist()
        with self.token_bar(len(wanted), "decode") as bar:
            for i in wanted:
                out = values[self.offsets[i] : self.offsets[i + 1]]
                if self._kinds[i] == "bin":
                    self._read_bin(i, out)
                else:
                    out[:] = self.token_values(i)
                bar.update(1)
        return values

    def reduce(self, ids: np.ndarray, plan) -> np.ndarray:
        """Read each .bin into one reused scratch buffer and fold it (JSON token files: parse, then fold)."""
        from ..reduction import fold_tokens

        sizes = np.diff(self.offsets)
        scratch = np.empty(int(sizes[ids].max()) if len(ids) else 0, dtype=np.float32)

        with self.token_bar(len(ids), "reduce") as bar:

            def values_of(i: int) -> np.ndarray:
                bar.update(1)
                if self._kinds[i] != "bin":
                    return self.token_values(i)
                values = scratch[: sizes[i]]
                self._read_bin(i, values)
                return values

            return fold_tokens(plan, ids, self.shapes, values_of)
