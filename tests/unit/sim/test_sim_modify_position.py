"""``modify_position``: SL/TP of an open position (reference §1.1 OrderModify, §3.2
TRADE_ACTION_SLTP, §4.2, §4.3). Codes are in ``test_sim_position_codes``."""

from __future__ import annotations

import pytest

from mtgate.domain.enums import DealReason, MarginMode, OrderType, Platform
from tests.unit.sim.simdesk import ASK, BID, MakeDesk, px

T = OrderType
KINDS = {
    "mt4": (Platform.MT4, MarginMode.HEDGING),
    "mt5-hedging": (Platform.MT5, MarginMode.HEDGING),
    "mt5-netting": (Platform.MT5, MarginMode.NETTING),
}


@pytest.mark.parametrize("kind", KINDS)
def test_new_levels_trigger_and_old_ones_do_not(make_desk: MakeDesk, kind: str) -> None:
    platform, margin_mode = KINDS[kind]
    desk = make_desk(platform, margin_mode=margin_mode)
    opened = desk.market(T.BUY, volume=0.2, sl=px(BID, -30), tp=px(BID, 30))
    account = desk.server.account(desk.login)
    desk.clock.advance(7_000)
    result = desk.send(desk.modify_position_req(opened.order, px(BID, -60), px(BID, 60)))
    pos = desk.position(opened.order)
    assert (pos.sl, pos.tp, pos.volume, pos.price_open) == (px(BID, -60), px(BID, 60), 0.2, ASK)
    assert pos.time_update_ms == desk.clock.now_ms()
    assert (result.order, result.volume, result.price) == (opened.order, 0.2, ASK)
    if platform == Platform.MT4:
        assert (result.code, result.position, result.comment) == (0, 0, "")
    else:
        assert (result.code, result.position, result.deal) == (10009, opened.order, 0)
    # money and history do not move; no event (positions have no event type): the opening
    # deal and its account event only
    assert desk.server.account(desk.login) == account
    assert len(desk.server.deals(desk.login)) == 1
    assert [name for name, _ in desk.events] == ["deal", "account"]
    # the old SL is gone, the new one closes the position
    desk.quote("EURUSD", px(BID, -30), px(ASK, -30))
    assert desk.position(opened.order) is not None
    desk.quote("EURUSD", px(BID, -60), px(ASK, -60))
    assert desk.server.positions(desk.login) == []
    out = desk.server.deals(desk.login)[-1]
    assert (out.reason, out.price) == (DealReason.SL, px(BID, -60))


def test_zero_removes_a_level(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    ticket = desk.market(T.SELL, volume=0.1, sl=px(ASK, 30), tp=px(ASK, -30)).order
    desk.send(desk.modify_position_req(ticket, 0.0, px(ASK, -30)))
    assert (desk.position(ticket).sl, desk.position(ticket).tp) == (0.0, px(ASK, -30))
    desk.send(desk.modify_position_req(ticket))
    assert (desk.position(ticket).sl, desk.position(ticket).tp) == (0.0, 0.0)
    desk.quote("EURUSD", px(BID, 100), px(ASK, 100))  # beyond the removed SL
    desk.quote("EURUSD", px(BID, -100), px(ASK, -100))  # beyond the removed TP
    assert desk.position(ticket) is not None


def test_modify_a_sell_sets_levels_against_ask(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    ticket = desk.market(T.SELL, volume=0.1).order
    desk.send(desk.modify_position_req(ticket, px(ASK, 40), px(ASK, -40)))
    desk.quote("EURUSD", px(BID, -40), px(ASK, -40))  # Ask reaches the TP
    assert desk.position(ticket) is None
    out = desk.server.deals(desk.login)[-1]
    assert (out.reason, out.price, out.profit) == (
        DealReason.TP,
        px(ASK, -40),
        round((BID - px(ASK, -40)) * 0.1 * 100_000, 2),
    )


def test_mt4_remainder_is_modified_under_its_new_ticket(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT4)
    opened = desk.market(T.BUY, volume=0.5, tp=px(BID, 50)).order
    new = desk.close(opened, 0.2).remainder
    assert desk.refused(desk.modify_position_req(opened, px(BID, -50))).code == 4108
    desk.send(desk.modify_position_req(new, px(BID, -50), px(BID, 50)))
    assert desk.position(new).sl == px(BID, -50)
