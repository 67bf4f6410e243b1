"""MT4 deal reasons are what a protocol-following MT4 EA derives, not what the server knows
(docs/protocol.md §10 "Deals are synthesised": ``[sl]`` → 4, ``[tp]`` → 5, a stop-out marker
→ 6, otherwise 3 when magic ≠ 0 and 0 when magic is 0). MT5 deals keep the server's reasons.

These pin review finding S1: with the server's own reasons an MT4 close of a magic-0 position
looked like the EA's (EXPERT), which hid F4 from every test."""

from __future__ import annotations

import pytest

from mtgate.domain.enums import DealEntry, DealReason, OrderType, Platform
from mtgate.protocol.messages import DealReport
from mtsim.config import ServerConfig
from mtsim.markers import mt4_deal_reason, stop_out_comment
from tests.unit.sim.simdesk import ASK, BID, Desk, MakeDesk, px

T = OrderType
R = DealReason


def _deals(desk: Desk) -> list[DealReport]:
    return desk.server.deals(desk.login)


@pytest.mark.parametrize(
    ("comment", "magic", "reason"),
    [
        ("mg:ABC", 7, R.EXPERT),
        ("mg:ABC", 0, R.CLIENT),
        ("", 0, R.CLIENT),
        ("to #10000002", 7, R.EXPERT),
        ("from #10000001", 0, R.CLIENT),
        ("close hedge by #10000003", 0, R.CLIENT),
        ("mg:ABC[sl]", 0, R.SL),
        ("mg:ABC[tp]", 7, R.TP),
        (stop_out_comment(43.8, 482.0, 1101.18), 7, R.SO),
        (stop_out_comment(43.8, 482.0, 1101.18), 0, R.SO),
        ("also:not a stop out", 0, R.CLIENT),  # the marker is a prefix, not any "so:"
    ],
)
def test_the_rule_of_protocol_10(comment: str, magic: int, reason: DealReason) -> None:
    """docs/protocol.md §10: markers first, then the magic decides."""
    assert mt4_deal_reason(comment, magic) == reason


@pytest.mark.parametrize("magic", [0, 7])
def test_mt4_ea_open_and_close_follow_the_magic(make_desk: MakeDesk, magic: int) -> None:
    """§10: an EA close of a magic-0 ticket books 0 (CLIENT), the bridge's own close though
    it is; with magic ≠ 0, 3. The open's IN deal follows the same rule."""
    desk = make_desk(Platform.MT4)
    opened = desk.market(T.BUY, magic=magic, comment="mg:OPEN1")
    desk.close(opened.order)
    expected = R.EXPERT if magic else R.CLIENT
    assert [(d.entry, d.reason) for d in _deals(desk)] == [
        (DealEntry.IN, expected),
        (DealEntry.OUT, expected),
    ]
    assert [d.reason for d in desk.names("deal")] == [expected, expected]  # the events too


def test_mt4_manual_close_of_an_ea_position_reads_as_expert(make_desk: MakeDesk) -> None:
    """§10: the EA cannot tell who closed a magic ≠ 0 ticket, so a manual close books 3."""
    desk = make_desk(Platform.MT4)
    opened = desk.market(T.BUY, magic=7, comment="mg:MAN1")
    desk.server.manual_close(desk.login, opened.order)
    out = _deals(desk)[-1]
    assert (out.entry, out.order, out.reason) == (DealEntry.OUT, opened.order, R.EXPERT)


