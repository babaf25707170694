"""Smoke run of bench/studio.py at small sizes: every figure printed, the paged chat page intact."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "studio.py"


def test_small_studio_bench_prints_its_figures(capsys):
    spec = importlib.util.spec_from_file_location("vchar_bench_studio", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    results = bench.main(["--messages", "300", "--renders", "5", "--turns", "2"])
    out = capsys.readouterr().out
    for figure in ("chat page render: p50", "first streamed token: studio p50", "resident memory the studio adds"):
        assert figure in out
    assert results["page_kb"] > 5 and results["ttft_studio_p50_ms"] > 0 and results["ttft_manager_p50_ms"] > 0
