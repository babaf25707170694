"""Smoke run of bench/turn.py: the quick sizes on SQLite, and no turn lost."""

from __future__ import annotations

from tests.bench import load_bench


def test_quick_bench_on_sqlite(capsys):
    bench = load_bench("turn")
    results = bench.main(["--quick", "--db", "sqlite"])
    out = capsys.readouterr().out

    for figure in (
        "seed: messages (s)",
        "(a) bookkeeping p50 (ms)",
        "(a) bookkeeping p99 (ms)",
        "(a) throughput, 8 tasks (turns/s)",
        "(b) with embedding p99 (ms)",
        "recall 1 person: warm p99 (ms)",
        "recall per person (spread): warm p99 (ms)",
        "peak RSS of `vchar chat`",
    ):
        assert figure in out, f"missing {figure!r} in:\n{out}"

    r = results["sqlite"]
    assert r["turns_driven"] == 2 * 300 + 2 * 30
    # Every turn driven stored exactly one reply, and none was a fallback or skipped.
    assert r["replies_added"] == r["turns_driven"]
    assert r["lost"] == 0
    assert r["bookkeeping"]["embed_misses"] == 0
    assert r["bookkeeping"]["seq_p99"] > 0 and r["bookkeeping"]["tps"] > 0
    assert r["recall"]["one"]["warm_p50"] > 0
    rss = results["rss"]
    assert rss["rc"] == 0 and rss["replies"] == rss["lines"] and 0 < rss["rss_mb"] < 4096
