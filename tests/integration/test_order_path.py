"""One order at a time through the real socket, journal and simulator, on every account type."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from mtgate.domain.orders import OrderStatus
from mtgate.execution.requests import InvalidRequest
from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey
from tests.integration.conftest import MT4, MT5H, MT5N, Harness, HarnessFactory, eventually


def _tick(h: Harness, tid: str, symbol: str) -> m.Tick:
    bid, ask, time_ms = h.server(tid).feed.quote(symbol)
    return m.Tick(symbol=symbol, bid=bid, ask=ask, time_ms=time_ms)


def _point(h: Harness, tid: str, symbol: str) -> float:
    return h.server(tid).symbols[symbol].point


def _digits(h: Harness, tid: str, symbol: str) -> int:
    return h.server(tid).symbols[symbol].digits


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_market_buy_fills_and_is_journalled(harness: Harness, tid: str) -> None:
    tick = _tick(harness, tid, "EURUSD")
    result = await harness.bridge.place_market_order(
        account=harness.account(tid),
        symbol="EURUSD",
        side="buy",
        volume=0.1,
        magic=7,
        client_order_id=f"mb-{tid}",
    )
    assert result.status == OrderStatus.FILLED
    assert result.fill_price == tick.ask
    assert result.slippage_points == 0.0
    assert result.ticket is not None and result.ticket > 0
    assert result.execution_time_ms is not None and result.execution_time_ms > 0
    positions = await harness.bridge.list_positions(harness.account(tid))
    assert [(p.ticket if tid == MT4 else p.identifier, p.volume, p.comment) for p in positions] == [
        (result.position_id if tid != MT4 else result.ticket, 0.1, f"mg:mb-{tid}")
    ]
    stored = await harness.bridge.journal.get(f"mb-{tid}")
    assert stored is not None
    assert (stored.status, stored.mt_order_id, stored.fill_price) == (
        OrderStatus.FILLED,
        result.ticket,
        tick.ask,
    )
    assert stored.execution_time_ms == result.execution_time_ms
    events = await harness.bridge.journal.events(f"mb-{tid}")
    assert [(e.from_status, e.to_status) for e in events] == [
        (None, OrderStatus.NEW),
        (OrderStatus.NEW, OrderStatus.SUBMITTED),
        (OrderStatus.SUBMITTED, OrderStatus.FILLED),
    ]


async def test_netting_account_keeps_one_position_per_symbol(harness: Harness) -> None:
    acct = harness.account(MT5N)
    for side, volume in (("buy", 0.5), ("buy", 0.3), ("sell", 0.2)):
        r = await harness.bridge.place_market_order(
            account=acct, symbol="USDJPY", side=side, volume=volume
        )
        assert r.status == OrderStatus.FILLED
    positions = await harness.bridge.list_positions(acct)
    assert len(positions) == 1
    assert positions[0].volume == pytest.approx(0.6)


async def test_hedging_account_opens_one_position_per_fill(harness: Harness) -> None:
    acct = harness.account(MT5H)
    for side in ("buy", "sell", "buy"):
        r = await harness.bridge.place_market_order(
            account=acct, symbol="GBPUSD", side=side, volume=0.1
        )
        assert r.status == OrderStatus.FILLED
    positions = await harness.bridge.list_positions(acct)
    assert sorted(p.type for p in positions) == [0, 0, 1]


async def test_journal_row_is_durable_before_the_simulator_sees_the_frame(harness: Harness) -> None:
    """At the moment the trade server executes the order, the journal file already holds it."""
    server = harness.server(MT4)
    seen: list[tuple[object, object]] = []
    original = server.handle

    def spying_handle(login: int, request: m.Request) -> object:
        if isinstance(request, m.MarketOrder):
            # A separate connection sees only what is committed: the intent log's row, or the
            # order row once the intent has been folded in.
            with sqlite3.connect(harness.db) as other:
                logged = other.execute(
                    "SELECT client_order_id FROM journal_intents WHERE client_order_id = ?",
                    ("durable-1",),
                ).fetchone()
                stored = other.execute(
                    "SELECT order_status FROM execution_orders WHERE client_order_id = ?",
                    ("durable-1",),
                ).fetchone()
            seen.append((logged, stored))
        return original(login, request)

    server.handle = spying_handle  # type: ignore[method-assign]
    result = await harness.bridge.place_market_order(
        account=harness.account(MT4),
        symbol="EURUSD",
        side="sell",
        volume=0.1,
        client_order_id="durable-1",
    )
    assert result.status == OrderStatus.FILLED
    assert len(seen) == 1
    logged, stored_row = seen[0]
    assert logged == ("durable-1",) or stored_row == ("submitted",)
    stored = await harness.bridge.journal.get("durable-1")
    assert stored is not None and stored.status == OrderStatus.FILLED


async def test_every_pending_type_is_placed_with_its_prices(harness: Harness) -> None:
    cases = [
        (MT4, "EURUSD", "buy_limit", -200, None),
        (MT4, "EURUSD", "sell_limit", 200, None),
        (MT4, "EURUSD", "buy_stop", 200, None),
        (MT4, "EURUSD", "sell_stop", -200, None),
        (MT5H, "EURUSD", "buy_stop_limit", 300, 200),
        (MT5N, "EURUSD", "sell_stop_limit", -300, -200),
    ]
    for tid, symbol, kind, offset, stoplimit_offset in cases:
        tick, point, digits = (
            _tick(harness, tid, symbol),
            _point(harness, tid, symbol),
            _digits(harness, tid, symbol),
        )
        ref = tick.ask if kind.startswith("buy") else tick.bid
        price = round(ref + offset * point, digits)
        stoplimit = (
            None if stoplimit_offset is None else round(ref + stoplimit_offset * point, digits)
        )
        r = await harness.bridge.place_pending_order(
            account=harness.account(tid),
            symbol=symbol,
            kind=kind,
            volume=0.1,
            price=price,
            stoplimit=stoplimit,
        )
        assert r.status == OrderStatus.PLACED, (kind, r.error)
        pending = await harness.bridge.list_pending_orders(harness.account(tid))
        placed = [o for o in pending if o.ticket == r.ticket]
        assert len(placed) == 1
        assert placed[0].price_open == price
        assert placed[0].stoplimit == (stoplimit or 0.0)


async def test_pending_order_fills_when_the_price_crosses(harness: Harness) -> None:
    tid = MT5H
    tick, point = _tick(harness, tid, "GBPUSD"), _point(harness, tid, "GBPUSD")
    price = round(tick.ask + 100 * point, 5)
    r = await harness.bridge.place_pending_order(
        account=harness.account(tid),
        symbol="GBPUSD",
        kind="buy_stop",
        volume=0.1,
        price=price,
        client_order_id="stop-1",
    )
    assert r.status == OrderStatus.PLACED
    spread = tick.ask - tick.bid
    harness.server(tid).set_quote("GBPUSD", round(price - spread, 5), price)

    async def filled() -> bool:
        found = await harness.bridge.get_order(harness.account(tid), client_order_id="stop-1")
        return found is not None and found.status == OrderStatus.FILLED

    await eventually(filled)
    found = await harness.bridge.get_order(harness.account(tid), client_order_id="stop-1")
    assert found is not None and found.fill_price is not None
    assert found.fill_price >= price


async def test_pending_order_expires(harness: Harness) -> None:
    tid = MT5H
    tick, point = _tick(harness, tid, "EURUSD"), _point(harness, tid, "EURUSD")
    r = await harness.bridge.place_pending_order(
        account=harness.account(tid),
        symbol="EURUSD",
        kind="buy_limit",
        volume=0.1,
        price=round(tick.ask - 300 * point, 5),
        expiration_ms=harness.clock.now_ms() + 60_000,
        client_order_id="exp-1",
    )
    assert r.status == OrderStatus.PLACED
    harness.clock.advance(61_000)
    harness.server(tid).step()

    async def expired() -> bool:
        found = await harness.bridge.get_order(harness.account(tid), client_order_id="exp-1")
        return found is not None and found.status == OrderStatus.EXPIRED

    await eventually(expired)


async def test_modify_then_cancel_a_pending_order(harness: Harness) -> None:
    tid = MT4
    tick, point = _tick(harness, tid, "EURUSD"), _point(harness, tid, "EURUSD")
    price = round(tick.ask - 200 * point, 5)
    r = await harness.bridge.place_pending_order(
        account=harness.account(tid),
        symbol="EURUSD",
        kind="buy_limit",
        volume=0.2,
        price=price,
        client_order_id="mod-1",
    )
    assert r.status == OrderStatus.PLACED
    new_price, new_sl = round(price - 50 * point, 5), round(price - 400 * point, 5)
    modified = await harness.bridge.modify_order(
        account=harness.account(tid), ticket=r.ticket, price=new_price, sl=new_sl
    )
    assert modified.status == OrderStatus.PLACED and modified.error is None
    assert (modified.requested_price, modified.sl) == (new_price, new_sl)
    on_terminal = [
        o
        for o in await harness.bridge.list_pending_orders(harness.account(tid))
        if o.ticket == r.ticket
    ]
    assert (on_terminal[0].price_open, on_terminal[0].sl) == (new_price, new_sl)

    cancelled = await harness.bridge.cancel_order(
        account=harness.account(tid), client_order_id="mod-1"
    )
    assert cancelled.status == OrderStatus.CANCELLED
    assert await harness.bridge.list_pending_orders(harness.account(tid)) == []
    trail = [e.detail for e in await harness.bridge.journal.events("mod-1")]
    assert any("modify requested" in d for d in trail) and any(
        "cancel requested" in d for d in trail
    )


async def test_query_by_ticket_and_list(harness: Harness) -> None:
    acct = harness.account(MT5H)
    r = await harness.bridge.place_market_order(
        account=acct, symbol="EURUSD", side="buy", volume=0.1
    )
    by_ticket = await harness.bridge.get_order(acct, ticket=r.ticket)
    by_id = await harness.bridge.get_order(acct, client_order_id=r.client_order_id)
    assert by_ticket == by_id
    assert by_id is not None and by_id.status == OrderStatus.FILLED
    listed = await harness.bridge.list_orders(acct)
    assert [o.client_order_id for o in listed] == [r.client_order_id]
    assert await harness.bridge.get_order(acct, ticket=999_999) is None
    account = await harness.bridge.get_account(acct)
    assert account.margin > 0 and account.equity > 0


@pytest.mark.parametrize(
    ("tid", "code", "name"),
    [(MT4, 132, "ERR_MARKET_CLOSED"), (MT5H, 10018, "TRADE_RETCODE_MARKET_CLOSED")],
)
async def test_server_rejection_carries_the_platform_code(
    harness: Harness, tid: str, code: int, name: str
) -> None:
    before = harness.trades_seen(tid)
    r = await harness.bridge.place_market_order(
        account=harness.account(tid), symbol="US30", side="buy", volume=1.0
    )
    assert r.status == OrderStatus.REJECTED
    assert r.error is not None
    assert (r.error.source, r.error.code, r.error.name, r.error.classification) == (
        "terminal",
        code,
        name,
        "retryable",
    )
    assert harness.trades_seen(tid) == before + 1
    stored = await harness.bridge.journal.get(r.client_order_id)
    assert stored is not None and (stored.rejection_code, stored.rejection_name) == (code, name)


async def test_a_slow_read_does_not_delay_a_trade(make_harness: HarnessFactory) -> None:
    h = await make_harness(read_delay_ms=400)
    session = h.bridge.registry.route(AccountKey.parse(h.account(MT5H)))
    history = session.request(m.History(id=0, since_ms=0), 5)
    order = asyncio.ensure_future(
        h.bridge.place_market_order(
            account=h.account(MT5H), symbol="EURUSD", side="buy", volume=0.1
        )
    )
    done, _ = await asyncio.wait({history, order}, return_when=asyncio.FIRST_COMPLETED)
    assert done == {order}
    assert order.result().status == OrderStatus.FILLED
    assert isinstance(await history, m.HistoryReport)


async def test_many_terminals_and_accounts_trade_concurrently(harness: Harness) -> None:
    jobs = []
    for tid in (MT4, MT5H, MT5N):
        for i in range(20):
            jobs.append(
                harness.bridge.place_market_order(
                    account=harness.account(tid),
                    symbol="EURUSD",
                    side="buy" if i % 2 else "sell",
                    volume=0.01,
                    client_order_id=f"c-{tid}-{i}",
                )
            )
    results = await asyncio.gather(*jobs)
    assert all(r.status == OrderStatus.FILLED for r in results)
    for tid in (MT4, MT5H, MT5N):
        assert harness.trades_seen(tid) == 20
        mine = {r.ticket for r in results if r.terminal_id == tid}
        assert len(mine) == 20


async def test_a_client_order_id_is_used_once(harness: Harness) -> None:
    acct = harness.account(MT5H)
    first = await harness.bridge.place_market_order(
        account=acct, symbol="EURUSD", side="buy", volume=0.1, client_order_id="once"
    )
    assert first.status == OrderStatus.FILLED
    with pytest.raises(InvalidRequest) as raised:
        await harness.bridge.place_market_order(
            account=acct, symbol="EURUSD", side="buy", volume=0.1, client_order_id="once"
        )
    assert raised.value.field == "client_order_id"
    assert harness.trades_seen(MT5H) == 1


@pytest.mark.parametrize(
    ("fields", "field", "rule"),
    [
        ({"symbol": "EURUSD", "volume": 0.015}, "volume", "volume_step"),
        ({"symbol": "NOPE", "volume": 0.1}, "symbol", "unknown_symbol"),
        ({"symbol": "EURUSD", "volume": 0.1, "sl": 2.0}, "sl", "stops_level"),
        ({"symbol": "EURUSD", "volume": 101.0}, "volume", "volume_max"),
        ({"symbol": "EURUSD", "volume": 100.0}, "volume", "free_margin"),
    ],
)
async def test_a_refused_order_never_reaches_the_terminal_and_is_journalled(
    harness: Harness, fields: dict[str, object], field: str, rule: str
) -> None:
    r = await harness.bridge.place_market_order(account=harness.account(MT4), side="buy", **fields)
    assert r.status == OrderStatus.REJECTED
    assert r.error is not None
    assert (r.error.source, r.error.field, r.error.rule) == ("bridge", field, rule)
    assert harness.trades_seen(MT4) == 0
    stored = await harness.bridge.journal.get(r.client_order_id)
    assert stored is not None and stored.status == OrderStatus.REJECTED
    assert stored.rejection_name == f"bridge:{rule}"


async def test_an_account_without_a_terminal_is_refused_not_queued(harness: Harness) -> None:
    r = await harness.bridge.place_market_order(
        account="999@Nowhere", symbol="EURUSD", side="buy", volume=0.1
    )
    assert r.status == OrderStatus.REJECTED
    assert r.error is not None and r.error.rule == "not_routable"
    assert "999@Nowhere" in r.error.message


async def test_the_cached_account_follows_the_terminal_after_fills(harness: Harness) -> None:
    """Pre-validation's free margin after a fill: the terminal pushes its account after each
    deal (protocol §7), here before the answer, so the bridge's own estimate of the fill's
    margin must not be laid over that report as well; later reads keep it in step. The
    agent derives its events by polling, so its account report comes just after the answer."""
    acct = harness.account(MT5H)
    session = harness.bridge.registry.route(AccountKey.parse(acct))
    r = await harness.bridge.place_market_order(
        account=acct, symbol="EURUSD", side="buy", volume=1.0
    )
    assert r.status == OrderStatus.FILLED
    truth = harness.server(MT5H).handle(harness.login(MT5H), m.AccountInfo(id=0))
    assert isinstance(truth, m.AccountReport) and truth.margin > 0

    def cached_margin_matches() -> bool:
        cached = session.view.account
        return cached is not None and abs(cached.margin - truth.margin) < 0.01

    def cached_report_matches() -> bool:
        cached = session.view.account
        return cached is not None and abs(cached.margin_free - truth.margin_free) < 0.01

    if MT5H in harness.world.agents:
        await eventually(cached_report_matches)
    else:
        assert cached_margin_matches()  # at once: not counted twice before the refresh
    cached = session.view.account
    assert cached is not None and abs(cached.margin_free - truth.margin_free) < 0.01
    await asyncio.sleep(0.3)  # the refresh that follows a fill has come and gone
    assert cached_margin_matches()


@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_a_modify_that_changes_nothing_is_a_quiet_success(harness: Harness, tid: str) -> None:
    """MT4 answers 1 (ERR_NO_RESULT), MT5 10025 (NO_CHANGES): a no-op, not an error."""
    tick, point = _tick(harness, tid, "EURUSD"), _point(harness, tid, "EURUSD")
    price = round(tick.ask - 200 * point, 5)
    placed = await harness.bridge.place_pending_order(
        account=harness.account(tid), symbol="EURUSD", kind="buy_limit", volume=0.1, price=price
    )
    same = await harness.bridge.modify_order(
        account=harness.account(tid), client_order_id=placed.client_order_id, price=price
    )
    assert same.status == OrderStatus.PLACED
    assert same.error is None
    assert same.requested_price == price


@pytest.fixture
async def harness(any_harness: Harness) -> Harness:
    """Every test of this module runs with each kind of MT5 terminal."""
    return any_harness
