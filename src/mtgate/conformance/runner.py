"""``mtgate conformance``: the scripted run a user points at a terminal before trusting it.

Two phases on one port, which the terminal under test dials:

1. **Probes** (:mod:`mtgate.conformance.probes`): the runner plays a bridge that misbehaves
   on purpose. A welcome with a wrong proof must be refused (``bye auth_failed``); after a
   proper handshake an unsealed frame must end the session (``bad_mac``), two sealed frames
   out of order too (``out_of_order``), and pings must be echoed and sent. The probes'
   trade frames carry client ids that phase 2 checks were never executed.
2. **The bridge** (the real :class:`mtgate.bridge.Bridge`, on a throwaway SQLite journal):
   the handshake and start-up reads, every read, a market order at the minimum volume, SL/TP
   on the position, a partial and a full close, a pending order placed, modified and
   cancelled, close-by on hedging accounts, a too small volume and a stop on the wrong side
   sent past the bridge's own checks (the terminal's code must come back), sync snapshots,
   the connection cut while a trade is in flight (the order must be found exactly once after
   the terminal dials again), and at the end everything the run opened is closed.

Each step is a name, passed or not, and a detail; the report is
``{"steps": [...], "passed": N, "failed": M}``. ``--against sim`` and ``--against
agent-fake`` run the simulated EA and the MetaTrader5 agent over the fake package (MT4 and
MT5 accounts for the former, MT5 for the latter); ``--against terminal`` waits for a real
terminal (docs/terminals.md).
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from mtgate.bridge import Bridge
from mtgate.conformance.probes import Handshake, ProbeConn, ProbeServer, handshake
from mtgate.domain.clock import SystemClock
from mtgate.domain.enums import MarginMode, Platform
from mtgate.domain.orders import OrderStatus
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.protocol.auth import Secret
from mtgate.sessions.errors import TerminalRejected
from mtgate.sessions.session import AccountKey, SessionSettings, grants_for
from mtgate.store.journal import open_journal
from mtgate.sync.synchronizer import SyncSettings

MAGIC = 770_077
"""The magic number of everything the run opens (and closes at the end)."""


class Step(msgspec.Struct):
    name: str
    passed: bool
    detail: str


class Report(msgspec.Struct):
    steps: list[Step]
    passed: int
    failed: int


@dataclass(frozen=True)
class Terminal:
    """A terminal under test: its id, key and account (``login@server``)."""

    terminal_id: str
    key: Secret
    account: str
    symbol: str = "EURUSD"


@dataclass
class Target:
    """What is tested, and how its terminals are made to dial (``start``) and stopped."""

    terminals: list[Terminal]
    start: Callable[[str, int], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]
    dial_timeout_s: float = 15.0
    world: Any = None
    """The simulated world behind ``sim``/``agent-fake`` targets (tests reach its servers)."""


@dataclass
class _Run:
    steps: list[Step] = field(default_factory=list)
    probe_ids: list[str] = field(default_factory=list)

    def add(self, name: str, passed: bool, detail: str) -> bool:
        self.steps.append(Step(name, passed, detail))
        return passed


async def run_conformance(target: Target, *, host: str = "127.0.0.1", port: int = 0) -> Report:
    run = _Run()
    probes = ProbeServer()
    host, port = await probes.start(host, port)
    await target.start(host, port)
    try:
        for t in target.terminals:
            await _probe_phase(run, probes, t, target.dial_timeout_s)
    finally:
        await probes.close()
    with tempfile.TemporaryDirectory(prefix="mtgate-conformance-") as tmp:
        try:
            await _bridge_phase(run, target, host, port, Path(tmp))
        finally:
            await target.stop()
    failed = sum(1 for s in run.steps if not s.passed)
    return Report(steps=run.steps, passed=len(run.steps) - failed, failed=failed)


# --- phase 1: probes ---------------------------------------------------------------------------


async def _probe_phase(run: _Run, probes: ProbeServer, t: Terminal, dial_s: float) -> None:
    tag = t.terminal_id

    conn = await probes.connection(t.terminal_id, dial_s)
    if conn is None:
        run.add(f"{tag}: dials the bridge", False, f"no hello within {dial_s:.0f} s")
        return
    run.add(
        f"{tag}: dials the bridge",
        True,
        f"hello from {conn.hello.ea_version if conn.hello else '?'}",
    )
    await _probe_bad_proof(run, tag, conn)

    conn = await probes.connection(t.terminal_id, dial_s)
    probe_id = _client_id("P")
    run.probe_ids.append(probe_id)
    await _probe_unsealed(run, tag, conn, t, probe_id)

    conn = await probes.connection(t.terminal_id, dial_s)
    probe_id = _client_id("Q")
    run.probe_ids.append(probe_id)
    await _probe_out_of_order(run, tag, conn, t, probe_id)

    conn = await probes.connection(t.terminal_id, dial_s)
    await _probe_heartbeat(run, tag, conn, t)


async def _probe_bad_proof(run: _Run, tag: str, conn: ProbeConn) -> None:
    name = f"{tag}: refuses a bridge that cannot prove the key"
    hello = conn.hello
    assert hello is not None
    conn.send(
        m.Welcome(
            v=m.PROTOCOL_VERSION,
            nonce="0" * 32,
            proof="0" * 64,
            session="x",
            heartbeat_ms=1000,
            features=sorted(hello.features),
        )
    )
    reply = await conn.until(m.Bye, 5.0)
    got_auth = any(isinstance(x, m.Auth) for x in _drain(conn))
    if reply is None:
        run.add(name, False, "no bye after a welcome with a wrong proof")
    elif reply.code != "auth_failed" or got_auth:
        run.add(name, False, f"bye {reply.code} (auth sent: {got_auth}); expected auth_failed")
    else:
        run.add(name, True, "bye auth_failed, no auth sent")
    conn.abort()


async def _probe_unsealed(
    run: _Run, tag: str, conn: ProbeConn | None, t: Terminal, probe_id: str
) -> None:
    name = f"{tag}: an unsealed frame after the handshake ends the session"
    done = await _sealed_session(run, name, conn, t)
    if done is None:
        return
    assert done.conn.link is not None
    done.conn.link.write_wire(codec.encode(_probe_trade(t, probe_id)))  # no seal
    await _expect_bye(run, name, done.conn, "bad_mac")


async def _probe_out_of_order(
    run: _Run, tag: str, conn: ProbeConn | None, t: Terminal, probe_id: str
) -> None:
    name = f"{tag}: frames out of order end the session"
    done = await _sealed_session(run, name, conn, t)
    if done is None:
        return
    link = done.conn.link
    assert link is not None
    first = link.wire_frame(codec.encode(m.Ping(t_ms=1)))
    second = link.wire_frame(codec.encode(_probe_trade(t, probe_id)))
    link.write_wire(second + first)  # n+1 before n
    await _expect_bye(run, name, done.conn, "out_of_order")


async def _probe_heartbeat(run: _Run, tag: str, conn: ProbeConn | None, t: Terminal) -> None:
    name = f"{tag}: heartbeat (pong echoes t_ms, pings at the interval)"
    done = await _sealed_session(run, name, conn, t, heartbeat_ms=300)
    if done is None:
        return
    done.conn.send(m.Ping(t_ms=424242))
    loop = asyncio.get_running_loop()
    pong: m.Pong | None = None
    ping: m.Ping | None = None
    end = loop.time() + 3.0
    while (pong is None or ping is None) and (left := end - loop.time()) > 0:
        msg = await done.conn.next(left)
        if msg is None:
            break
        if isinstance(msg, m.Pong) and msg.t_ms == 424242:
            pong = msg
        elif isinstance(msg, m.Ping):
            ping = msg
            done.conn.send(m.Pong(t_ms=msg.t_ms))
    errors = "; ".join(done.conn.errors)
    if pong is not None and ping is not None and not errors:
        run.add(name, True, "pong with t_ms 424242; the terminal pinged within 3 s")
    else:
        run.add(name, False, f"pong: {pong is not None}, ping: {ping is not None}; {errors}")
    done.conn.send(m.Bye(reason="conformance probe over", code="closed"))
    done.conn.abort()


async def _sealed_session(
    run: _Run, name: str, conn: ProbeConn | None, t: Terminal, *, heartbeat_ms: int = 1000
) -> Handshake | None:
    if conn is None:
        run.add(name, False, "the terminal did not dial again")
        return None
    done = await handshake(conn, t.key, heartbeat_ms=heartbeat_ms)
    if isinstance(done, str):
        run.add(name, False, f"handshake failed: {done}")
        conn.abort()
        return None
    return done


async def _expect_bye(run: _Run, name: str, conn: ProbeConn, code: str) -> None:
    reply = await conn.until(m.Bye, 5.0)
    answered = [x for x in _drain(conn) if isinstance(x, m.Response)]
    if reply is not None and reply.code == code and not answered:
        run.add(name, True, f"bye {code}, nothing answered")
    elif reply is not None and reply.code == code:
        run.add(name, False, f"bye {code}, but {len(answered)} request(s) answered first")
    else:
        got = f"bye {reply.code}" if reply is not None else "no bye"
        extra = "; ".join(conn.errors)
        run.add(name, False, f"{got}; expected bye {code}{'; ' + extra if extra else ''}")
    conn.abort()


def _drain(conn: ProbeConn) -> list[Any]:
    """Everything the terminal sent that no check has taken yet, the skipped included."""
    out = list(conn.skipped)
    conn.skipped.clear()
    while not conn.received.empty():
        out.append(conn.received.get_nowait())
    return out


def _probe_trade(t: Terminal, probe_id: str) -> m.MarketOrder:
    return m.MarketOrder(
        id=1, symbol=t.symbol, order_type=0, volume=0.01, magic=MAGIC, comment=f"mg:{probe_id}"
    )


def _client_id(prefix: str) -> str:
    return f"CF{prefix}{uuid.uuid4().hex[:12].upper()}"


# --- phase 2: the bridge ------------------------------------------------------------------------


async def _bridge_phase(run: _Run, target: Target, host: str, port: int, tmp: Path) -> None:
    db = tmp / "journal.db"
    grants = grants_for((t.terminal_id, t.key, *_login_server(t.account)) for t in target.terminals)
    bridge = Bridge(
        terminals=grants,
        journal=open_journal(f"sqlite:///{db}"),
        host=host,
        port=port,
        settings=SessionSettings(heartbeat_ms=500),
        store_url=f"sqlite:///{db}",
        sync=SyncSettings(interval_ms=250),
        magic=MAGIC,
        clock=SystemClock(),
    )
    await bridge.start()
    try:
        ids = {t.terminal_id for t in target.terminals}
        try:
            await bridge.wait_ready(ids, timeout_s=target.dial_timeout_s * 2)
            run.add("bridge: every terminal authenticated and ready", True, ", ".join(sorted(ids)))
        except TimeoutError as exc:
            run.add("bridge: every terminal authenticated and ready", False, repr(exc))
            return
        for t in target.terminals:
            await _account_steps(run, bridge, t)
    finally:
        await bridge.stop()


def _login_server(account: str) -> tuple[int, str]:
    key = AccountKey.parse(account)
    return key.login, key.server


async def _step(run: _Run, name: str, body: Callable[[], Awaitable[str]]) -> bool:
    try:
        async with asyncio.timeout(20):
            detail = await body()
    except AssertionError as exc:
        return run.add(name, False, str(exc) or "check failed")
    except Exception as exc:  # a step that raises failed; the others still run
        return run.add(name, False, f"{type(exc).__name__}: {exc}")
    return run.add(name, True, detail)


async def _account_steps(run: _Run, bridge: Bridge, t: Terminal) -> None:
    tag, acct = t.terminal_id, t.account
    session = bridge.registry.route(AccountKey.parse(acct))
    platform = session.platform
    netting = session.identity is not None and session.identity.margin_mode != MarginMode.HEDGING
    spec_box: dict[str, Any] = {}

    async def reads() -> str:
        account = await bridge.get_account(acct)
        assert f"{account.login}@{account.server}" == acct, (
            f"account_info is {account.login}@{account.server}"
        )
        specs = await session.request(m.Symbols(id=0, names=[t.symbol]))
        assert [s.name for s in specs] == [t.symbol], f"symbols answered {[s.name for s in specs]}"
        spec_box["spec"] = specs[0]
        tick = await session.request(m.GetTick(id=0, symbol=t.symbol))
        assert tick.bid > 0 and tick.ask >= tick.bid, f"tick {tick}"
        await session.request(m.Positions(id=0))
        await session.request(m.Orders(id=0))
        history = await session.request(m.History(id=0, since_ms=0))
        for probe_id in run.probe_ids:
            found = await session.request(m.OrderGet(id=0, client_id=probe_id))
            assert not (found.orders or found.positions or found.deals or found.history_orders), (
                f"probe trade {probe_id} was executed"
            )
        return (
            f"account, symbols, tick {tick.bid}/{tick.ask}, positions, orders, history "
            f"({len(history.deals)} deals); no probe trade executed"
        )

    if not await _step(run, f"{tag}: reads, and no probe frame executed", reads):
        await _step(run, f"{tag}: everything the run opened is closed", _cleanup(bridge, acct))
        return
    if netting:
        held = await session.request(m.Positions(id=0, symbol=t.symbol))
        if held:  # its trades would add to, reduce or close the user's own position
            run.add(f"{tag}: the netting account holds no position on {t.symbol}", False,
                    f"{len(held)} position(s) on {t.symbol}: on a netting account the run's "
                    "trades would change it; close it or choose another --symbol")  # fmt: skip
            return
    spec = spec_box["spec"]
    vmin = spec.volume_min
    point = spec.point

    opened: dict[str, Any] = {}

    async def market() -> str:
        cid = _client_id("M")
        r = await bridge.place_market_order(
            account=acct, symbol=t.symbol, side="buy", volume=vmin, client_order_id=cid
        )
        assert r.status == OrderStatus.FILLED, f"{r.status}: {r.error}"
        opened["ticket"] = r.position_ticket or r.ticket
        found = await session.request(m.OrderGet(id=0, client_id=cid))
        fills = [d for d in found.deals if d.entry == 0]
        assert len(fills) == 1, f"{len(fills)} opening deals for one market order"
        return f"filled {vmin} at {r.fill_price}, ticket {r.ticket}, one deal"

    if await _step(run, f"{tag}: market order at the minimum volume", market):
        position = await _position(bridge, acct, opened["ticket"])

        async def sltp() -> str:
            assert position is not None, "the position is not listed"
            sl = round(position.price_open - 500 * point, spec.digits)
            tp = round(position.price_open + 500 * point, spec.digits)
            r = await bridge.modify_position(account=acct, ticket=position.ticket, sl=sl, tp=tp)
            assert r.status == "done", f"{r.status}: {r.error}"
            now = await _position(bridge, acct, position.ticket)
            assert now is not None and (now.sl, now.tp) == (sl, tp), f"levels now {now}"
            return f"SL {sl}, TP {tp}"

        await _step(run, f"{tag}: SL/TP on the position", sltp)

        async def close() -> str:
            assert position is not None
            r = await bridge.close_position(account=acct, ticket=position.ticket)
            assert r.status == OrderStatus.FILLED, f"{r.status}: {r.error}"
            left = await _position(bridge, acct, position.ticket)
            assert left is None, "the position is still open"
            return f"closed at {r.fill_price}"

        await _step(run, f"{tag}: full close", close)

    if vmin * 2 <= spec.volume_max:

        async def partial() -> str:
            r = await bridge.place_market_order(
                account=acct, symbol=t.symbol, side="sell", volume=vmin * 2
            )
            assert r.status == OrderStatus.FILLED, f"open: {r.status}: {r.error}"
            ticket = r.position_ticket or r.ticket
            c = await bridge.close_position(account=acct, ticket=ticket, volume=vmin)
            assert c.status == OrderStatus.FILLED, f"partial: {c.status}: {c.error}"
            rest = c.remainder_ticket or ticket
            left = await _position(bridge, acct, rest)
            assert left is not None and abs(left.volume - vmin) < 1e-9, f"left {left}"
            c = await bridge.close_position(account=acct, ticket=rest)
            assert c.status == OrderStatus.FILLED, f"rest: {c.status}: {c.error}"
            return f"{vmin * 2} → {vmin} (ticket {rest}) → closed"

        await _step(run, f"{tag}: partial close, then the rest", partial)

    async def pending() -> str:
        tick = await session.request(m.GetTick(id=0, symbol=t.symbol))
        price = round(tick.ask - 1000 * point, spec.digits)
        r = await bridge.place_pending_order(
            account=acct, symbol=t.symbol, kind="buy_limit", volume=vmin, price=price
        )
        assert r.status == OrderStatus.PLACED, f"place: {r.status}: {r.error}"
        assert r.ticket is not None
        moved = round(price - 100 * point, spec.digits)
        mod = await bridge.modify_order(account=acct, ticket=r.ticket, price=moved)
        assert mod.status in (OrderStatus.PLACED, OrderStatus.FILLED), (
            f"modify: {mod.status}: {mod.error}"
        )
        cancel = await bridge.cancel_order(account=acct, ticket=r.ticket)
        assert cancel.status == OrderStatus.CANCELLED, f"cancel: {cancel.status}: {cancel.error}"
        return f"buy limit {price} → {moved} → cancelled"

    await _step(run, f"{tag}: pending order placed, modified, cancelled", pending)

    if not netting:

        async def close_by() -> str:
            a = await bridge.place_market_order(
                account=acct, symbol=t.symbol, side="buy", volume=vmin
            )
            b = await bridge.place_market_order(
                account=acct, symbol=t.symbol, side="sell", volume=vmin
            )
            assert a.status == b.status == OrderStatus.FILLED, f"{a.status}/{b.status}"
            ta, tb = a.position_ticket or a.ticket, b.position_ticket or b.ticket
            assert ta is not None and tb is not None
            r = await bridge.close_by(account=acct, ticket=ta, opposite=tb)
            assert r.status == OrderStatus.FILLED, f"{r.status}: {r.error}"
            assert (
                await _position(bridge, acct, ta) is None
                and await _position(bridge, acct, tb) is None
            )
            return f"{ta} closed by {tb}"

        await _step(run, f"{tag}: close by an opposite position (hedging)", close_by)

    async def bad_volume() -> str:
        expected = 131 if platform == Platform.MT4 else 10014
        order = m.MarketOrder(
            id=0,
            symbol=t.symbol,
            order_type=0,
            volume=round(vmin / 2, 8),
            magic=MAGIC,
            comment=f"mg:{_client_id('V')}",
        )
        return await _refused_with(session, order, expected)

    await _step(run, f"{tag}: a volume under the minimum gets the platform's code", bad_volume)

    async def bad_stops() -> str:
        expected = 130 if platform == Platform.MT4 else 10016
        tick = await session.request(m.GetTick(id=0, symbol=t.symbol))
        sl = round(tick.ask + 200 * point, spec.digits)  # a buy's stop loss above the price
        order = m.MarketOrder(
            id=0,
            symbol=t.symbol,
            order_type=0,
            volume=vmin,
            magic=MAGIC,
            comment=f"mg:{_client_id('S')}",
            sl=sl,
        )
        return await _refused_with(session, order, expected)

    await _step(run, f"{tag}: a stop loss on the wrong side gets the platform's code", bad_stops)

    async def sync() -> str:
        key = AccountKey.parse(acct)
        assert bridge.sync is not None, "no synchronizer"
        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        first_ns: int | None = None
        while loop.time() < end:
            view = bridge.sync.views.get(key)
            if view is not None and view.last_snapshot_ns is not None:
                if first_ns is None:
                    first_ns = view.last_snapshot_ns
                elif view.last_snapshot_ns > first_ns:
                    return f"snapshots keep coming; {len(view.positions)} positions in the view"
            await asyncio.sleep(0.05)
        raise AssertionError("fewer than 2 snapshots within 5 s")

    await _step(run, f"{tag}: sync snapshots arrive", sync)

    async def cut_mid_trade() -> str:
        cid = _client_id("K")
        task = asyncio.ensure_future(
            bridge.place_market_order(
                account=acct, symbol=t.symbol, side="buy", volume=vmin, client_order_id=cid
            )
        )
        live = bridge.registry.route(AccountKey.parse(acct))
        loop = asyncio.get_running_loop()
        end = loop.time() + 2
        for _ in range(100_000):  # until the trade is on the wire (or already answered)
            if live.in_flight() or task.done() or loop.time() > end:
                break
            await asyncio.sleep(0)
        cut_before_answer = not task.done()
        live.close("conformance: the connection is cut mid-trade", code="shutdown")
        first = await task
        end = loop.time() + 15
        found = await bridge.get_order(acct, client_order_id=cid)
        while (
            found is None
            or found.status not in (OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.NOT_FOUND)
        ) and loop.time() < end:
            await asyncio.sleep(0.1)
            found = await bridge.get_order(acct, client_order_id=cid)
        assert found is not None and found.status == OrderStatus.FILLED, (
            f"resolved as {found.status if found else None}"
        )
        # The bridge may have proven the first attempt absent and sent another (``<id>.2``,
        # docs/protocol.md §9): across all of them, one opening deal.
        again = bridge.registry.route(AccountKey.parse(acct))
        history = await again.request(m.History(id=0, since_ms=0))
        mine = [o.ticket for o in history.orders if o.comment.startswith(f"mg:{cid}")]
        mine += [
            p.ticket
            for p in await again.request(m.Positions(id=0))
            if p.comment.startswith(f"mg:{cid}")
        ]
        fills = [
            d
            for d in history.deals
            if d.entry == 0 and (d.order in mine or d.comment.startswith(f"mg:{cid}"))
        ]
        assert len(fills) == 1, f"{len(fills)} opening deals for {cid} and its attempts"
        return (
            f"cut {'before' if cut_before_answer else 'after'} the answer; first said "
            f"{first.status}, resolved FILLED once after the terminal dialled again"
        )

    await _step(
        run, f"{tag}: connection cut mid-trade, found once after reconnecting", cut_mid_trade
    )

    await _step(run, f"{tag}: everything the run opened is closed", _cleanup(bridge, acct))


def _cleanup(bridge: Bridge, acct: str) -> Callable[[], Awaitable[str]]:
    """Close every position and cancel every pending order of the run's magic; each one is
    tried even when another fails, and the step fails if any is left."""

    async def cleanup() -> str:
        live = bridge.registry.route(AccountKey.parse(acct))
        closed = cancelled = 0
        failures: list[str] = []
        for p in await live.request(m.Positions(id=0)):
            if p.magic == MAGIC:
                r = await bridge.close_position(account=acct, ticket=p.ticket)
                if r.status == OrderStatus.FILLED:
                    closed += 1
                else:
                    failures.append(f"close {p.ticket}: {r.status}")
        for o in await live.request(m.Orders(id=0)):
            if o.magic == MAGIC:
                c = await bridge.cancel_order(account=acct, ticket=o.ticket)
                if c.status == OrderStatus.CANCELLED:
                    cancelled += 1
                else:
                    failures.append(f"cancel {o.ticket}: {c.status}")
        left = [p.ticket for p in await live.request(m.Positions(id=0)) if p.magic == MAGIC]
        assert not failures and not left, f"{'; '.join(failures)}; still open: {left}"
        return f"closed {closed} positions, cancelled {cancelled} orders; none of the run's left"

    return cleanup


async def _refused_with(session: Any, order: m.MarketOrder, expected: int) -> str:
    try:
        result = await session.request(order)
    except TerminalRejected as exc:
        if exc.code == expected:
            return f"refused {expected} ({exc.name}), nothing executed"
        raise AssertionError(f"expected code {expected}, got {exc.code} {exc.name}") from None
    raise AssertionError(f"expected code {expected}, but it executed: {result}")


async def _position(bridge: Bridge, acct: str, ticket: int | None) -> m.PositionReport | None:
    for p in await bridge.list_positions(acct):
        if p.ticket == ticket:
            return p
    return None


def summary(report: Report) -> str:
    lines = [f"{'PASS' if s.passed else 'FAIL'}  {s.name}: {s.detail}" for s in report.steps]
    lines.append(f"{report.passed} passed, {report.failed} failed")
    return "\n".join(lines)


def to_json(report: Report) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2)


# --- targets here: the simulator and the agent over the fake package -------------------------


def sim_target(kind: str, *, broken: str = "", dial_timeout_s: float = 15.0) -> Target:
    """``kind``: ``sim`` (MT4, MT5 hedging and netting, the simulated EA) or ``agent-fake``
    (MT5 hedging and netting, the MetaTrader5 agent). ``broken`` makes every terminal
    misbehave: ``wrong_key`` (it holds another key than the bridge), ``unsealed`` (it seals
    nothing after the handshake), ``out_of_order`` (its first two sealed frames swapped)."""
    from mtgate.protocol.auth import new_key
    from mtsim.world import AccountSpec, SimWorld

    specs = [
        AccountSpec("conf-mt5h", 2001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING),
        AccountSpec("conf-mt5n", 2002, "Sim-MT5", Platform.MT5, MarginMode.NETTING),
    ]
    if kind == "sim":
        specs.insert(0, AccountSpec("conf-mt4", 1001, "Sim-MT4", Platform.MT4, MarginMode.HEDGING))
    elif kind != "agent-fake":
        raise ValueError(f"unknown target {kind!r}: sim or agent-fake")
    world = SimWorld(specs, clock=SystemClock(), seed=7, mt5_terminals=kind)
    terminals = [Terminal(s.terminal_id, s.key, f"{s.login}@{s.server}") for s in specs]
    if broken == "wrong_key":
        for s in specs:  # the terminal holds another key than the bridge is given
            sim = world.terminals.get(s.terminal_id)
            if sim is not None:
                sim.config = _with_key(sim.config, new_key())
            agent = world.agents.get(s.terminal_id)
            if agent is not None:
                agent.config = _with_key(agent.config, new_key())
    elif broken in ("unsealed", "out_of_order"):
        if kind != "sim":
            raise ValueError(f"broken={broken} is a fault of the simulated EA")
        for sim in world.terminals.values():
            if broken == "unsealed":
                sim.faults.unsealed_frames = True
            else:
                sim.faults.swap_next_frames = True
    elif broken:
        raise ValueError(f"unknown fault {broken!r}")

    async def start(host: str, port: int) -> None:
        world.start(host, port, tick_interval_s=0.1)

    async def stop() -> None:
        await world.stop()

    return Target(
        terminals=terminals, start=start, stop=stop, dial_timeout_s=dial_timeout_s, world=world
    )


def terminal_target(
    terminal_id: str,
    key: Secret,
    account: str,
    *,
    symbol: str = "EURUSD",
    dial_timeout_s: float = 60.0,
) -> Target:
    """A real terminal, already set to dial the runner's address (docs/terminals.md): the
    runner only listens; the terminal's EA or agent reconnects between the steps by itself."""

    async def nothing(*_: Any) -> None:
        return None

    return Target(
        terminals=[Terminal(terminal_id, key, account, symbol)],
        start=nothing,
        stop=nothing,
        dial_timeout_s=dial_timeout_s,
    )


def _with_key(config: Any, key: Secret) -> Any:
    import dataclasses

    return dataclasses.replace(config, key=key)
