"""Smoke run of bench/studio.py at small sizes: every figure printed, the paged chat page intact."""

from __future__ import annotations

from tests.bench import load_bench


def test_small_studio_bench_prints_its_figures(capsys):
    results = load_bench("studio").main(["--messages", "300", "--renders", "5", "--turns", "2"])
    out = capsys.readouterr().out
    for figure in ("chat page render: p50", "first streamed token: studio p50", "resident memory the studio adds"):
        assert figure in out
    assert results["page_kb"] > 5 and results["ttft_studio_p50_ms"] > 0 and results["ttft_manager_p50_ms"] > 0
