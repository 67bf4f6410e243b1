"""The chaos run's world: simulated accounts and terminals, and the bridge built on a journal
file (again, after a restart), on one clock.

One clock for both sides: server time starts on a Wednesday at 10:00 and runs at real speed
(:class:`mtsim.clock.ServerClock`), and the bridge reads the same clock, so the journal's
times, the trade servers' history and the deadlines agree while timeouts, heartbeats and
reconnects take real time, as in the bench. With :attr:`Broker.server_offset_h` the servers'
clock runs that many hours off the bridge's, as a real broker's does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec

from mtgate.bridge import Bridge
from mtgate.chaos.plan import ChaosAccount
from mtgate.domain.clock import Clock
from mtgate.domain.enums import Platform, SymbolFillingFlag
from mtgate.sessions.routing import RoutingPolicy
from mtgate.sessions.session import SessionSettings, grants_for
from mtgate.store.journal import open_journal
from mtgate.sync.synchronizer import SyncSettings
from mtsim.server import ServerConfig
from mtsim.symbols import instant_execution
from mtsim.world import AccountSpec, SimWorld

IOC = int(SymbolFillingFlag.IOC)
START_MS = 1_767_780_000_000
"""Wednesday 7 January 2026, 10:00 server time."""

SETTINGS = SessionSettings(
    heartbeat_ms=250, request_timeout_s=1.0, read_timeout_s=1.0, max_trade_call_s=1.5
)
SYNC = SyncSettings(interval_ms=250)
FAILBACK_S = 1.0
FAILOVER_WAIT_S = 4.0


def account_id(spec: ChaosAccount) -> str:
    return f"{spec.login}@{spec.server}"


@dataclass(frozen=True, slots=True)
class Broker:
    """How hostile the simulated brokers are, beyond the plan's faults (docs/protocol.md
    review: what a friendly simulator never did). Off by default."""

    drop_comments: bool = False
    """The servers drop the EA's comments: no ``mg:`` id survives on orders, positions or
    deals (the bridge must find its orders by ticket and in the history, §9)."""
    server_offset_h: int = 0
    """The trade servers' clock runs this many hours off the bridge's (a UTC-5 broker: -5;
    server times are checked against the server's clock as reported, §5)."""
    not_ready_reads: int = 0
    """Each terminal answers this many of its first reads -3 ``not_ready`` (a terminal just
    started, §4.2); the bridge must ask again within the session."""


FRIENDLY = Broker()


def build_world(
    accounts: tuple[ChaosAccount, ...], clock: Clock, seed: int, broker: Broker = FRIENDLY
) -> SimWorld:
    specs = [
        AccountSpec(tid, a.login, a.server, a.platform, a.margin_mode, balance=10_000_000.0)
        for a in accounts
        for tid in a.terminals
    ]
    servers = {a.server for a in accounts}
    rewrite = "" if broker.drop_comments else None
    configs = {name: ServerConfig(seed=seed, rewrite_comment=rewrite) for name in servers}
    world = SimWorld(specs, clock=clock, seed=seed, configs=configs)
    for terminal in world.terminals.values():
        terminal.faults.not_ready_reads = broker.not_ready_reads
    for server in world.servers.values():
        for name, spec in list(server.symbols.items()):
            if server.platform == Platform.MT4:
                # MT4 brokers commonly run instant execution: the one mode that requotes.
                server.symbols[name] = instant_execution(spec)
            else:
                # IOC only: the EA picks it (docs/protocol.md §11 "Filling"), so a partial
                # fill fills part (10010) rather than nothing (FOK), and an order that asks
                # for FOK is refused 10030 (the "next filling" retry, when asked for).
                server.symbols[name] = msgspec.structs.replace(spec, filling_mode=IOC)
    return world


def priorities(accounts: tuple[ChaosAccount, ...]) -> dict[str, int]:
    return {tid: rank + 1 for a in accounts for rank, tid in enumerate(a.terminals)}


def build_bridge(
    world: SimWorld, db: Path, clock: Clock, accounts: tuple[ChaosAccount, ...], port: int = 0
) -> Bridge:
    url = f"sqlite:///{db}"
    return Bridge(
        terminals=grants_for(world.bindings(), priorities(accounts)),
        journal=open_journal(url),
        port=port,
        settings=SETTINGS,
        clock=clock,
        store_url=url,
        sync=SYNC,
        failover_wait_s=FAILOVER_WAIT_S,
        routing=RoutingPolicy(failback_after_s=FAILBACK_S),
    )
