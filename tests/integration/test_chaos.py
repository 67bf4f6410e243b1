"""A short seeded chaos run: orders, position changes, failovers and faults against the
simulator, with nothing duplicated, lost, left in doubt or out of step with the servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtgate.chaos.driver import run_chaos
from mtgate.chaos.plan import PlanOptions, make_plan
from mtgate.chaos.report import KEYS, figures
from mtgate.chaos.truth import compare
from mtgate.chaos.world import Broker

SEED = 2118
"""Chosen so that its 60 operations meet price refusals, busy refusals, timeouts and MT5
partial fills (each kind as the simulator counted it, so a fault armed but never met by a
trade would not count)."""


async def test_a_short_seeded_chaos_run_counts_nothing(tmp_path: Path) -> None:
    plan = make_plan(60, SEED, PlanOptions(fault_rate=0.3))
    verdict, run, truth = await run_chaos(plan, SEED, db=tmp_path / "chaos.db")
    report = figures(plan, verdict, run, truth)
    assert verdict.findings == []
    assert compare(truth).clean  # the truth kept is the one judged
    assert report["duplicates"] == report["lost"] == 0
    assert report["unknown_unresolved"] == report["mismatches"] == 0
    by_kind = report["faults_by_kind"]
    injected = {k for k, n in by_kind.items() if n}
    assert len(injected) >= 8, injected
    for group in (
        {"requote", "price_changed", "off_quotes"},
        {"context_busy", "too_many_requests"},
        {"timeout_executed", "timeout_not_executed"},
        {"partial_fill"},
    ):
        assert group & injected, (group, by_kind)
    assert report["faults_injected"] == sum(by_kind.values())
    partial = [
        j
        for j in truth.journal
        if j.fill_volume is not None and j.volume is not None and j.fill_volume < j.volume
    ]
    assert partial, "a partial fill is journalled with the volume filled, less than asked"
    assert report["retries"] > 0  # refusals and proven absences were retried
    assert report["retries"] == sum(j.retry_count for j in truth.journal)
    assert "bridge_restart" in injected or run.bridge_restarts == 0
    assert report["orders"] == 60 and run.op_errors == []


def test_the_cli_writes_exactly_the_report_keys(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    args = ["chaos", "--orders", "40", "--seed", "5", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "mtgate.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert tuple(report) == KEYS
    assert set(report["ready_after_return_ms"]) == {"p50", "p99"}
    assert report["orders"] == 40
    assert report["duplicates"] == report["lost"] == 0
    assert report["unknown_unresolved"] == report["mismatches"] == 0


@pytest.mark.parametrize("offset_h", [-5, 3])
async def test_a_hostile_broker_loses_and_doubles_nothing(tmp_path: Path, offset_h: int) -> None:
    """What a friendly simulator never did (protocol review): the brokers drop every comment
    of the bridge, their clock runs hours off the bridge's (UTC-5, UTC+3), and each terminal
    answers its first reads -3. The same plan, the same verdict: nothing duplicated, lost, in
    doubt or out of step."""
    plan = make_plan(60, SEED, PlanOptions(fault_rate=0.3))
    broker = Broker(drop_comments=True, server_offset_h=offset_h, not_ready_reads=3)
    verdict, run, truth = await run_chaos(plan, SEED, db=tmp_path / "chaos.db", broker=broker)
    report = figures(plan, verdict, run, truth)
    assert verdict.findings == []
    assert report["duplicates"] == report["lost"] == 0
    assert report["unknown_unresolved"] == report["mismatches"] == 0
    assert report["orders"] == 60 and run.op_errors == []
    assert report["retries"] > 0


def test_the_hostile_broker_is_wired_into_the_world() -> None:
    """The test above is only as hostile as the world it builds."""
    from mtgate.chaos.plan import ACCOUNTS
    from mtgate.chaos.world import START_MS, build_world
    from mtsim.clock import ServerClock

    world = build_world(
        ACCOUNTS,
        ServerClock(START_MS - 5 * 3_600_000),
        1,
        Broker(drop_comments=True, server_offset_h=-5, not_ready_reads=3),
    )
    assert {s.config.rewrite_comment for s in world.servers.values()} == {""}
    assert {t.faults.not_ready_reads for t in world.terminals.values()} == {3}
    assert all(s.clock.now_ms() < START_MS - 4 * 3_600_000 for s in world.servers.values())
