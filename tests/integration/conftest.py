"""Bridge ↔ simulator over real loopback sockets, with a real SQLite journal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from mtgate.bridge import Bridge
from mtgate.config import EventsSection
from mtgate.domain.clock import ManualClock
from mtgate.domain.enums import MarginMode, Platform
from mtgate.events.relay import Sink
from mtgate.health.settings import HealthSettings
from mtgate.sessions.registry import HandshakeLimits
from mtgate.sessions.routing import RoutingPolicy
from mtgate.sessions.session import AccountKey, SessionSettings, grants_for
from mtgate.store.journal import open_journal
from mtgate.sync.synchronizer import SyncSettings
from mtsim.server import ServerConfig, Session, TradeServer
from mtsim.terminal import SimTerminal
from mtsim.world import AccountSpec, SimWorld

# Wednesday 7 January 2026, 10:00 server time.
START_MS = 1_767_780_000_000
US30_CLOSED_NOW = {
    "US30": tuple(Session(weekday=d, start_min=16 * 60 + 30, end_min=23 * 60) for d in range(5))
}

MT4, MT5H, MT5N = "mt4", "mt5h", "mt5n"
DEFAULT_ACCOUNTS = [
    AccountSpec(MT4, 1001, "Sim-MT4", Platform.MT4, MarginMode.HEDGING),
    AccountSpec(MT5H, 2001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING),
    AccountSpec(MT5N, 2002, "Sim-MT5", Platform.MT5, MarginMode.NETTING),
]


class Harness:
    def __init__(self, world: SimWorld, bridge: Bridge, clock: ManualClock, db: Path) -> None:
        self.world = world
        self.bridge = bridge
        self.clock = clock
        self.db = db

    def account(self, terminal_id: str) -> str:
        return self.world.account_of(terminal_id)

    def terminal(self, terminal_id: str) -> SimTerminal:
        return self.world.terminals[terminal_id]

    def server(self, terminal_id: str) -> TradeServer:
        return self.world.server_of(terminal_id)

    def login(self, terminal_id: str) -> int:
        return next(s.login for s in self.world.accounts if s.terminal_id == terminal_id)

    def trades_seen(self, terminal_id: str) -> int:
        """Trade requests the terminal's trade server executed or refused (ground truth)."""
        from mtgate.protocol import messages as m

        login = self.login(terminal_id)
        return sum(
            1
            for e in self.server(terminal_id).executed
            if e.login == login and isinstance(e.request, m.TRADE_OPS)
        )

    async def ready(self, *terminal_ids: str) -> None:
        every = {s.terminal_id for s in self.world.accounts}
        await self.bridge.wait_ready(set(terminal_ids or every), timeout_s=10)


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout_s: float = 5.0) -> None:
    """Poll ``check`` until it holds; fail with a clear message when it does not in time."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = check()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)


def open_tickets(bridge: Bridge, key: AccountKey) -> set[int]:
    """Tickets of the account's open positions as the synchronizer sees them (none before
    its first snapshot)."""
    view = bridge.sync.views.get(key)
    return set() if view is None else set(view.positions)


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    made: list[Harness] = []

    async def make(
        accounts: list[AccountSpec] | None = None,
        *,
        configs: dict[str, ServerConfig] | None = None,
        settings: SessionSettings | None = None,
        read_delay_ms: float = 0.0,
        broker_delay_ms: tuple[float, float] = (0.0, 0.0),
        start: bool = True,
        db: Path | None = None,
        sync: SyncSettings | None = None,
        handshake_limits: HandshakeLimits | None = None,
        failover_wait_s: float = 5.0,
        priorities: dict[str, int] | None = None,
        routing: RoutingPolicy | None = None,
        health: HealthSettings | None = None,
        journal_url: str | None = None,
        events: EventsSection | None = None,
        event_sinks: list[Sink] | None = None,
        server_start_ms: int | None = None,
        mt5_terminals: str = "sim",
    ) -> Harness:
        clock = ManualClock(START_MS if server_start_ms is None else server_start_ms)
        configs = configs or {
            name: ServerConfig(sessions=US30_CLOSED_NOW) for name in ("Sim-MT4", "Sim-MT5")
        }
        world = SimWorld(
            accounts or DEFAULT_ACCOUNTS,
            clock=clock,
            seed=3,
            configs=configs,
            read_delay_ms=read_delay_ms,
            broker_delay_ms=broker_delay_ms,
            mt5_terminals=mt5_terminals,
        )
        db = db or tmp_path / f"journal{len(made)}.db"
        bridge = Bridge(
            terminals=grants_for(world.bindings(), priorities),
            journal=open_journal(journal_url or f"sqlite:///{db}"),
            settings=settings or SessionSettings(heartbeat_ms=200),
            store_url=f"sqlite:///{db}",
            sync=sync or SyncSettings(interval_ms=200),
            handshake_limits=handshake_limits,
            failover_wait_s=failover_wait_s,
            routing=routing,
            health=health,
            events=events,
            event_sinks=event_sinks,
        )
        harness = Harness(world, bridge, clock, db)
        made.append(harness)
        if start:
            host, port = await bridge.start()
            world.start(host, port)
            await harness.ready()
        return harness

    yield make
    for harness in made:
        await harness.world.stop()
        await harness.bridge.stop()


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> Harness:
    return await make_harness()


TERMINAL_KINDS = ["sim", "agent-fake"]
"""What runs beside each MT5 account in the suites that take :func:`any_harness`: the
simulated EA, or the MetaTrader5 agent over the strict fake package."""


SIM_EA_FAULTS = pytest.mark.parametrize("terminal_kind", ["sim"])
"""For a test of :func:`any_harness` that injects a fault through the simulated EA's own
hooks (``SimTerminal.faults``): the agent's terminal conditions are the fake package's
switches instead, tested in tests/integration/test_agent.py."""


@pytest.fixture(params=TERMINAL_KINDS)
def terminal_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def any_harness(make_harness: HarnessFactory, terminal_kind: str) -> Harness:
    """The default world with its MT5 accounts served by each kind of terminal in turn."""
    return await make_harness(mt5_terminals=terminal_kind)
