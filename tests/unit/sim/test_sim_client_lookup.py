"""``order_get`` by client id finds what a real EA finds, and no more (docs/protocol.md §9
"Reading a comment", §10 "Comment rewrites and partial closes"), including at a broker that
rewrites or drops comments (``ServerConfig.rewrite_comment``; DESIGN §7, §9 rule 3).

An MT4 EA scans the open pool and the history for tickets whose *current* comment carries the
id and synthesises the deals of those tickets only. An MT5 EA returns every object whose
comment carries it, every deal of a matching order and every position opened by one. These
pin the blindness that review finding F7 depends on: before, the simulator still found an
MT4 ticket's IN deal by the ``mg:`` comment it was booked with.
"""

from __future__ import annotations

import pytest

from mtgate.domain.enums import DealEntry, MarginMode, OrderState, OrderType, Platform
from mtgate.protocol.messages import History, Lookup, OrderGet
from mtsim.config import ServerConfig
from tests.unit.sim.simdesk import ASK, BID, Desk, MakeDesk, px

T = OrderType


def _by_client(desk: Desk, client_id: str) -> Lookup:
    found = desk.send(OrderGet(id=900, client_id=client_id))
    assert isinstance(found, Lookup)
    return found


def _by_ticket(desk: Desk, ticket: int) -> Lookup:
    found = desk.send(OrderGet(id=901, ticket=ticket))
    assert isinstance(found, Lookup)
    return found


# --- MT4: the comment is all the EA has --------------------------------------------------


def test_mt4_partial_close_hides_the_client_id(make_desk: MakeDesk) -> None:
    """§10: both comments are rewritten (``to #N`` / ``from #T``), so the EA finds nothing
    for the id, not even the IN deal booked while the comment still carried it. The ticket
    still finds everything (§9 rule 1)."""
    desk = make_desk(Platform.MT4)
    opened = desk.market(T.BUY, volume=0.5, comment="mg:PC1")
    before = _by_client(desk, "PC1")
    assert [p.ticket for p in before.positions] == [opened.order]
    assert [d.ticket for d in before.deals] == [2 * opened.order]
    rest = desk.close(opened.order, 0.2).remainder
    assert desk.server.deals(desk.login)[0].comment == "mg:PC1"  # booked with the id ...
    assert _by_client(desk, "PC1") == Lookup()  # ... but the ticket's comment is "to #N" now
    by_ticket = _by_ticket(desk, opened.order)
    assert [(h.ticket, h.comment) for h in by_ticket.history_orders] == [
        (opened.order, f"to #{rest}")
    ]
    assert [d.ticket for d in by_ticket.deals] == [2 * opened.order, 2 * opened.order + 1]
    desk.close(rest)
    assert _by_client(desk, "PC1") == Lookup()


def test_mt4_lookup_returns_the_deals_of_matching_tickets(make_desk: MakeDesk) -> None:
    """§9/§10: a fully closed ticket keeps its comment: its history record and both deals are
    found; a pending order that filled is found as the position it became, with its IN deal."""
    desk = make_desk(Platform.MT4)
    closed = desk.market(T.BUY, comment="mg:FULL1").order
    desk.close(closed)
    found = _by_client(desk, "FULL1")
    assert [(h.ticket, h.state) for h in found.history_orders] == [(closed, OrderState.FILLED)]
    assert [(d.ticket, d.entry) for d in found.deals] == [
        (2 * closed, DealEntry.IN),
        (2 * closed + 1, DealEntry.OUT),
    ]
    pending = desk.pending(T.BUY_LIMIT, px(ASK, -100), comment="mg:FILL1").order
    desk.quote("EURUSD", px(BID, -100), px(ASK, -100))
    filled = _by_client(desk, "FILL1")
    assert ([p.ticket for p in filled.positions], filled.orders) == ([pending], [])
    assert [d.ticket for d in filled.deals] == [2 * pending]


# --- MT5: orders, their deals and the positions they opened -------------------------------


def test_mt5_hedging_partial_close_still_finds_the_position(make_desk: MakeDesk) -> None:
    """§9: MT5 keeps the position's comment through a partial close; the opening order, its
    deal and the position are found. The close order's own id finds the close."""
    desk = make_desk(Platform.MT5)
    opened = desk.market(T.BUY, volume=0.5, comment="mg:PC5")
    closed = desk.close(opened.order, 0.2, comment="mg:CL5")
    found = _by_client(desk, "PC5")
    assert [(p.ticket, p.volume) for p in found.positions] == [(opened.order, 0.3)]
    assert [h.ticket for h in found.history_orders] == [opened.order]
    assert [d.ticket for d in found.deals] == [opened.deal]
    close = _by_client(desk, "CL5")
    assert [h.ticket for h in close.history_orders] == [closed.order]
    assert [(d.ticket, d.entry) for d in close.deals] == [(closed.deal, DealEntry.OUT)]
    assert close.positions == []  # the close order did not open it


def test_mt5_finds_the_position_its_order_opened_after_a_reversal(make_desk: MakeDesk) -> None:
    """§9: "every position opened by a matching order, whatever their own comments say": a
    netting reversal gives the position the reversing order's ticket and comment, and keeps
    the identifier of the order that opened it (§11)."""
    desk = make_desk(Platform.MT5, margin_mode=MarginMode.NETTING)
    opened = desk.market(T.BUY, volume=0.1, comment="mg:OPN5")
    reversal = desk.market(T.SELL, volume=0.3, comment="mg:REV5")
    [pos] = desk.server.positions(desk.login)
    assert (pos.ticket, pos.identifier, pos.comment) == (reversal.order, opened.order, "mg:REV5")
    assert [p.ticket for p in _by_client(desk, "OPN5").positions] == [reversal.order]
    assert [p.ticket for p in _by_client(desk, "REV5").positions] == [reversal.order]


