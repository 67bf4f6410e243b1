"""`mtgate soak` runs end to end on every account type and checks its ground truth (no
timing is asserted: the figures are the soak's to report, docs/operations.md)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from mtgate.bench.soak import SoakOptions, run_soak


async def test_soak_drives_every_operation_and_its_ground_truth_is_exact() -> None:
    opts = SoakOptions(rate=150, seconds=3, terminals=3, positions=8, seed=2)
    f = await run_soak(opts)
    assert f["unfinished"] == 0
    assert f["completed"] == f["operations"] > 300
    by_op = f["latency_by_operation_ms"]
    assert sum(v["count"] for v in by_op.values()) == f["operations"]
    assert {"market", "close", "modify", "partial_close"} <= set(by_op)
    assert f["errors"] == 0, f["errors_by_kind"]
    assert f["unknown"] == 0 and f["sessions_closed"] == 0
    truth = f["ground_truth"]
    assert truth["exact"], truth["first_findings"]
    assert truth["intents"] > 0 and truth["executions"] >= truth["intents"]
    assert f["loop_lag_ms"]["count"] > 0 and f["simulator"]["loop_lag_ms"]["count"] > 0
    assert f["rss_mb"] and all(mb > 0 for _, mb in f["rss_mb"])
    assert set(f["gc_pauses"]) == {"gen0", "gen1", "gen2"}
    assert len(f["slow_over_10ms_by_second"]) == 4


@pytest.mark.postgres
async def test_soak_on_postgresql_is_exact_and_leaves_no_schema_behind(pg_url: str) -> None:
    """The same load on the PostgreSQL journal and sync store (``--store URL``): correctness
    only; the figures come from `mtgate soak --store` itself."""
    before = _run_schemas(pg_url)
    f = await run_soak(SoakOptions(rate=150, seconds=3, terminals=3, positions=8, seed=3,
                                   store=pg_url))  # fmt: skip
    assert f["store"] == "postgresql"
    assert f["unfinished"] == 0 and f["completed"] == f["operations"] > 300
    assert f["errors"] == 0, f["errors_by_kind"]
    assert f["unknown"] == 0 and f["sessions_closed"] == 0
    assert f["ground_truth"]["exact"], f["ground_truth"]["first_findings"]
    assert _run_schemas(pg_url) == before


def _run_schemas(url: str) -> list[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            sql = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'mtgate_bench_%'"
            return [r[0] for r in conn.execute(text(sql))]
    finally:
        engine.dispose()
