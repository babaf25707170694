"""Smoke run of bench/adapters.py: 100 people x 2 messages through the Telegram adapter,
every message answered exactly once, the injected 429s retried, the figures printed."""

from __future__ import annotations

import pytest

from tests.bench import load_bench

pytestmark = pytest.mark.timeout(600)  # ~20 s on an idle 2-CPU box; minutes when it is shared


def test_quick_adapter_bench(capsys):
    bench = load_bench("adapters")
    r = bench.main(["--quick", "--progress", "0"])
    out = capsys.readouterr().out

    for figure in (
        "answered within timeout",
        "lost replies (no reply in time)",
        "duplicated replies",
        "throughput, sustained (messages/s)",
        "latency p50 (ms)",
        "latency p99 (ms)",
        "429s injected / served / retried ok",
        "TARGET (>= 100 messages/s sustained, none lost, none doubled):",
    ):
        assert figure in out, f"missing {figure!r} in:\n{out}"

    assert r["people"] == 100 and r["messages_per_person"] == 2
    assert r["pushed"] == 200
    # Every message answered, exactly once, in time; nothing went to a chat nobody wrote in.
    assert r["answered"] == r["pushed"] == r["replies_total"]
    assert r["lost"] == 0 and r["never_answered"] == 0
    assert r["duplicated"] == 0 and r["stray_replies"] == 0
    assert r["apologies"] == 0
    # The injected 429s were served and each one's message was sent again successfully.
    assert r["inject_429"] == 3 and r["served_429"] == 3 and r["retried_429"] == 3
    assert r["msgs_per_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
