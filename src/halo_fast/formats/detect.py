"""Which format a path holds, from what it is (directory) and its first bytes, not only its name.

Magic numbers decide gzip and HDF5. Text decides between one JSON document and
JSON lines: a JSON-lines file's first line is a complete object with no
``generated_tokens`` key, followed by another line. Everything else that starts
like JSON goes to the single-JSON reader, whose errors say what is wrong.

A capture is one JSON object, so text whose top-level value is anything else -- an
array, a string, a number, ``null``, ``true``, nothing at all, or text that is not
JSON -- is "not a capture", said here from its first bytes (``json_scan.top_level_problem``):
left to the structure walk, ``null`` or ``123`` would read as a capture cut short.
"""

from __future__ import annotations

import json
import os
import re

from ..errors import CaptureError, CaptureNotFound

SUPPORTED = (
    "a single-JSON capture (.json, the Data Capture guide's format); "
    "a capture directory (metadata.json + token_XXXXX.json or token_XXXXX_meta.json/_attn.bin); "
    "JSON lines of generated-token objects or KoboldCPP token events (.jsonl, metadata in the first line "
    "or a sibling metadata.json); any of the files gzip-compressed (.gz); "
    "a halo_fast HDF5 capture (.h5, from `python -m halo_fast convert`)"
)
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
GZIP_MAGIC = b"\x1f\x8b"
LINE_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
PEEK_BYTES = 1 << 16
JSON_STARTS = [bytes([c]) for c in b'{["-0123456789tfnNI']  # what a JSON value (or NaN, Infinity) begins with


#: Keys of a generated-token line or a KoboldCPP event, and of a single capture, at the top of the object.
LINE_KEYS = {"attention", "type", "step", "token"}
CAPTURE_KEYS = {"metadata", "prompt_tokens", "generated_tokens"}
GENERATED_LIST = re.compile(rb'"generated_tokens"\s*:\s*\[')


def top_level_keys(text: bytes) -> set[str]:
    """The keys of the outermost object that appear in ``text`` (the start of a JSON document): strings at
    depth 1 followed by a colon, whatever the strings and nesting around them hold."""
    keys: set[str] = set()
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == 0x22:  # a string: find its end, stepping over escapes
            j = i + 1
            while j < n and text[j] != 0x22:
                j += 2 if text[j] == 0x5C else 1
            if depth == 1:
                k = j + 1
                while k < n and text[k] in b" \t\r\n":
                    k += 1
                if k < n and text[k] == 0x3A:
                    keys.add(text[i + 1 : j].decode("utf-8", "replace"))
            i = j + 1
            continue
        if c in b"{[":
            depth += 1
        elif c in b"}]":
            depth -= 1
        i += 1
    return keys


def kind_of_text(head: bytes, name: str, complete: bool) -> str:
    """'json' or 'jsonl' for the first bytes of a (decompressed) text file."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if name.endswith(LINE_SUFFIXES):
        # what the name says, unless the first line is a whole capture: no line of JSON lines has
        # a 'generated_tokens' list at its top (jsonlines also refuses one beyond this peek)
        first = text.split(b"\n", 1)[0]
        whole = "generated_tokens" in top_level_keys(first) and GENERATED_LIST.search(first) is not None
        return "json" if text.startswith(b"{") and whole else "jsonl"
    if not text.startswith(b"{"):
        return "json"
    newline = text.find(b"\n")
    if newline < 0:  # one line so far: a compact single JSON, or a huge first token line
        if complete or b'"generated_tokens"' in text:
            return "json"
        keys = top_level_keys(text)  # a token line or event has these itself; a capture holds them deeper
        return "jsonl" if keys & LINE_KEYS and not keys & CAPTURE_KEYS else "json"
    first, rest = text[:newline], text[newline + 1 :].lstrip(b" \t\r\n")
    if b'"generated_tokens"' in first or not rest.startswith(b"{"):
        return "json"
    try:
        obj = json.loads(first)
    except ValueError:
        return "json"
    return "jsonl" if isinstance(obj, dict) else "json"


def detect(path: str) -> str:
    """One of 'directory', 'hdf5', 'json', 'jsonl', 'json.gz', 'jsonl.gz'; CaptureError when unknown."""
    from .directory import is_capture_directory
    from .json_scan import check_top_level

    if os.path.isdir(path):
        if is_capture_directory(path):
            return "directory"
        raise CaptureError(f"not a capture directory (no metadata.json nor token files); supported: {SUPPORTED}", path)
    try:
        with open(path, "rb") as f:
            head = f.read(PEEK_BYTES)
            complete = len(head) < PEEK_BYTES
    except FileNotFoundError as exc:  # what Python code expects of a missing file, and a CaptureError
        raise CaptureNotFound(path, exc.strerror) from None
    except OSError as exc:
        raise CaptureError(f"cannot open: {exc.strerror}", path) from None
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(GZIP_MAGIC):
        from .gzip_stream import peek

        inner, complete = peek(path, PEEK_BYTES)
        kind = kind_of_text(inner, path[:-3] if path.endswith(".gz") else path, complete)
        # No text at all may be a stream cut short (peek cannot tell): the gzip reader says which.
        if kind == "json" and inner.strip(b"\xef\xbb\xbf \t\r\n"):
            check_top_level(inner, complete, path, "the decompressed text", SUPPORTED)
        return kind + ".gz"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    kind = kind_of_text(head, path, complete)
    if kind == "json" or (stripped and stripped[:1] not in JSON_STARTS):
        check_top_level(head, complete, path, supported=SUPPORTED)
    return kind


def capture_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes a capture takes on disk: its file, or every file of a capture directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return sum(entry.stat().st_size for entry in os.scandir(path) if entry.is_file())
    return os.path.getsize(path)
