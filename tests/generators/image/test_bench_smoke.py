"""Smoke run of bench/image_speed.py on the tiny pipeline: every figure printed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "image_speed.py"


def test_quick_image_bench(capsys):
    spec = importlib.util.spec_from_file_location("vchar_bench_image_speed", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    res = mod.main(["--quick", "--size", "32", "--steps", "2"])
    out = capsys.readouterr().out
    for figure in ("plain pipeline call, latency", "vchar backend (+PNG with metadata), latency",
                   "one by one (images/s)", "vchar backend, batched (images/s)", "vs one by one"):
        assert figure in out, out
    assert res["ours_conc_ips"] > 0 and res["plain_1_s"] > 0
