"""`mtgate bench` runs end to end and reports what it measured (no timing is asserted: the
figures are the benchmark's to report, docs/operations.md)."""

from __future__ import annotations

from mtgate.bench.harness import BenchOptions, run_bench


async def test_bench_with_http_reports_both_paths_and_every_order_executes_once() -> None:
    figures = await run_bench(
        BenchOptions(orders=60, warmup=10, floor_samples=50, sync_terminals=0, http=True)
    )
    assert figures["errors"] == 0
    assert figures["orders_executed_by_simulator"] == figures["orders_sent_total"]
    assert set(figures["http_latency_ms"]) == {"p50", "p90", "p99"}
    assert figures["http_latency_ms"]["p50"] > 0
    assert figures["http_latency_concurrency_1_ms"]["p50"] > 0
    assert figures["http_overhead_ratio_p50"] is not None
    assert figures["http_bridge_cpu_us_per_order"] > 0
