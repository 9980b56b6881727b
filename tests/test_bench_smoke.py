"""The benchmark suite still runs end to end and its correctness checks pass (no speed asserted)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_quick_smoke(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "halo_fast", "bench", "--quick", "--json", "--sections", "main",
         "--contenders", "halo_fast,json,simdjson,read", "--repeat", "1", "--size", "5MB",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"]
    for task in ("load", "reduce"):
        rows = {row["contender"]: row for row in report["tasks"][task]}
        assert rows["halo_fast"]["status"] == "ok"
        assert rows["json"]["status"] == "ok" and rows["simdjson"]["status"] == "ok"


def test_large_adds_a_5gb_scaling_size():
    from halo_fast.cli.bench_cmd import config_from
    from halo_fast.cli.main import build_parser

    args = build_parser().parse_args(["bench", "--large"])
    assert config_from(args).sizes[-1] == 5_000_000_000
    assert 5_000_000_000 not in config_from(build_parser().parse_args(["bench"])).sizes
