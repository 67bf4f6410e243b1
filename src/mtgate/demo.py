"""`mtgate demo`: the bridge on SQLite and three simulated terminals, one scripted session.

Every step states the outcome it expects; the demo exits non-zero if any step differs, so it
doubles as an end-to-end smoke test of the real socket, journal and simulator.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mtgate import runtime
from mtgate.bridge import Bridge
from mtgate.domain.enums import MarginMode, Platform
from mtgate.domain.orders import OrderStatus
from mtgate.execution.requests import OrderResult
from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey, grants_for
from mtgate.store.journal import open_journal
from mtgate.sync.synchronizer import SyncSettings
from mtsim.clock import ServerClock
from mtsim.faults import Fault, FaultKind
from mtsim.server import ServerConfig, Session
from mtsim.world import AccountSpec, SimWorld

# Wednesday 7 January 2026, 10:00 server time: FX is open, the US30 cash session is not.
SERVER_START_MS = 1_767_780_000_000
SYNC_INTERVAL_MS = 250
US30_SESSION = tuple(Session(weekday=d, start_min=16 * 60 + 30, end_min=23 * 60) for d in range(5))

MT4, MT5H, MT5N = "mt4-hedge", "mt5-hedge", "mt5-net"
ACCOUNTS = [
    AccountSpec(MT4, 1001, "Sim-MT4", Platform.MT4, MarginMode.HEDGING),
    AccountSpec(MT5H, 2001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING),
    AccountSpec(MT5N, 2002, "Sim-MT5", Platform.MT5, MarginMode.NETTING),
]


@dataclass(slots=True)
class Step:
    label: str
    expected: OrderStatus
    result: OrderResult


@dataclass(slots=True)
class PositionStep:
    """A position operation: what was asked, what came of it, whether that was expected."""

    label: str
    account: str
    ticket: int
    outcome: str
    ok: bool


class Demo:
    def __init__(self, bridge: Bridge, world: SimWorld) -> None:
        self.bridge = bridge
        self.world = world
        self.steps: list[Step] = []
        self.position_steps: list[PositionStep] = []

    def acct(self, terminal_id: str) -> str:
        return self.world.account_of(terminal_id)

    def quote(self, terminal_id: str, symbol: str) -> m.Tick:
        session = self.bridge.registry.route(AccountKey.parse(self.acct(terminal_id)))
        return session.view.ticks[symbol]

    def point(self, terminal_id: str, symbol: str) -> float:
        session = self.bridge.registry.route(AccountKey.parse(self.acct(terminal_id)))
        return session.view.symbols[symbol].point

    def record(self, label: str, expected: OrderStatus, result: OrderResult) -> OrderResult:
        self.steps.append(Step(label, expected, result))
        return result

    async def market(
        self,
        label: str,
        tid: str,
        symbol: str,
        side: str,
        volume: float,
        expected: OrderStatus = OrderStatus.FILLED,
        **extra: Any,
    ) -> OrderResult:
        result = await self.bridge.place_market_order(
            account=self.acct(tid), symbol=symbol, side=side, volume=volume, magic=4242, **extra
        )
        return self.record(label, expected, result)

    async def pending(
        self,
        label: str,
        tid: str,
        symbol: str,
        kind: str,
        volume: float,
        offset_points: int,
        stoplimit_offset: int | None = None,
        **extra: Any,
    ) -> OrderResult:
        tick, point = self.quote(tid, symbol), self.point(tid, symbol)
        ref = tick.ask if kind.startswith("buy") else tick.bid
        digits = len(f"{point:.10f}".rstrip("0").split(".")[1])
        price = round(ref + offset_points * point, digits)
        stoplimit = (
            None if stoplimit_offset is None else round(ref + stoplimit_offset * point, digits)
        )
        result = await self.bridge.place_pending_order(
            account=self.acct(tid),
            symbol=symbol,
            kind=kind,
            volume=volume,
            price=price,
            stoplimit=stoplimit,
            magic=4242,
            **extra,
        )
        return self.record(label, OrderStatus.PLACED, result)

    async def run(self) -> None:
        point = self.point(MT4, "EURUSD")
        bid = self.quote(MT4, "EURUSD").bid
        await self.market(
            "market buy, SL/TP",
            MT4,
            "EURUSD",
            "buy",
            0.10,
            sl=round(bid - 300 * point, 5),
            tp=round(bid + 600 * point, 5),
        )
        await self.market("market sell", MT5H, "GBPUSD", "sell", 0.20)
        await self.market("market buy (netting)", MT5N, "USDJPY", "buy", 0.50)
        await self.market("market sell reduces it", MT5N, "USDJPY", "sell", 0.20)

        limit = await self.pending("buy limit", MT4, "EURUSD", "buy_limit", 0.10, -200)
        await self.pending("sell stop", MT4, "EURUSD", "sell_stop", 0.10, -250)
        trigger = await self.pending("buy stop", MT5H, "GBPUSD", "buy_stop", 0.10, 150)
        gold = await self.pending("sell limit", MT5H, "XAUUSD", "sell_limit", 0.05, 500)
        await self.pending("buy stop-limit", MT5H, "EURUSD", "buy_stop_limit", 0.10, 300, 200)
        await self.pending("sell stop-limit", MT5N, "USDJPY", "sell_stop_limit", 0.10, -300, -200)

        assert limit.requested_price is not None
        modified = await self.bridge.modify_order(
            account=self.acct(MT4),
            client_order_id=limit.client_order_id,
            price=round(limit.requested_price - 50 * point, 5),
            sl=round(limit.requested_price - 400 * point, 5),
        )
        self.record("modify: price -50 pts, SL", OrderStatus.PLACED, modified)
        cancelled = await self.bridge.cancel_order(
            account=self.acct(MT5H), client_order_id=gold.client_order_id
        )
        self.record("cancel", OrderStatus.CANCELLED, cancelled)

        await self.trigger(trigger)
        self.record(
            "buy stop triggered", OrderStatus.FILLED, await self._get(MT5H, trigger.client_order_id)
        )

        first = self.steps[0].result
        found = await self.bridge.get_order(self.acct(MT4), ticket=first.ticket)
        assert found is not None
        self.record(f"query by ticket #{first.ticket}", OrderStatus.FILLED, found)

        # The simulated server requotes the next market order: the bridge tries it again at
        # once on the fresh price, as a second attempt (docs/operations.md, "Retries").
        self.world.terminals[MT5H].plan.script(Fault(FaultKind.REQUOTE))
        requoted = await self.bridge.place_market_order(
            account=self.acct(MT5H), symbol="EURUSD", side="buy", volume=0.10, magic=4242
        )
        steps = " → ".join(
            f"{a.outcome}{f' {a.code}' if a.code else ''}" for a in requoted.attempts
        )
        self.record(f"requoted, retried: {steps}", OrderStatus.FILLED, requoted)

        await self.market("refused: volume step", MT4, "EURUSD", "buy", 0.015, OrderStatus.REJECTED)
        await self.market(
            "rejected: MT4 market closed", MT4, "US30", "buy", 1.0, OrderStatus.REJECTED
        )
        await self.market(
            "rejected: MT5 market closed", MT5H, "US30", "sell", 1.0, OrderStatus.REJECTED
        )

    def note(self, label: str, tid: str, ticket: int, outcome: str, ok: bool) -> None:
        self.position_steps.append(PositionStep(label, self.acct(tid), ticket, outcome, ok))

    async def positions_part(self) -> None:
        """Trailing stop, partial close, reversals, bulk close: issue 3's operations."""
        await self.trailing_stop()
        await self.partial_close()
        await self.reversals()
        await self.bulk_close()

    async def _synced(self, tid: str, ticket: int) -> None:
        """Wait until the synchronizer has seen ``ticket`` (at most a few sync intervals)."""
        view = self.bridge.sync.views.get(AccountKey.parse(self.acct(tid)))
        for _ in range(500):
            if view is not None and ticket in view.positions:
                return
            await asyncio.sleep(0.01)
            view = self.bridge.sync.views.get(AccountKey.parse(self.acct(tid)))

    async def trailing_stop(self) -> None:
        opened = await self.market("buy to trail", MT5H, "EURUSD", "buy", 0.10)
        assert opened.position_id is not None and opened.fill_price is not None
        ticket = opened.position_id
        await self._synced(MT5H, ticket)
        point = self.point(MT5H, "EURUSD")
        await self.bridge.trail_position(
            account=self.acct(MT5H),
            ticket=ticket,
            distance_points=150,
            step_points=20,
            activation_points=50,
            min_interval_ms=0,
        )
        server = self.world.servers["Sim-MT5"]
        path = [0, 40, 80, 130, 110, 190, 260]  # points above the fill: up, a pullback, up
        for offset in path:
            bid = round(opened.fill_price + offset * point, 5)
            server.set_quote("EURUSD", bid, round(bid + 2 * point, 5))
            await self._settle(MT5H, ticket)
        moves = [sl for a, t, sl, _ in self.bridge.trailing.moves if t == ticket]
        expected = [round(opened.fill_price + d * point, 5) for d in (-70, -20, 40, 110)]
        self.note(
            "trailing stop (150 pts, step 20, from +50)",
            MT5H,
            ticket,
            "SL " + " -> ".join(f"{sl:.5f}" for sl in moves),
            moves == expected,
        )

    async def _settle(self, tid: str, ticket: int) -> None:
        """Let the tick reach the bridge and a trailing move (if any) finish."""
        for _ in range(50):
            await asyncio.sleep(0.01)
            if not any(e.in_flight for e in self.bridge.trailing._entries.values()):
                break

    async def partial_close(self) -> None:
        first = self.steps[0].result  # the MT4 market buy of 0.10
        assert first.ticket is not None
        await self._synced(MT4, first.ticket)
        part = await self.bridge.close_position(
            account=self.acct(MT4), ticket=first.ticket, volume=0.04
        )
        self.record("partial close 0.04 (MT4)", OrderStatus.FILLED, part)
        rest = part.remainder_ticket
        self.note(
            "MT4 partial close renumbers",
            MT4,
            first.ticket,
            f"0.06 left as #{rest} (from #{first.ticket})",
            rest is not None and rest != first.ticket,
        )

    async def reversals(self) -> None:
        netting = await self.bridge.list_positions(self.acct(MT5N), "USDJPY")
        ticket = netting[0].ticket
        await self._synced(MT5N, ticket)
        rev = await self.bridge.reverse_position(account=self.acct(MT5N), ticket=ticket)
        if rev.open is not None:
            self.record("reversal (netting, one deal)", OrderStatus.FILLED, rev.open)
        self.note("reverse USDJPY buy 0.30 (netting)", MT5N, ticket, rev.message, rev.complete)
        hedged = await self.bridge.list_positions(self.acct(MT5H), "GBPUSD")
        sell = next(p for p in hedged if p.type == 1)
        await self._synced(MT5H, sell.ticket)
        rev = await self.bridge.reverse_position(
            account=self.acct(MT5H), ticket=sell.ticket, volume=0.10
        )
        for leg, result in (("close", rev.close), ("open", rev.open)):
            if result is not None:
                self.record(f"reversal (hedging): {leg}", OrderStatus.FILLED, result)
        self.note(
            "reverse GBPUSD sell 0.20 (hedging)", MT5H, sell.ticket, rev.message, rev.complete
        )

    async def bulk_close(self) -> None:
        await asyncio.sleep(self.bridge.sync.settings.interval_ms / 1000 * 1.5)  # one sync
        results = await self.bridge.bulk_close(select={"magic": 4242, "symbol": "EURUSD"})
        for item in results:
            closed = item.closed
            ok = closed is not None and closed.status == OrderStatus.FILLED
            outcome = closed.status.value if closed is not None else "-"
            self.note(
                "bulk close EURUSD, magic 4242",
                _tid_of(self, item.account),
                item.ticket,
                outcome,
                ok,
            )

    async def trigger(self, order: OrderResult) -> None:
        """Move the simulated GBPUSD price through the buy stop and wait for the bridge to see it."""
        server = self.world.servers["Sim-MT5"]
        assert order.requested_price is not None
        bid, ask, _ = server.feed.quote("GBPUSD")
        spread = ask - bid
        new_ask = order.requested_price + 5 * self.point(MT5H, "GBPUSD")
        server.set_quote("GBPUSD", round(new_ask - spread, 5), round(new_ask, 5))
        for _ in range(200):
            current = await self._get(MT5H, order.client_order_id)
            if current.status == OrderStatus.FILLED:
                return
            await asyncio.sleep(0.01)

    async def _get(self, tid: str, client_order_id: str) -> OrderResult:
        found = await self.bridge.get_order(self.acct(tid), client_order_id=client_order_id)
        assert found is not None
        return found


