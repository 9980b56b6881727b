"""Coverage-guided fuzzing of the decoder with atheris (``pip install 'halo_fast[fuzz]'``).

    python fuzz/atheris_load.py -max_total_time=600 [CORPUS_DIR]

Each input is written to a file and decoded; anything other than success or
``halo_fast.CaptureError`` (another exception, a crash, a hang) is a finding.
atheris instruments the Python layers (structure bookkeeping, skeleton, planning);
the numba kernels run uninstrumented but are still exercised by every input.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

import halo_fast

SEED = (
    b'{"metadata":{"model":"m"},"prompt_tokens":[{"token_id":1,"text":"a","position":0,"turn_id":0,'
    b'"message_role":"user","sentence_id":0}],"generated_tokens":[{"step":0,"attention":null},{"step":1,'
    b'"token_id":2,"text":"b","position":1,"timestamp":5,"attention":{"shape":[1,2,2],"context_length":2,'
    b'"data":[0.25,0.75,1e-7,0.9999999]}}]}'
)


def instrument_python_layers() -> None:
    """Instrument halo_fast's plain Python functions and methods -- not the numba kernels,
    whose source numba must still be able to compile for signatures not seen yet."""
    import importlib
    import inspect

    names = [
        "halo_fast",
        "halo_fast.capture",
        "halo_fast.reduction",
        "halo_fast.formats",
        "halo_fast.formats.base",
        "halo_fast.formats.json_single",
        "halo_fast.formats.json_scan",
        "halo_fast.formats.json_skeleton",
        "halo_fast.formats.json_values",
        "halo_fast.formats.mapped",
    ]
    for name in names:
        module = importlib.import_module(name)
        for attr, obj in list(vars(module).items()):
            if inspect.isfunction(obj) and obj.__module__ == name:
                setattr(module, attr, atheris.instrument_func(obj))
            elif inspect.isclass(obj) and obj.__module__ == name:
                for method_name, method in list(vars(obj).items()):
                    if inspect.isfunction(method):
                        setattr(obj, method_name, atheris.instrument_func(method))


def main() -> None:
    handle, path = tempfile.mkstemp(suffix=".json")
    os.close(handle)

    def one_input(data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)
        try:
            halo_fast.load(path)
        except halo_fast.CaptureError:
            pass

    with open(path, "wb") as f:  # import every module the decoder uses, then instrument them
        f.write(SEED)
    halo_fast.load(path)
    instrument_python_layers()
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    if not corpus:
        seed_dir = tempfile.mkdtemp()
        with open(os.path.join(seed_dir, "seed.json"), "wb") as f:
            f.write(SEED)
        sys.argv.append(seed_dir)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
