"""``convert``: any capture -> one HDF5 file (the binary format the guide asks for) or a capture
directory (``--format dir-bin`` / ``dir-json``, the stream-to-disk forms), streamed.

Memory stays flat: one token is decoded and written at a time; the output appears only
when complete (``store.atomic_path`` / ``store.atomic_directory``).
"""

from __future__ import annotations

import os
import time

from ..store import output_beside
from .common import (
    Output,
    UsageError,
    check_output,
    json_option,
    output_options,
    source_kwargs,
    source_options,
    usage_errors,
)

FORMATS = ("h5", "dir-bin", "dir-json")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a capture (any format) to an HDF5 capture or a capture directory (dir-bin, dir-json)",
        description="Write a capture as one HDF5 file: metadata, prompt and token tables and all attention, "
        "chunked per token so plain h5py reads f['attention'][t, layer, head, :ctx] without halo_fast; "
        "or, with --format dir-bin / dir-json, as the stream-to-disk capture directory (metadata.json plus "
        "per token a _meta.json and a raw float32 .bin, or one .json with the numbers), bit-exact. "
        "halo_fast.load/reduce read every form directly.",
    )
    source_options(p, name="capture")
    group = p.add_argument_group("what to convert")
    group.add_argument(
        "--compression",
        default="none",
        choices=["gzip", "lzf", "none"],
        help="HDF5 chunk compression (default none: attention floats barely compress and raw chunks "
        "read fastest; lzf/gzip mainly shrink the NaN padding)",
    )
    group.add_argument("--every", type=int, default=1, metavar="N", help="keep every Nth generation step (default 1)")
    group.add_argument("--tokens", metavar="START:STOP", help="only steps START <= step < STOP (default: all)")
    output_options(
        p,
        "output .h5 file, or folder for dir-* (default: CAPTURE.h5, CAPTURE_dir_bin or CAPTURE_dir_json "
        "beside the input)",
        formats=FORMATS,
        format_help="h5 (default; an -o ending in .h5 is h5), dir-bin (meta + .bin files) or dir-json "
        "(token files with JSON numbers)",
    )
    json_option(p)
    p.set_defaults(run=run)


def output_format(output: str | None, fmt: str | None) -> str:
    """h5 unless a directory form is asked for; an -o that names a folder must say which form."""
    if output is not None:
        is_h5 = output.lower().endswith(".h5")
        if fmt is not None and fmt != "h5" and is_h5:
            raise UsageError(f"-o {output} ends in .h5 but --format is {fmt}: name a folder for {fmt}")
        if fmt is None and not is_h5 and (output.endswith(("/", os.sep)) or os.path.isdir(output)):
            raise UsageError(f"-o {output} is a folder: give --format dir-bin or dir-json (or an -o ending in .h5)")
    return fmt or "h5"


def default_output(capture: str, fmt: str) -> str:
    if fmt == "h5":
        return output_beside(capture, ".h5")
    return output_beside(capture, "_" + fmt.replace("-", "_"))


def run(args) -> Output:
    from ..api import open_capture
    from ..formats.detect import capture_bytes

    fmt = output_format(args.output, args.format)
    if fmt != "h5" and args.compression != "none":
        raise UsageError(f"--compression applies to h5 output, not {fmt}")
    output = args.output or default_output(args.capture, fmt)
    if fmt != "h5":
        output = output.rstrip("/" + os.sep) or output
    if os.path.abspath(output) == os.path.abspath(args.capture):
        raise UsageError(f"the output {output} is the input")
    check_output(output, args.force)
    started = time.perf_counter()
    with usage_errors():  # a plain ValueError from the library is a bad option
        with open_capture(args.capture, **source_kwargs(args)) as source:
            summary = _convert(source, output, fmt, args)
            recovery = source.recovery
    seconds = time.perf_counter() - started
    summary.update(
        {
            "capture": args.capture,
            "output": os.path.abspath(output),
            "format": fmt,
            "seconds": round(seconds, 3),
            "output_mb": round(capture_bytes(output) / 1e6, 3),
            "recovery": recovery,
        }
    )
    how = args.compression if fmt == "h5" else fmt
    text = (
        f"{output}: {summary['tokens']} tokens ({summary['tokens_with_attention']} with attention), attention "
        f"{tuple(summary['shape'])} float32, {how}, {summary['output_mb']} MB in {seconds:.2f} s"
    )
    return Output(summary, text, recovery=(args.capture, recovery))


def _convert(source, output: str, fmt: str, args) -> dict:
    selection = {"every": args.every, "tokens": args.tokens, "force": args.force, "progress": bool(args.progress)}
    if fmt == "h5":
        from ..store.capture_h5 import convert

        return convert(source, output, compression=args.compression, **selection)
    from ..store.capture_dir import convert_directory

    return convert_directory(source, output, kind=fmt.removeprefix("dir-"), **selection)