def _tid_of(demo: Demo, account: str) -> str:
    return next(a.terminal_id for a in ACCOUNTS if demo.acct(a.terminal_id) == account)


def _fmt(value: float | None, digits: int = 5) -> str:
    if value is None:
        return ""
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if digits else text


def render(
    console: Console, demo: Demo, accounts: list[tuple[str, m.AccountReport, int, int]]
) -> None:
    table = Table(title="mtgate demo: orders", header_style="bold")
    for col in (
        "step",
        "client id",
        "terminal",
        "type",
        "status",
        "ticket",
        "fill price",
        "slippage pts",
        "latency ms",
        "reason",
    ):
        table.add_column(col, overflow="fold")
    for step in demo.steps:
        r = step.result
        status = (
            r.status.value
            if r.status == step.expected
            else f"{r.status.value} (expected {step.expected.value})"
        )
        reason = ""
        if r.error is not None:
            code = (
                f"{r.error.code} {r.error.name}: "
                if r.error.code is not None
                else f"{r.error.rule}: "
            )
            reason = f"[{r.error.source}] {code}{r.error.message}"
        table.add_row(
            step.label,
            r.client_order_id,
            r.terminal_id,
            r.order_type
            if r.action == "open"
            else f"{r.action} #{r.position_ticket}: {r.order_type}",
            status,
            _fmt(r.ticket, 0),
            _fmt(r.fill_price),
            _fmt(r.slippage_points, 1),
            _fmt(r.execution_time_ms, 3),
            reason,
        )
    console.print(table)
    ops = Table(title="mtgate demo: position operations", header_style="bold")
    for col in ("operation", "account", "ticket", "outcome", "as expected"):
        ops.add_column(col, overflow="fold")
    for p in demo.position_steps:
        ops.add_row(
            p.label, p.account, str(p.ticket), p.outcome, "yes" if p.ok else "[red]NO[/red]"
        )
    console.print(ops)
    acc = Table(title="accounts (as the last sync snapshot reports them)", header_style="bold")
    for col in (
        "account",
        "balance",
        "equity",
        "margin",
        "free margin",
        "margin level %",
        "positions",
        "snapshot age ms",
    ):
        acc.add_column(col, justify="right")
    for name, a, positions, age_ms in accounts:
        acc.add_row(
            name,
            f"{a.balance:,.2f}",
            f"{a.equity:,.2f}",
            f"{a.margin:,.2f}",
            f"{a.margin_free:,.2f}",
            f"{a.margin_level:,.1f}" if a.margin else "-",
            str(positions),
            str(age_ms),
        )
    console.print(acc)


