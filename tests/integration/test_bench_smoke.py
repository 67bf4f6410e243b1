"""`mtgate bench` runs end to end and reports what it measured (no timing is asserted: the
figures are the benchmark's to report, docs/operations.md)."""

from __future__ import annotations

import pytest

from mtgate.bench import stores
from mtgate.bench.harness import BenchOptions, run_bench
from tests.integration.test_soak_smoke import _run_schemas


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


@pytest.mark.postgres
async def test_bench_on_postgresql_with_its_sync_phase_executes_every_order_once(
    pg_url: str,
) -> None:
    before = _run_schemas(pg_url)
    figures = await run_bench(
        BenchOptions(orders=60, warmup=10, floor_samples=50, sync_terminals=4,
                     sync_positions=20, sync_seconds=1.0, store=pg_url)
    )  # fmt: skip
    assert figures["store"] == "postgresql"
    assert figures["errors"] == 0
    assert figures["orders_executed_by_simulator"] == figures["orders_sent_total"]
    assert figures["sync"]["stale_accounts"] == 0
    assert _run_schemas(pg_url) == before


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("mysql://u@h/db", "scheme 'mysql' is not supported"),
        ("not a url", "expected 'sqlite' or a database URL"),
    ],
)
def test_a_store_the_runs_cannot_use_is_a_clear_error(store: str, message: str) -> None:
    with pytest.raises(stores.StoreChoiceError, match=message):
        stores.kind_of(store)
