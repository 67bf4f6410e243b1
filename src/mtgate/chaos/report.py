"""The chaos run's figures as JSON, and a run with a progress bar on a terminal."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from mtgate.chaos.driver import RunFigures, run_chaos
from mtgate.chaos.plan import FaultKind, Op, PlanOptions, Step, make_plan
from mtgate.chaos.truth import Truth, Verdict, retries
from mtgate.chaos.world import FRIENDLY, Broker

KEYS = (
    "orders",
    "faults_injected",
    "faults_by_kind",
    "duplicates",
    "lost",
    "unknown_unresolved",
    "mismatches",
    "retries",
    "failovers",
    "ready_after_return_ms",
    "wall_s",
)
"""The keys of the JSON report, exactly."""


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    s = sorted(samples)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def figures(
    plan: tuple[Step, ...], verdict: Verdict, run: RunFigures, truth: Truth
) -> dict[str, Any]:
    """The JSON report: counters of the verdict, faults by kind (every kind of the suite;
    what took effect, as the simulator counted it: 0 for one planned that never met a trade
    it applies to), retries (attempts beyond the first, the journal's ``retry_count``)."""
    by_kind = {k.value: run.faults_injected.get(k.value, 0) for k in FaultKind}
    samples = run.ready_after_return_ms
    return {
        "orders": sum(1 for s in plan if isinstance(s, Op)),
        "faults_injected": sum(by_kind.values()),
        "faults_by_kind": by_kind,
        "duplicates": verdict.count("duplicates"),
        "lost": verdict.count("lost"),
        "unknown_unresolved": verdict.count("unknown_unresolved"),
        "mismatches": verdict.count("mismatches"),
        "retries": retries(truth.journal),
        "failovers": run.failovers,
        "ready_after_return_ms": {
            "p50": percentile(samples, 0.5),
            "p99": percentile(samples, 0.99),
        },
        "wall_s": round(run.wall_s, 1),
    }


def not_injected(run: RunFigures) -> list[str]:
    """Kinds planned but never injected (armed where they could not apply, or cleared
    before a trade met them)."""
    return sorted(k for k, n in run.faults_planned.items() if n and not run.faults_injected.get(k))


async def _run(
    plan: tuple[Step, ...], seed: int, progress: bool, db: Path | None, broker: Broker
) -> tuple[Verdict, RunFigures, Truth]:
    if not progress:
        return await run_chaos(plan, seed, db=db, broker=broker)
    from rich.progress import Progress

    with Progress(transient=False) as bar:
        task = bar.add_task(f"chaos seed {seed}", total=len(plan))
        return await run_chaos(plan, seed, on_step=lambda: bar.advance(task), db=db, broker=broker)


def run(
    orders: int,
    seed: int,
    *,
    progress: bool | None = None,
    options: PlanOptions | None = None,
    db: Path | None = None,
    broker: Broker = FRIENDLY,
) -> tuple[dict[str, Any], Verdict, RunFigures]:
    """Plan, drive and judge one run; the JSON figures, the verdict and the run's figures."""
    plan = make_plan(orders, seed, options)
    show = sys.stdout.isatty() if progress is None else progress
    verdict, run_figures, truth = asyncio.run(_run(plan, seed, show, db, broker))
    return figures(plan, verdict, run_figures, truth), verdict, run_figures