async def _synced_accounts(
    bridge: Bridge, world: SimWorld
) -> list[tuple[str, m.AccountReport, int, int]]:
    """Each account as its latest snapshot shows it, once a snapshot newer than the demo's
    last trade has arrived: the figures are the synchronizer's, not a read made for show."""
    await asyncio.sleep(SYNC_INTERVAL_MS / 1000 * 1.5)
    rows = []
    for spec in ACCOUNTS:
        name = world.account_of(spec.terminal_id)
        view = bridge.sync.views[AccountKey.parse(name)]
        assert view.snapshot is not None and view.last_snapshot_ns is not None
        age_ms = (time.monotonic_ns() - view.last_snapshot_ns) // 1_000_000
        rows.append(
            (f"{spec.terminal_id} {name}", view.snapshot.account, len(view.positions), age_ms)
        )
    return rows


async def run_demo(db: Path | None = None, console: Console | None = None) -> int:
    console = console or Console(width=170)
    tmp = None
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="mtgate-demo-")
        db = Path(tmp.name) / "mtgate.db"
    clock = ServerClock(SERVER_START_MS)
    configs = {
        name: ServerConfig(sessions={"US30": US30_SESSION}) for name in ("Sim-MT4", "Sim-MT5")
    }
    world = SimWorld(ACCOUNTS, clock=clock, seed=7, configs=configs)
    bridge = Bridge(
        terminals=grants_for(world.bindings()),
        journal=open_journal(f"sqlite:///{db}"),
        store_url=f"sqlite:///{db}",
        sync=SyncSettings(interval_ms=SYNC_INTERVAL_MS),
    )
    try:
        host, port = await bridge.start()
        runtime.settle_heap()  # as mtgate serve does once started
        world.start(host, port)
        await bridge.wait_ready({a.terminal_id for a in ACCOUNTS}, timeout_s=10)
        demo = Demo(bridge, world)
        await demo.run()
        await demo.positions_part()
        accounts = await _synced_accounts(bridge, world)
        render(console, demo, accounts)
        console.print(f"journal: {db} ({len(await bridge.list_orders())} orders)")
        wrong: list[object] = [s for s in demo.steps if s.result.status != s.expected]
        wrong += [p for p in demo.position_steps if not p.ok]
        if wrong:
            console.print(f"[red]{len(wrong)} step(s) did not end as expected[/red]")
            return 1
        return 0
    finally:
        await world.stop()
        await bridge.stop()
        if tmp is not None:
            tmp.cleanup()
