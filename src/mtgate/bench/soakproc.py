"""The soak's other process: the simulated terminals and their trade servers, and at the end
the ground truth read from those servers.

As in the benchmark (mtgate.bench.simproc), the terminals run outside the bridge's process so
the bridge has its core to itself, as in production where terminals run elsewhere.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing.connection
from dataclasses import dataclass

from mtgate.chaos.ops import executions
from mtgate.chaos.truth import Execution, PositionFacts
from mtgate.domain.enums import MarginMode, Platform
from mtgate.protocol.auth import Secret
from mtgate.runtime import GcPauses, LoopLag, settle_heap, use_uvloop
from mtsim.clock import ServerClock
from mtsim.world import AccountSpec, SimWorld

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")
"""Where the accounts' standing positions are spread (the orders trade EURUSD)."""
STANDING_VOLUME = 1.0
"""Lots of each standing position: room for many partial closes of the minimum volume."""


@dataclass(frozen=True, slots=True)
class SoakTerminal:
    terminal_id: str
    key_hex: str
    login: int
    platform: str
    server: str
    netting: bool


@dataclass(frozen=True, slots=True)
class SoakPlan:
    host: str
    port: int
    terminals: list[SoakTerminal]
    positions: int
    """Standing positions of each hedging account (a netting account: one per symbol)."""
    broker_delay_ms: tuple[float, float]
    seed: int
    tick_interval_s: float = 1.0
    mt5_pipeline: bool = False
    """MT5 terminals offer the feature ``pipeline`` (several trades at once)."""


@dataclass(frozen=True, slots=True)
class ServerTruth:
    """What the trade servers hold at the end, by account ``login@server``."""

    executions: list[Execution]
    pending: dict[str, set[int]]
    positions: dict[str, list[PositionFacts]]
    loop_lag_ms: list[float]
    """The simulator's own event-loop lag over the load: a tail the bridge did not make."""
    gc_max_pause_ms: float


def _world(plan: SoakPlan) -> SimWorld:
    world = SimWorld(
        [
            AccountSpec(
                t.terminal_id,
                t.login,
                t.server,
                Platform(t.platform),
                MarginMode.NETTING if t.netting else MarginMode.HEDGING,
                balance=100_000_000.0,
                key=Secret.from_hex(t.key_hex),
                pipeline=plan.mt5_pipeline,
            )
            for t in plan.terminals
        ],
        clock=ServerClock(1_767_780_000_000),
        seed=plan.seed,
        broker_delay_ms=plan.broker_delay_ms,
    )
    for t in plan.terminals:
        server = world.servers[t.server]
        per_symbol, extra = (1, 0) if t.netting else divmod(plan.positions, len(SYMBOLS))
        for i, symbol in enumerate(SYMBOLS):
            count = per_symbol + (1 if i < extra else 0)
            if count:
                server.open_positions(t.login, symbol, count, volume=STANDING_VOLUME, magic=77)
    return world


def _truth(world: SimWorld, plan: SoakPlan, lag: LoopLag, pauses: GcPauses) -> ServerTruth:
    execs = [ex for s in world.servers.values() for ex in executions(s)]
    pending: dict[str, set[int]] = {}
    positions: dict[str, list[PositionFacts]] = {}
    for t in plan.terminals:
        account = f"{t.login}@{t.server}"
        server = world.servers[t.server]
        pending[account] = {o.ticket for o in server.pending_orders(t.login)}
        positions[account] = [
            PositionFacts(p.ticket, p.volume, p.sl, p.tp) for p in server.positions(t.login)
        ]
    lag_ms = list(lag.histogram.samples or ())
    return ServerTruth(execs, pending, positions, lag_ms, pauses.max_ms)


async def _keep_heap_settled() -> None:
    """The trade servers keep every order and deal they made, so this process's heap only
    grows, and each full collection walks all of it (20+ ms pauses after a minute at
    1,000/s: a tail the terminals would not add, each being a process of its own on another
    machine). Freezing what survived each second keeps the collections young."""
    while True:
        await asyncio.sleep(1.0)
        gc.freeze()


async def _serve(plan: SoakPlan, conn: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    world = _world(plan)
    world.start(plan.host, plan.port, tick_interval_s=plan.tick_interval_s)
    settle_heap()
    keeper = loop.create_task(_keep_heap_settled(), name="sim:heap")
    lag = LoopLag(keep=True)
    pauses = GcPauses(keep=False).install()
    conn.send("started")
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "load":  # measure the loop from here
            lag.start()
        elif command == "truth":
            lag.stop()
            conn.send(_truth(world, plan, lag, pauses))
        else:
            break  # "stop" (or anything else)
    pauses.remove()
    keeper.cancel()
    await world.stop()
    conn.send("stopped")


def main(plan: SoakPlan, conn: multiprocessing.connection.Connection) -> None:
    use_uvloop()
    asyncio.run(_serve(plan, conn))
