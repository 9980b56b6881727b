"""The contenders: two jobs done by halo_fast and by the ways people read captures today.

* ``load``: every token's attention as float32 (one array per token with attention);
* ``reduce``: the guide's mean over layers and heads, one float32 row of ``ctx`` per token.

The format sections time halo_fast on the same capture as a .bin directory, an HDF5
file and gzip, next to ``FORMAT_CONTENDERS``: the floors (``np.fromfile`` over the .bin
files; ``gunzip_floor`` in-process, ``gzip -dc`` as a process) and plain h5py.

Each contender is a plain ``path -> list of arrays`` function, so the subprocess
runner (which needs one process per contender to see its peak memory) and
pytest-benchmark (in-process) time exactly the same code. Running this module is
the child side of the runner::

    python -m halo_fast.benchmark.contenders CONTENDER TASK PATH --expect N [--out FILE]

It imports the contender's libraries, times the job alone, checks it produced N
tokens, fingerprints the result (outside the timed part) and prints one JSON line.
Only the standard library is imported at module level: the ``read`` floor's peak
memory must be that of a bare interpreter.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib

TASKS = ("load", "reduce")

#: Peak RSS model when nothing better is known: (MB at start, MB per MB of JSON), from this
#: suite's own runs on 100 MB synthetic captures. json.load holds the bytes and the decoded
#: text, then a 24 B Python float plus an 8 B list slot per ~21 B number (lists over-allocate);
#: orjson/msgspec hold the bytes and the same Python objects; pysimdjson a padded copy of the
#: text and a 16 B tape entry per number. halo_fast maps the file, releases it window by
#: window and keeps only its float32 output (~0.19 B per byte), on top of numba's ~150 MB.
MEMORY_MODEL = {
    "halo_fast": (170, 0.25),
    "json": (30, 6.0),
    "orjson": (30, 4.7),
    "msgspec": (30, 3.0),
    "simdjson": (30, 2.4),
}

#: pysimdjson refuses documents of 4 GiB or more (simdjson's 32-bit offsets).
SIMDJSON_LIMIT = (1 << 32) - 1


# --------------------------------------------------------------------------- halo_fast


def halo_fast_load(path):
    import halo_fast

    cap = halo_fast.load(path)
    has = cap.tokens["has_attention"]
    return [cap.values[cap.offsets[i] : cap.offsets[i + 1]] for i in range(len(has)) if has[i]]


def halo_fast_reduce(path):
    import halo_fast

    red = halo_fast.reduce(path, op="mean", over=("layers", "heads"))
    return [red.data[i, :ctx] for i, ctx in enumerate(red.context_lengths.tolist())]


def halo_fast_reduce_two_passes(path):
    """halo_fast.reduce with pass 2 after the whole of pass 1 (no folding during pass 1, formats.json_ahead):
    what the large section compares the one-read route with. This process is the benchmark's own child."""
    from halo_fast.formats.json_single import ScannedJson

    ScannedJson.plan_reduce = lambda self, request: None  # the plain route: pass 2 reads the file again
    return halo_fast_reduce(path)


def halo_fast_reduce_mapped(path):
    """halo_fast.reduce folding during pass 1 over the memory map instead of the file read past the page cache
    (formats.streamed): the route before it, which the large section compares it with."""
    from halo_fast.formats import streamed

    streamed.supported = lambda: False
    return halo_fast_reduce(path)


# --------------------------------------------------------------------------- the guide's way and drop-in parsers


def _from_lists(doc, reduce):
    """The guide's per-token step: a list of Python floats -> float32 (-> mean over layers and heads)."""
    import numpy as np

    out = []
    for tok in doc["generated_tokens"]:
        att = tok.get("attention")
        if not att:
            continue
        values = np.asarray(att["data"], np.float32)
        out.append(values.reshape(att["shape"]).mean(axis=(0, 1)) if reduce else values)
    return out


def json_load(path, reduce=False):
    import json as json_module

    with open(path, encoding="utf-8") as f:
        doc = json_module.load(f)
    return _from_lists(doc, reduce)


def orjson_load(path, reduce=False):
    import orjson

    with open(path, "rb") as f:
        doc = orjson.loads(f.read())
    return _from_lists(doc, reduce)


def msgspec_load(path, reduce=False):
    import msgspec

    with open(path, "rb") as f:
        doc = msgspec.json.decode(f.read())
    return _from_lists(doc, reduce)


def simdjson_load(path, reduce=False):
    """pysimdjson's fastest route: the tape's doubles copied out as one buffer per token."""
    import numpy as np
    import simdjson

    parser = simdjson.Parser()
    doc = parser.load(path)
    out = []
    for tok in doc["generated_tokens"]:
        att = tok["attention"]
        if att is None:
            continue
        values = np.frombuffer(att["data"].as_buffer(of_type="d"), np.float64).astype(np.float32)
        out.append(values.reshape(att["shape"].as_list()).mean(axis=(0, 1)) if reduce else values)
    return out


# --------------------------------------------------------------------------- the floor