# --- a broker that rewrites or drops comments --------------------------------------------


def _trade(desk: Desk) -> tuple[int, int, int, int]:
    """A buy kept open (magic 11), a buy limit that fills a second later (magic 12), and a
    sell opened then closed two seconds later with a close comment (magic 13). Returns the
    tickets (buy, limit, sell) and the close's order."""
    buy = desk.market(T.BUY, volume=0.3, magic=11, comment="mg:RWA").order
    limit = desk.pending(T.BUY_LIMIT, px(ASK, -100), volume=0.2, magic=12, comment="mg:RWB")
    sell = desk.market(T.SELL, volume=0.1, magic=13, comment="mg:RWD").order
    desk.clock.advance(1000)
    desk.quote("EURUSD", px(BID, -100), px(ASK, -100))  # the limit fills
    desk.clock.advance(1000)
    close = desk.close(sell, comment="mg:RWC").order
    return buy, limit.order, sell, close


def test_without_a_rewrite_the_ids_are_found(make_desk: MakeDesk, platform: Platform) -> None:
    """The control case for the rewrite tests below."""
    desk = make_desk(platform)
    buy, limit, _, _ = _trade(desk)
    assert [p.ticket for p in _by_client(desk, "RWA").positions] == [buy]
    assert [d.order for d in _by_client(desk, "RWB").deals] == [limit]


@pytest.mark.parametrize("rewrite", ["", "broker-7"], ids=["dropped", "rewritten"])
def test_rewritten_comments_hide_every_client_id(
    make_desk: MakeDesk, platform: Platform, rewrite: str
) -> None:
    """Market orders, pending orders and their fills, and MT5 close orders all carry the
    broker's text: no lookup by client id finds anything."""
    desk = make_desk(platform, config=ServerConfig(rewrite_comment=rewrite))
    _trade(desk)
    for client_id in ("RWA", "RWB", "RWC", "RWD"):
        assert _by_client(desk, client_id) == Lookup(), client_id
    login = desk.login
    comments = (
        {p.comment for p in desk.server.positions(login)}
        | {h.comment for h in desk.server.history_orders(login)}
        | {d.comment for d in desk.server.deals(login)}
    )
    assert comments == {rewrite}


@pytest.mark.parametrize("rewrite", ["", "broker-7"], ids=["dropped", "rewritten"])
def test_rewritten_comments_leave_ticket_and_history_lookups_intact(
    make_desk: MakeDesk, platform: Platform, rewrite: str
) -> None:
    """§9 rules 1 and 3: the ticket, and history by magic + symbol + type + volume + time,
    still find the orders and their deals."""
    desk = make_desk(platform, config=ServerConfig(rewrite_comment=rewrite))
    t0 = desk.clock.now_ms()
    buy, limit, sell, close = _trade(desk)
    [buy_pos] = _by_ticket(desk, buy).positions
    assert (buy_pos.magic, buy_pos.symbol, buy_pos.type, buy_pos.volume, buy_pos.time_ms) == (
        11,
        "EURUSD",
        0,
        0.3,
        t0,
    )
    placed = _by_ticket(desk, limit)
    assert [(p.magic, p.volume, p.time_ms) for p in placed.positions] == [(12, 0.2, t0 + 1000)]
    assert [d.order for d in placed.deals] == [limit]
    if platform == Platform.MT5:
        assert [(h.type, h.magic, h.state) for h in placed.history_orders] == [
            (T.BUY_LIMIT, 12, OrderState.FILLED)
        ]
    history = desk.send(History(id=902, since_ms=t0))
    entries = [
        (d.order, d.magic, d.symbol, d.type, d.entry, d.volume, d.time_ms) for d in history.deals
    ]
    assert entries == [
        (buy, 11, "EURUSD", 0, DealEntry.IN, 0.3, t0),
        (sell, 13, "EURUSD", 1, DealEntry.IN, 0.1, t0),
        (limit, 12, "EURUSD", 0, DealEntry.IN, 0.2, t0 + 1000),
        (close, 13, "EURUSD", 0, DealEntry.OUT, 0.1, t0 + 2000),
    ]
    if platform == Platform.MT4:
        assert close == sell  # OrderClose: the closed ticket itself (§10)
    else:
        assert close not in (buy, limit, sell)  # a close order of its own (§11)
    closed = _by_ticket(desk, close)
    assert [(h.magic, h.symbol, h.time_done_ms) for h in closed.history_orders] == [
        (13, "EURUSD", t0 + 2000)
    ]


def test_server_markers_survive_a_rewrite(make_desk: MakeDesk) -> None:
    """Only the request's comment is replaced: MT4 still appends ``[sl]`` to the broker's
    text, and the EA still derives reason SL from it (§10)."""
    desk = make_desk(Platform.MT4, config=ServerConfig(rewrite_comment="broker-7"))
    opened = desk.market(T.BUY, magic=0, sl=px(BID, -50), comment="mg:SLRW")
    desk.quote("EURUSD", px(BID, -50), px(ASK, -50))
    [hist] = _by_ticket(desk, opened.order).history_orders
    assert hist.comment == "broker-7[sl]"
    assert desk.server.deals(desk.login)[-1].reason == 4
