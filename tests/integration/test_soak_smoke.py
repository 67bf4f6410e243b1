"""`mtgate soak` runs end to end on every account type and checks its ground truth (no
timing is asserted: the figures are the soak's to report, docs/operations.md)."""

from __future__ import annotations

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
