"""Child process of the fuzz tests: decode each case file, compare with the reference, report.

Run as ``python tests/fuzz_worker.py CASE_DIR``. Prints ``start I`` before case I and one
JSON line after it, so a crash or hang names its input. Outcomes: ``exact`` (decoded, and
identical to json.loads), ``error`` (halo_fast.CaptureError), or anything else, which the
test reports as a failure.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import halo_fast  # noqa: E402
from reference import assert_capture_matches, capture_problem  # noqa: E402


def run_case(path: str) -> str:
    with open(path, "rb") as f:
        text = f.read()
    try:
        cap = halo_fast.load(path)
    except halo_fast.CaptureError:
        problem = capture_problem(text)
        return "error" if problem else "rejected a valid capture"
    except Exception as exc:  # anything but CaptureError is a defect
        return f"raised {type(exc).__name__}: {exc}"
    try:
        assert_capture_matches(cap, text)
    except Exception as exc:
        return f"mismatch: {type(exc).__name__}: {exc}"
    try:
        if cap.tokens["has_attention"].any():
            halo_fast.reduce(path)
    except halo_fast.CaptureError as exc:
        return f"load succeeded but reduce raised: {exc}"
    except Exception as exc:
        return f"reduce raised {type(exc).__name__}: {exc}"
    return "exact"


def main(directory: str) -> int:
    names = sorted(os.listdir(directory), key=lambda n: int(n.split(".")[0]))
    for name in names:
        index = int(name.split(".")[0])
        print(f"start {index}", flush=True)
        print(json.dumps({"case": index, "outcome": run_case(os.path.join(directory, name))}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