def test_mt4_manual_trade_with_a_magic_reads_as_expert(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    desk.server.manual_market_order(desk.login, "EURUSD", T.BUY, 0.1, magic=5)
    desk.server.manual_market_order(desk.login, "EURUSD", T.BUY, 0.1)
    assert [(d.magic, d.reason) for d in _deals(desk)] == [(5, R.EXPERT), (0, R.CLIENT)]


@pytest.mark.parametrize("magic", [0, 7])
def test_mt4_partial_close_deal_follows_the_magic(make_desk: MakeDesk, magic: int) -> None:
    """§10: the partial close's out deal carries ``to #N``; no marker, so the magic decides.
    The remainder's later close (``from #T``) likewise."""
    desk = make_desk(Platform.MT4)
    opened = desk.market(T.BUY, volume=0.5, magic=magic, comment="mg:PART1")
    rest = desk.close(opened.order, 0.2).remainder
    desk.close(rest)
    expected = R.EXPERT if magic else R.CLIENT
    outs = [(d.comment, d.reason) for d in _deals(desk) if d.entry == DealEntry.OUT]
    assert outs == [(f"to #{rest}", expected), (f"from #{opened.order}", expected)]


def test_mt4_close_by_of_magic_0_tickets_books_client(make_desk: MakeDesk) -> None:
    """§10 close-by: both out deals carry ``close hedge by #...``; magic 0 → 0."""
    desk = make_desk(Platform.MT4)
    buy = desk.market(T.BUY, volume=0.2, magic=0).order
    sell = desk.market(T.SELL, volume=0.2, magic=0).order
    desk.close_by(buy, sell)
    outs = [d for d in _deals(desk) if d.entry == DealEntry.OUT]
    assert [(d.order, d.reason) for d in outs] == [(buy, R.CLIENT), (sell, R.CLIENT)]


@pytest.mark.parametrize(("stop", "reason"), [("sl", R.SL), ("tp", R.TP)])
def test_mt4_sl_tp_markers_win_over_the_magic(
    make_desk: MakeDesk, stop: str, reason: DealReason
) -> None:
    """§10: ``[sl]`` / ``[tp]`` give 4 / 5 even for a magic-0 ticket."""
    desk = make_desk(Platform.MT4)
    level = px(BID, -50) if stop == "sl" else px(BID, 50)
    sl, tp = (level, 0.0) if stop == "sl" else (0.0, level)
    desk.market(T.BUY, magic=0, comment="mg:STOP1", sl=sl, tp=tp)
    desk.quote("EURUSD", level, round(level + ASK - BID, 5))
    out = _deals(desk)[-1]
    assert (out.entry, out.comment, out.reason) == (DealEntry.OUT, f"mg:STOP1[{stop}]", reason)


def test_mt4_stop_out_of_a_magic_0_ticket_books_so(make_desk: MakeDesk) -> None:
    """§10: the ``so: ...`` comment gives 6 whatever the magic."""
    desk = make_desk(Platform.MT4, balance=600.0, config=ServerConfig(stop_out=True))
    desk.market(T.BUY, volume=0.5, magic=0)  # margin 550.06
    desk.quote("EURUSD", 1.09300, 1.09312)  # equity 600 - 356 = 244: level 44.4 %
    out = _deals(desk)[-1]
    assert out.comment.startswith("so: ")
    assert (out.entry, out.magic, out.reason) == (DealEntry.OUT, 0, R.SO)


@pytest.mark.parametrize("magic", [0, 7])
def test_mt4_pending_fill_follows_the_magic(make_desk: MakeDesk, magic: int) -> None:
    desk = make_desk(Platform.MT4)
    placed = desk.pending(T.BUY_LIMIT, px(ASK, -100), magic=magic, comment="mg:PEND1")
    desk.quote("EURUSD", px(BID, -100), px(ASK, -100))
    [fill] = _deals(desk)
    assert (fill.order, fill.entry) == (placed.order, DealEntry.IN)
    assert fill.reason == (R.EXPERT if magic else R.CLIENT)


def test_every_mt4_deal_carries_the_derived_reason(make_desk: MakeDesk) -> None:
    """One rule for every MT4 deal: opens, partial and full closes, close-by, manual trades,
    pending fills and SL closes, each with magic 0 and ≠ 0 (§10)."""
    desk = make_desk(Platform.MT4)
    for magic in (0, 7):
        first = desk.market(T.BUY, volume=0.5, magic=magic, comment="mg:MIX1").order
        rest = desk.close(first, 0.1).remainder
        desk.server.manual_close(desk.login, rest, 0.1)
        sell = desk.market(T.SELL, volume=0.1, magic=magic).order
        buys = [p.ticket for p in desk.server.positions(desk.login) if p.type == 0]
        desk.close_by(buys[0], sell)
        desk.pending(T.BUY_LIMIT, px(ASK, -10), magic=magic)
        desk.market(T.SELL, magic=magic, sl=px(ASK, 30))
    desk.quote("EURUSD", px(BID, 30), px(ASK, 30))  # SL of the sells
    desk.quote("EURUSD", px(BID, -10), px(ASK, -10))  # the buy limits fill
    deals = _deals(desk)
    assert len(deals) == 18  # per magic: 3 opens, 2 partial closes, 2 close-by, fill, SL
    assert {d.reason for d in deals} == {R.CLIENT, R.EXPERT, R.SL}
    for deal in deals:
        assert deal.reason == mt4_deal_reason(deal.comment, deal.magic), deal


def test_mt5_keeps_the_server_reasons(make_desk: MakeDesk) -> None:
    """MT5 reports real reasons: EXPERT for the EA's requests whatever the magic, CLIENT for
    manual trades whatever the magic (docs/protocol.md §11; reference §3.5)."""
    desk = make_desk(Platform.MT5)
    ea = desk.market(T.BUY, magic=0, comment="mg:EA1").order
    desk.close(ea)
    manual = desk.market(T.BUY, magic=7, comment="mg:EA2").order
    desk.server.manual_close(desk.login, manual)
    assert [(d.entry, d.magic, d.reason) for d in _deals(desk)] == [
        (DealEntry.IN, 0, R.EXPERT),
        (DealEntry.OUT, 0, R.EXPERT),
        (DealEntry.IN, 7, R.EXPERT),
        (DealEntry.OUT, 7, R.CLIENT),
    ]
