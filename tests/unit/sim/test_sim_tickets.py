"""Ticket spaces (reference §1.3, §7, §9 #2), OrderGet lookups and history ranges."""

from __future__ import annotations

import pytest

from mtgate.domain.enums import DealEntry, OrderState, OrderType, Platform
from mtgate.protocol.messages import (
    GetTick,
    History,
    HistoryReport,
    Lookup,
    OrderGet,
    Orders,
    Positions,
    Subscribe,
    Symbols,
    Tick,
)
from mtsim.server import TradeError, UnknownAccountError
from mtsim.symbols import DEFAULT_SYMBOLS
from tests.unit.sim.simdesk import ASK, BID, MakeDesk, px

T = OrderType


def test_ref_1_3_mt4_one_ticket_space_for_everything(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    market = desk.market(T.BUY)
    pending = desk.pending(T.BUY_LIMIT, px(ASK, -100))
    second = desk.market(T.SELL)
    assert [market.order, pending.order, second.order] == [10_000_001, 10_000_002, 10_000_003]
    assert (market.position, market.deal) == (0, 0)  # protocol §6, §10: always 0 on MT4
    deals = desk.server.deals(desk.login)
    # synthetic deals: 2 x ticket for the open (entry IN)
    assert [(d.ticket, d.order, d.position_id, d.entry) for d in deals] == [
        (2 * market.order, market.order, market.order, DealEntry.IN),
        (2 * second.order, second.order, second.order, DealEntry.IN),
    ]


def test_ref_7_mt5_separate_order_and_deal_counters(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    first = desk.market(T.BUY)
    pending = desk.pending(T.BUY_LIMIT, px(ASK, -100))
    second = desk.market(T.SELL)
    assert [first.order, pending.order, second.order] == [20_000_001, 20_000_002, 20_000_003]
    assert [first.deal, second.deal] == [10_000_001, 10_000_002]
    assert (first.position, second.position) == (first.order, second.order)
    assert [p.ticket for p in desk.server.positions(desk.login)] == [first.order, second.order]
    history = desk.server.history_orders(desk.login)
    assert [(h.ticket, h.state, h.position_id) for h in history] == [
        (first.order, OrderState.FILLED, first.order),
        (second.order, OrderState.FILLED, second.order),
    ]


def test_trade_result_fields(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    result = desk.market(T.SELL, volume=0.3)
    assert (result.volume, result.price, result.bid, result.ask) == (0.3, BID, BID, ASK)
    assert result.time_ms == desk.clock.now_ms()


def test_order_get_by_ticket_mt5_through_the_life_of_a_position(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    opened = desk.market(T.BUY, sl=px(BID, -50), comment="mg:LIFE")
    found = desk.send(OrderGet(id=1, ticket=opened.order))
    assert isinstance(found, Lookup)
    assert [p.ticket for p in found.positions] == [opened.order]
    assert [h.ticket for h in found.history_orders] == [opened.order]
    assert [d.ticket for d in found.deals] == [opened.deal]
    assert found.orders == []
    desk.quote("EURUSD", px(BID, -50), px(ASK, -50))  # SL
    closed = desk.send(OrderGet(id=2, ticket=opened.order))
    assert closed.positions == []
    assert [h.position_id for h in closed.history_orders] == [opened.order, opened.order]
    assert [(d.entry, d.position_id) for d in closed.deals] == [
        (DealEntry.IN, opened.order),
        (DealEntry.OUT, opened.order),
    ]


def test_order_get_by_ticket_mt4(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    pending = desk.pending(T.SELL_LIMIT, px(BID, 100), tp=px(BID, 50))
    assert [o.ticket for o in desk.send(OrderGet(id=1, ticket=pending.order)).orders] == [
        pending.order
    ]
    desk.quote("EURUSD", px(BID, 100), px(ASK, 100))  # activates
    live = desk.send(OrderGet(id=2, ticket=pending.order))
    assert (live.orders, [p.ticket for p in live.positions], live.history_orders) == (
        [],
        [pending.order],
        [],
    )
    desk.quote("EURUSD", px(BID, 38), px(ASK, 38))  # TP on Ask
    done = desk.send(OrderGet(id=3, ticket=pending.order))
    assert done.positions == []
    assert [(h.ticket, h.state, h.type) for h in done.history_orders] == [
        (pending.order, OrderState.FILLED, 1)
    ]
    assert [d.ticket for d in done.deals] == [2 * pending.order, 2 * pending.order + 1]


def test_order_get_by_client_id(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    desk.pending(T.BUY_LIMIT, px(ASK, -100), comment="mg:CID1")
    desk.market(T.BUY, comment="mg:CID10")  # a longer id sharing the prefix must not match
    desk.market(T.BUY, comment="mg:CID1")
    found = desk.send(OrderGet(id=1, client_id="CID1"))
    assert [o.comment for o in found.orders] == ["mg:CID1"]
    assert [p.comment for p in found.positions] == ["mg:CID1"]
    assert [d.comment for d in found.deals] == ["mg:CID1"]
    assert len(found.history_orders) == (0 if platform == Platform.MT4 else 1)
    assert desk.send(OrderGet(id=2, client_id="NOPE")) == Lookup()


def test_order_get_client_id_survives_the_sl_marker(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    opened = desk.market(T.BUY, sl=px(BID, -50), comment="mg:MARK")
    desk.quote("EURUSD", px(BID, -50), px(ASK, -50))
    found = desk.send(OrderGet(id=1, client_id="MARK"))
    assert [h.ticket for h in found.history_orders] == [opened.order]
    assert [d.comment for d in found.deals] == ["mg:MARK", "mg:MARK[sl]"]


def test_order_get_needs_exactly_one_key(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    for request in (OrderGet(id=1), OrderGet(id=2, ticket=5, client_id="X")):
        assert desk.refused(request).code == (3 if platform == Platform.MT4 else 10013)


def test_history_filters_by_time(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    t0 = desk.clock.now_ms()
    desk.market(T.BUY)
    desk.clock.advance(1000)
    desk.market(T.BUY)
    desk.clock.advance(1000)
    ticket = desk.pending(T.BUY_LIMIT, px(ASK, -100)).order
    desk.send(desk.cancel_req(ticket))

    def history(since: int, until: int = 0) -> HistoryReport:
        report = desk.send(History(id=9, since_ms=since, until_ms=until))
        assert isinstance(report, HistoryReport)
        return report

    everything = history(t0)
    assert (len(everything.orders), len(everything.deals)) == (3, 2)
    assert [d.time_ms for d in history(t0 + 1, t0 + 1000).deals] == [t0 + 1000]
    assert [o.state for o in history(t0 + 2000).orders] == [OrderState.CANCELED]
    assert history(t0 + 2001) == HistoryReport()


def test_reads(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    desk.market(T.BUY, symbol="USDJPY")
    desk.pending(T.SELL_STOP, px(BID, -100))
    assert desk.send(GetTick(id=1, symbol="EURUSD")) == Tick(
        symbol="EURUSD", bid=BID, ask=ASK, time_ms=desk.clock.now_ms()
    )
    assert [s.name for s in desk.send(Symbols(id=2))] == list(DEFAULT_SYMBOLS)
    assert [s.name for s in desk.send(Symbols(id=3, names=["US30"]))] == ["US30"]
    assert [p.symbol for p in desk.send(Positions(id=4, symbol="USDJPY"))] == ["USDJPY"]
    assert desk.send(Positions(id=5, symbol="EURUSD")) == []
    assert [o.type for o in desk.send(Orders(id=6, symbol="EURUSD"))] == [T.SELL_STOP]
    assert desk.send(Orders(id=7, symbol="USDJPY")) == []
    # protocol §11: a read reports the runtime error (MQL5 ERR_MARKET_UNKNOWN_SYMBOL 4301)
    assert desk.refused(GetTick(id=8, symbol="NOPE")).code == (
        4106 if platform == Platform.MT4 else 4301
    )
    # protocol §5.1: a name the terminal does not know is left out, the others answered
    assert desk.send(Symbols(id=9, names=["NOPE"])) == []
    assert [s.name for s in desk.send(Symbols(id=10, names=["NOPE", "US30"]))] == ["US30"]


def test_subscribe_and_unknown_accounts_are_not_server_requests(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    with pytest.raises(ValueError, match="Subscribe"):
        desk.send(Subscribe(id=1, ticks=["EURUSD"]))
    with pytest.raises(UnknownAccountError):
        desk.server.handle(999, desk.market_req())


def test_executed_is_the_ground_truth_of_every_request(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    ok = desk.market(T.BUY)
    request = desk.market_req(volume=0.001)
    with pytest.raises(TradeError) as refused:
        desk.send(request)
    desk.clock.advance(5)
    desk.send(GetTick(id=50, symbol="EURUSD"))
    log = desk.server.executed
    assert [e.outcome for e in log[:2]] == [ok, refused.value]
    assert log[1].request is request
    assert [e.time_ms - log[0].time_ms for e in log] == [0, 0, 5]
    assert {e.login for e in log} == {desk.login}


def test_unsubscribed_listener_gets_nothing(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    seen: list[str] = []
    unsubscribe = desk.server.on_event(desk.login, lambda name, _: seen.append(name))
    desk.market(T.BUY)
    unsubscribe()
    desk.market(T.BUY)
    assert seen == ["deal", "account"]
    assert [n for n, _ in desk.events] == ["deal", "account", "deal", "account"]


def test_comments_are_truncated_to_the_server_limit(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    desk.market(T.BUY, comment="c" * 50)
    assert desk.server.positions(desk.login)[0].comment == "c" * 31
    assert desk.server.deals(desk.login)[0].comment == "c" * 31


def test_an_mt4_server_reports_its_symbols_as_an_mt4_ea_does(make_desk: MakeDesk) -> None:
    """protocol §10: no filling modes, GTC and SPECIFIED expirations, no stop-limit orders."""
    mt4, mt5 = make_desk(Platform.MT4), make_desk(Platform.MT5)
    for spec in mt4.send(Symbols(id=1)):
        assert (spec.filling_mode, spec.expiration_mode, spec.order_mode) == (0, 5, 119)
    assert any(s.order_mode & 8 for s in mt5.send(Symbols(id=1)))  # MT5 keeps stop-limit
