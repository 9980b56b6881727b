"""``convert``: any capture -> one HDF5 file (the binary format the guide asks for), streamed.

Memory stays flat: one token is decoded, padded and written at a time; the
output appears only when complete (``store.atomic_path``).
"""

from __future__ import annotations

import json
import os
import sys
import time

from ..store import output_beside
from .common import UsageError, check_output


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a capture (JSON, directory, JSON lines, gzip) to an HDF5 capture",
        description="Write a capture as one HDF5 file: metadata, prompt and token tables and all attention, "
        "chunked per token so plain h5py reads f['attention'][t, layer, head, :ctx] without halo_fast. "
        "halo_fast.load/reduce read it directly.",
    )
    p.add_argument("capture", help="capture file or directory")
    p.add_argument("-o", "--output", help="output .h5 (default: CAPTURE.h5 beside the input)")
    p.add_argument(
        "--compression",
        default="none",
        choices=["gzip", "lzf", "none"],
        help="HDF5 chunk compression (default none: attention floats barely compress and raw chunks "
        "read fastest; lzf/gzip mainly shrink the NaN padding)",
    )
    p.add_argument("--every", type=int, default=1, metavar="N", help="keep every Nth generation step")
    p.add_argument("--tokens", metavar="START:STOP", help="only steps START <= step < STOP")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--recover", action="store_true", help="from a truncated capture, keep every complete token")
    p.add_argument("--strict", action="store_true", help="a damaged capture directory is an error, not a warning")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..api import open_capture
    from ..store.capture_h5 import convert

    output = args.output or output_beside(args.capture, ".h5")
    if os.path.abspath(output) == os.path.abspath(args.capture):
        raise UsageError(f"the output {output} is the input")
    check_output(output, args.force)
    started = time.perf_counter()
    try:
        with open_capture(
            args.capture, recover=args.recover, strict=args.strict, progress=sys.stderr.isatty()
        ) as source:
            summary = convert(
                source,
                output,
                compression=args.compression,
                every=args.every,
                tokens=args.tokens,
                force=args.force,
                progress=sys.stderr.isatty(),
            )
            recovery = source.recovery
    except ValueError as exc:
        if type(exc) is not ValueError:
            raise
        raise UsageError(str(exc)) from None
    seconds = time.perf_counter() - started
    summary.update(
        {
            "capture": args.capture,
            "output": output,
            "seconds": round(seconds, 3),
            "output_mb": round(os.path.getsize(output) / 1e6, 3),
            "recovery": recovery,
        }
    )
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"{output}: {summary['tokens']} tokens ({summary['tokens_with_attention']} with attention), attention "
        f"{tuple(summary['shape'])} float32, {args.compression}, {summary['output_mb']} MB in {seconds:.2f} s"
    )
    return 0
