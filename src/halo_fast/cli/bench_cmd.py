"""``bench``: time halo_fast against json, orjson, msgspec and pysimdjson on synthetic captures.

Each contender runs in its own process (peak memory per contender) on a cached
synthetic capture; the same capture as a .bin directory, an HDF5 file and gzip is
read next to its floor (np.fromfile, gzip -dc) and to plain h5py, and `convert` is
timed. See ``bench/README.md`` for what every number means.
"""

from __future__ import annotations

import os
import shlex
import sys

from .common import Output, UsageError, json_option

QUICK = {"size": "20MB", "sizes": "10MB,20MB", "repeat": 3}
FULL = {"size": "1GB", "sizes": "0.1GB,0.5GB,1GB,2GB", "repeat": 5}


def add_parser(subparsers) -> None:
    from ..benchmark.runner import ALL_CONTENDERS, DEFAULT_SECTIONS, SECTIONS

    p = subparsers.add_parser(
        "bench",
        help="benchmark halo_fast against json / orjson / msgspec / pysimdjson (separate processes)",
        description="Make (and cache) synthetic captures, time loading and reducing them with every "
        "contender in its own process, check they agree, and print a table. The format sections read the "
        "main capture as a .bin directory, HDF5 and gzip (cached beside it) and time `convert`.",
    )
    p.add_argument("--size", help=f"main capture size (default {FULL['size']}; --quick: {QUICK['size']})")
    p.add_argument("--sizes", help=f"sizes for the scaling table (default {FULL['sizes']}; --quick: {QUICK['sizes']})")
    p.add_argument("--quick", action="store_true", help="small sizes and 3 repeats: a smoke test in under a minute")
    p.add_argument("--large", action="store_true", help="add a 5 GB capture to the scaling table (about 5 GB of disk)")
    p.add_argument(
        "--repeat", type=int, help=f"timed runs per measurement, after one warm-up (default {FULL['repeat']})"
    )
    json_option(p)
    p.add_argument(
        "--data-dir",
        default=None,
        help=f"where synthetic captures are cached (default {default_data_dir()}: $XDG_CACHE_HOME or ~/.cache)",
    )
    p.add_argument(
        "--contenders",
        default=",".join(ALL_CONTENDERS),
        help=f"comma-separated subset of {','.join(ALL_CONTENDERS)} (default all)",
    )
    p.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default all but batch, which needs the [dask] "
        "extra, and large, which writes a capture larger than this machine's memory and reads it from disk)",
    )
    p.add_argument("--seed", type=int, default=0, help="synthetic capture seed (default 0)")
    p.add_argument("--markdown", metavar="FILE", help="also write a Markdown report (e.g. bench/RESULTS.md)")
    p.set_defaults(run=run)


def default_data_dir() -> str:
    """The per-user cache folder for bench captures (GBs: not the current folder, not the checkout)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "halo_fast", "bench")


def _list(text: str, allowed, what: str) -> tuple:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [x for x in items if x not in allowed]
    if unknown or not items:
        raise UsageError(f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}")
    return items


def config_from(args):
    from ..benchmark.data import parse_size
    from ..benchmark.runner import ALL_CONTENDERS, SECTIONS, Config

    defaults = QUICK if args.quick else FULL
    try:
        size = parse_size(args.size or defaults["size"])
        sizes = sorted(
            {parse_size(s) for s in (args.sizes or defaults["sizes"]).split(",") if s.strip()}
            | ({parse_size("5GB")} if args.large else set())
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    repeat = defaults["repeat"] if args.repeat is None else args.repeat
    if repeat < 1:
        raise UsageError("--repeat must be at least 1")
    if not sizes:
        raise UsageError("--sizes is empty")
    return Config(
        size=size,
        sizes=sizes,
        repeat=repeat,
        contenders=_list(args.contenders, ALL_CONTENDERS, "contender"),
        data_dir=args.data_dir or default_data_dir(),
        seed=args.seed,
        sections=_list(args.sections, SECTIONS, "section"),
    )


def command_line(args) -> str:
    """The command that reproduces this run (from sys.argv when it is the CLI, else from ``args``)."""
    if sys.argv[1:2] == ["bench"]:
        return "python -m halo_fast " + shlex.join(sys.argv[1:])
    words = ["bench"] + (["--quick"] if args.quick else []) + (["--large"] if args.large else [])
    for flag in ("size", "sizes", "repeat", "data_dir", "contenders", "sections", "seed", "markdown"):
        value = getattr(args, flag)
        if value is not None:
            words += [f"--{flag.replace('_', '-')}", str(value)]
    return "python -m halo_fast " + shlex.join(words + (["--json"] if args.json else []))


def run(args) -> Output:
    from ..benchmark import report
    from ..benchmark.runner import Suite

    cfg = config_from(args)
    result = Suite(cfg).run()
    result["machine"] = report.machine_info()
    result["command"] = command_line(args)
    result["config"] = {**vars(cfg), "contenders": list(cfg.contenders), "sections": list(cfg.sections)}
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(report.markdown(result))
    return Output(result, lambda: report.text(result), code=0 if result["ok"] else 1)