def _drain(f, chunk: int) -> int:
    """Read ``f`` to its end into one reused buffer of ``chunk`` bytes; returns the bytes read."""
    buffer = bytearray(chunk)
    total = 0
    while True:
        n = f.readinto(buffer)
        if not n:
            return total
        total += n


def read_floor(path, chunk=1 << 20):
    """One sequential pass over the bytes, 1 MiB at a time into one reused buffer: no parser can beat it."""
    with open(path, "rb", buffering=0) as f:
        return _drain(f, chunk)


def scan_floor(path, window=64 << 20):
    """The memory-scan floor: one numpy pass over the memory-mapped file counting a byte value (','),
    ``window`` bytes at a time, each window's pages released behind it as halo_fast does; returns the
    bytes scanned. Touching every byte through a map is the least any decoder of the map does."""
    import mmap

    import numpy as np

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        data = np.frombuffer(m, dtype=np.uint8)
        scanned = len(data)
        for at in range(0, scanned, window):
            np.count_nonzero(data[at : at + window] == 44)
            if hasattr(mmap, "MADV_DONTNEED"):
                m.madvise(mmap.MADV_DONTNEED, at, min(window, scanned - at))
        del data  # the map closes only once no view of it is left
    return scanned


FLOORS = {"read": read_floor, "scan": scan_floor}  # the children whose result is a byte count, not arrays


def fromfile_floor(path):
    """The floor for a .bin capture directory: ``np.fromfile`` of every ``token_XXXXX_attn.bin``, in token order."""
    import os
    import re

    import numpy as np

    found = [re.fullmatch(r"token_(\d+)_attn\.bin", name) for name in os.listdir(path)]
    names = [m.group(0) for m in sorted((m for m in found if m), key=lambda m: int(m.group(1)))]
    return [np.fromfile(os.path.join(path, name), dtype="<f4") for name in names]


def gunzip_floor(path, chunk=1 << 20):
    """In-process twin of ``gzip -dc FILE > /dev/null``: decompress into one reused 1 MiB buffer."""
    import gzip

    with gzip.open(path, "rb") as f:
        return _drain(f, chunk)


# --------------------------------------------------------------------------- plain h5py on a converted capture


def h5py_rows(path):
    """The documented plain-h5py way: ``f["attention"][t, :, :, :ctx]`` for each token with attention."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        attention, shapes = f["attention"], f["shapes"][()]
        return [attention[t, :, :, : shapes[t, 2]] for t in np.flatnonzero(shapes[:, 2]).tolist()]


def h5py_values(path):
    """Plain h5py on the flat copy: ``f["values"][()]`` cut at ``f["offsets"]`` (uncompressed files)."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        values, offsets, shapes = f["values"][()], f["offsets"][()], f["shapes"][()]
    return [values[offsets[t] : offsets[t + 1]] for t in np.flatnonzero(shapes[:, 2]).tolist()]


def _reducer(load):
    return lambda path: load(path, reduce=True)


