"""The benchmark's other process: simulated terminals and the loopback echo server.

Running them outside the bridge's process gives the bridge its own core, as in production
where terminals run elsewhere, and puts the echo floor in exactly the same arrangement.
"""

from __future__ import annotations

import asyncio
import multiprocessing.connection
import os
import struct
from dataclasses import dataclass, field
from typing import cast

from mtgate.domain.enums import MarginMode, Platform
from mtgate.protocol import messages as m
from mtgate.protocol.auth import Secret
from mtsim.clock import ServerClock
from mtsim.world import AccountSpec, SimWorld

_HEADER = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class SimPlan:
    host: str
    port: int
    terminals: list[
        tuple[str, str, int, str, str]
    ]  # (terminal id, key hex, login, platform, server)
    broker_delay_ms: tuple[float, float]
    seed: int
    sync_terminals: list[tuple[str, str, int]] = field(default_factory=list)
    """(terminal id, key hex, login): started on demand, each with ``sync_positions`` open
    positions, syncing; the order-path terminals above do not offer sync."""
    sync_positions: int = 0
    sync_server: str = "Sim-Sync"
    sync_tick_interval_s: float = 1.0
    mt5_pipeline: bool = True
    """The order-path MT5 terminals offer the feature ``pipeline`` (docs/protocol.md §4.3)."""


class _Echo(asyncio.Protocol):
    """Echoes every complete frame back, as one write: the floor a frame round trip costs."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._t: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._t = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            (size,) = _HEADER.unpack_from(buf, pos)
            if len(buf) - pos - 4 < size:
                break
            end = pos + 4 + size
            assert self._t is not None
            self._t.write(bytes(buf[pos:end]))
            pos = end
        del buf[:pos]


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


async def _serve(plan: SimPlan, conn: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    echo = await loop.create_server(_Echo, "127.0.0.1", 0)
    accounts = [
        AccountSpec(
            tid,
            login,
            server,
            Platform(platform),
            MarginMode.HEDGING,
            balance=10_000_000.0,
            key=Secret.from_hex(key),
            sync=False,
            pipeline=plan.mt5_pipeline,
        )
        for tid, key, login, platform, server in plan.terminals
    ]
    world = SimWorld(
        accounts,
        clock=ServerClock(1_767_780_000_000),
        seed=plan.seed,
        broker_delay_ms=plan.broker_delay_ms,
    )
    world.start(plan.host, plan.port)
    conn.send(("echo", echo.sockets[0].getsockname()[1]))
    sync_world: SimWorld | None = None
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command != "sync" or sync_world is not None:
            break  # "stop" (or anything else)
        sync_world = _sync_world(plan)
        sync_world.start(plan.host, plan.port, tick_interval_s=plan.sync_tick_interval_s)
        conn.send(("sync", len(sync_world.terminals)))
    if sync_world is not None:
        await sync_world.stop()
    await world.stop()
    echo.close()
    conn.send(("executed", _market_orders_executed(world)))


def _sync_world(plan: SimPlan) -> SimWorld:
    """The sync load: terminals whose accounts hold ``sync_positions`` positions each,
    spread over the symbols, on a server of their own (the order path's is not touched)."""
    accounts = [
        AccountSpec(
            tid,
            login,
            plan.sync_server,
            Platform.MT5,
            MarginMode.HEDGING,
            balance=10_000_000.0,
            key=Secret.from_hex(key),
        )
        for tid, key, login in plan.sync_terminals
    ]
    world = SimWorld(
        accounts,
        clock=ServerClock(1_767_780_000_000),
        seed=plan.seed + 1,
    )
    server = world.servers[plan.sync_server]
    symbols = sorted(server.symbols)
    for _, _, login in plan.sync_terminals:
        per_symbol, extra = divmod(plan.sync_positions, len(symbols))
        for i, symbol in enumerate(symbols):
            count = per_symbol + (1 if i < extra else 0)
            if count:
                server.open_positions(
                    login, symbol, count, volume=server.symbols[symbol].volume_min, magic=77
                )
    return world


def _market_orders_executed(world: SimWorld) -> int:
    """Ground truth: market orders the trade servers executed (filled or refused)."""
    return sum(
        1
        for server in world.servers.values()
        for entry in server.executed
        if isinstance(entry.request, m.MarketOrder)
    )


def main(plan: SimPlan, conn: multiprocessing.connection.Connection) -> None:
    _install_uvloop()
    profile_to = os.environ.get("MTGATE_BENCH_PROFILE_SIM")
    if not profile_to:
        asyncio.run(_serve(plan, conn))
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(_serve(plan, conn))
    profiler.disable()
    profiler.dump_stats(profile_to)
