"""docs/protocol.md §7's table of which trade pushes which events, held against the
simulated terminal on both platforms: the table is read from the spec itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtgate.domain.enums import OrderType, Platform
from mtgate.protocol.messages import CancelOrder, ModifyOrder, ModifyPosition
from tests.unit.sim.simdesk import ASK, BID, Desk, MakeDesk, px

SPEC = (Path(__file__).parents[3] / "docs" / "protocol.md").read_text()


def _table() -> dict[str, list[str]]:
    start = SPEC.index("| Trade | Events |")
    rows: dict[str, list[str]] = {}
    for line in SPEC[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        trade, events = (cell.strip() for cell in line.strip("|").split("|"))
        rows[trade] = [] if events == "none" else re.findall(r"`(\w+)`", events)
    return rows


def _names(desk: Desk) -> list[str]:
    names = [name for name, _ in desk.events]
    desk.events.clear()
    return names


def _observed(desk: Desk) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    desk.market(0, 0.2)
    seen["`market_order` filled"] = _names(desk)
    position = desk.server.positions(desk.login)[0]
    desk.send(ModifyPosition(id=90, ticket=position.ticket, sl=px(BID, -300)))
    seen["`modify_position`"] = _names(desk)
    desk.close(position.ticket, 0.1)
    partial = _names(desk)
    desk.close(desk.server.positions(desk.login)[0].ticket)
    assert partial == _names(desk), "a partial and a whole close push the same events"
    seen["`close_position`, whole or part"] = partial
    placed = desk.pending(OrderType.BUY_LIMIT, px(ASK, -100))
    seen["`pending_order` placed"] = _names(desk)
    desk.send(ModifyOrder(id=91, ticket=placed.order, price=px(ASK, -120)))
    seen["`modify_order`"] = _names(desk)
    desk.send(CancelOrder(id=92, ticket=placed.order))
    seen["`cancel_order`"] = _names(desk)
    desk.pending(OrderType.BUY_LIMIT, px(ASK, -100))
    _names(desk)
    desk.quote("EURUSD", px(BID, -100), px(ASK, -100))
    seen["a pending order triggered"] = _names(desk)
    return seen


@pytest.mark.parametrize("platform", [Platform.MT4, Platform.MT5])
def test_each_trade_pushes_the_events_the_spec_lists(
    make_desk: MakeDesk, platform: Platform
) -> None:
    table = _table()
    assert len(table) == 7
    assert _observed(make_desk(platform)) == table