#: contender -> task -> function(path) -> list of float32 arrays (one per token with attention)
CONTENDERS = {
    "halo_fast": {"load": halo_fast_load, "reduce": halo_fast_reduce},
    "json": {"load": json_load, "reduce": _reducer(json_load)},
    "orjson": {"load": orjson_load, "reduce": _reducer(orjson_load)},
    "msgspec": {"load": msgspec_load, "reduce": _reducer(msgspec_load)},
    "simdjson": {"load": simdjson_load, "reduce": _reducer(simdjson_load)},
}
#: the format sections' other contenders, one job each: name -> function(path) -> list of float32 arrays.
#: halo_fast itself is ``CONTENDERS["halo_fast"]`` there too: load/reduce take any format's path.
FORMAT_CONTENDERS = {
    "fromfile": fromfile_floor,
    "h5py": h5py_rows,
    "h5py_values": h5py_values,
    "halo_fast_two_passes": halo_fast_reduce_two_passes,
    "halo_fast_mapped": halo_fast_reduce_mapped,
}
#: the module each contender needs (a missing one is reported as skipped, not as a failure)
REQUIRES = {
    "halo_fast": "halo_fast",
    "json": "json",
    "orjson": "orjson",
    "msgspec": "msgspec",
    "simdjson": "simdjson",
    "fromfile": "numpy",
    "h5py": "h5py",
    "h5py_values": "h5py",
    "halo_fast_two_passes": "halo_fast",
    "halo_fast_mapped": "halo_fast",
}
#: imported before the in-process timer starts, so "in-process s" is the work (process time has both)
PRELOAD = {
    "halo_fast": ("numpy", "numba", "halo_fast.formats.json_single", "halo_fast.reduction"),
    "json": ("numpy", "json"),
    "orjson": ("numpy", "orjson"),
    "msgspec": ("numpy", "msgspec"),
    "simdjson": ("numpy", "simdjson"),
    "read": (),
    "scan": ("numpy",),
    "fromfile": ("numpy",),
    "h5py": ("numpy", "h5py"),
    "h5py_values": ("numpy", "h5py"),
    "halo_fast_two_passes": ("numpy", "numba", "halo_fast.formats.json_single", "halo_fast.reduction"),
    "halo_fast_mapped": ("numpy", "numba", "halo_fast.formats.json_single", "halo_fast.reduction"),
}
#: halo_fast on other formats: what its job imports anyway (numba only where it parses text or folds)
HALO_FAST_PRELOAD = {
    "hdf5": ("numpy", "h5py", "halo_fast.formats.hdf5", "halo_fast.reduction"),
    "directory": ("numpy", "halo_fast.formats.directory", "halo_fast.reduction"),
    "jsonl.gz": PRELOAD["halo_fast"] + ("halo_fast.formats.jsonlines",),
    "json.gz": PRELOAD["halo_fast"] + ("halo_fast.formats.json_gz",),
}
DESCRIPTIONS = {
    "halo_fast": "halo_fast.load / halo_fast.reduce (numba, memory-mapped, parallel)",
    "json": "the guide: json.load + np.asarray(data, float32) per token (+ reshape + mean)",
    "orjson": "orjson.loads + the guide's numpy steps",
    "msgspec": "msgspec.json.decode + the guide's numpy steps",
    "simdjson": "pysimdjson Parser().load + as_buffer(of_type='d') -> float32 per token (+ reshape + mean)",
    "read": "floor: one pass over the bytes, readinto a reused 1 MiB buffer (Python)",
    "scan": "floor: one numpy pass over the memory-mapped file counting ',' 64 MB at a time",
    "cat": "floor: cat FILE > /dev/null",
    "startup": "reference: python -c 'import numpy' (process start, no work)",
    "fromfile": "floor for a .bin capture directory: np.fromfile of every token_XXXXX_attn.bin",
    "h5py": "plain h5py on a converted capture: f['attention'][t, :, :, :ctx] per token",
    "h5py_values": "plain h5py on a converted capture: f['values'][()] cut at f['offsets']",
    "gzip -dc": "floor for gzip inputs: gzip -dc FILE > /dev/null",
    "halo_fast_two_passes": "halo_fast.reduce with pass 2 after pass 1, the file read twice (large section)",
    "halo_fast_mapped": "halo_fast.reduce folding during pass 1 over the memory map, not read past the page cache "
    "(large section)",
    "convert": "python -m halo_fast convert CAPTURE.json -o OUT.h5 --compression none --force",
}


def preload(contender: str, task: str, path: str) -> tuple:
    """The modules to import before the timer: halo_fast's depend on the input's format."""
    if contender != "halo_fast":
        return PRELOAD[contender]
    from halo_fast.formats.detect import detect

    modules = HALO_FAST_PRELOAD.get(detect(path))
    if modules is None:
        return PRELOAD["halo_fast"]
    return modules + (("numba",) if task == "reduce" and "numba" not in modules else ())


def available(name: str) -> bool:
    """Whether the contender's library can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec(REQUIRES.get(name, "json")) is not None


def fingerprint(arrays) -> dict:
    """crc32 of every token's float32 bytes in order (bit-exact identity) and their float64 sum.

    Per-token sums are added in order, so identical arrays give identical sums.
    """
    import numpy as np

    crc = 0
    total = 0.0
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float32)
        crc = zlib.crc32(a.data.cast("B"), crc)
        total += float(np.sum(a, dtype=np.float64))
    return {"crc32": f"{crc:08x}", "sum": total}


def padded(rows):
    """Ragged rows as one float32 [tokens, max ctx] matrix, NaN beyond each row (halo_fast's layout)."""
    import numpy as np

    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Run one contender once (the benchmark runner's child).")
    p.add_argument("contender", choices=sorted(CONTENDERS) + sorted(FORMAT_CONTENDERS) + sorted(FLOORS))
    p.add_argument("task", choices=TASKS + ("read",))
    p.add_argument("path")
    p.add_argument("--expect", type=int, help="tokens with attention (or bytes, for read) the result must have")
    p.add_argument("--out", help="reduce: save the NaN-padded rows here (.npy) for the runner to compare")
    args = p.parse_args(argv)
    import importlib

    started = time.perf_counter()
    for module in preload(args.contender, args.task, args.path):
        importlib.import_module(module)
    import_seconds = time.perf_counter() - started
    if args.contender in FLOORS:
        started = time.perf_counter()
        n = FLOORS[args.contender](args.path)
        seconds = time.perf_counter() - started
        result = {"count": n, "seconds": seconds}
    else:
        if args.contender in FORMAT_CONTENDERS:
            function = FORMAT_CONTENDERS[args.contender]
        else:
            function = CONTENDERS[args.contender][args.task]
        started = time.perf_counter()
        arrays = function(args.path)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = {"count": len(arrays), "seconds": seconds, **fingerprint(arrays)}
        result["check_seconds"] = time.perf_counter() - started  # part of the process time, not of the work
        if args.out and args.task == "reduce":
            import numpy as np

            np.save(args.out, padded(arrays))
    result["import_seconds"] = import_seconds
    print(json.dumps(result))
    if args.expect is not None and result["count"] != args.expect:
        print(f"{args.contender} {args.task}: got {result['count']}, expected {args.expect}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
