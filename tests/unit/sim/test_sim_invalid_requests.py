"""The EA answers -2 ``invalid_request`` where docs/protocol.md says so, and never calls the
platform for it (the protocol review found the simulator answering platform codes, or
cutting a long comment, where a real EA built from the spec refuses)."""

from __future__ import annotations

from typing import Any

import pytest

from mtgate.domain.enums import Platform
from mtgate.protocol import messages as m
from tests.unit.sim.simdesk import MakeDesk
from tests.unit.sim.simwire import wire_session

MT4, MT5 = Platform.MT4, Platform.MT5
EXP = 1_767_800_000_000


def _market(**over: Any) -> m.MarketOrder:
    fields: dict[str, Any] = {
        "id": 1,
        "symbol": "EURUSD",
        "order_type": 0,
        "volume": 0.1,
        "magic": 7,
        "comment": "mg:x",
    }
    return m.MarketOrder(**{**fields, **over})


def _pending(**over: Any) -> m.PendingOrder:
    fields: dict[str, Any] = {
        "id": 1,
        "symbol": "EURUSD",
        "order_type": 2,
        "volume": 0.1,
        "price": 1.0,
        "magic": 7,
        "comment": "mg:x",
    }
    return m.PendingOrder(**{**fields, **over})


CASES = [
    ("market order_type 5", [MT4, MT5], _market(order_type=5)),
    ("comment of 32", [MT4, MT5], _market(comment="mg:" + "a" * 29)),
    ("empty symbol", [MT4, MT5], _market(symbol="")),
    ("pending order_type 1", [MT4, MT5], _pending(order_type=1)),
    ("MT4 stop-limit", [MT4], _pending(order_type=6, stoplimit=1.1)),
    ("stoplimit on a limit", [MT4, MT5], _pending(order_type=2, stoplimit=0.9)),
    ("GTC with expiration", [MT4, MT5], _pending(time_type=0, expiration_ms=EXP)),
    ("DAY with expiration", [MT5], _pending(time_type=1, expiration_ms=EXP)),
    ("SPECIFIED without", [MT4, MT5], _pending(time_type=2)),
    ("MT4 DAY", [MT4], _pending(time_type=1)),
    ("unknown time_type", [MT5], _pending(time_type=9)),
    ("order_get both keys", [MT4, MT5], m.OrderGet(id=1, ticket=5, client_id="x")),
    ("order_get no key", [MT4, MT5], m.OrderGet(id=1)),
    ("tick of no symbol", [MT4, MT5], m.GetTick(id=1, symbol="")),
    ("history backwards", [MT4, MT5], m.History(id=1, since_ms=EXP, until_ms=EXP - 1)),
    ("history negative", [MT4, MT5], m.History(id=1, since_ms=-1)),
]


@pytest.mark.parametrize(
    ("platform", "msg"),
    [(p, msg) for _, platforms, msg in CASES for p in platforms],
    ids=[f"{name}-{p.value}" for name, platforms, _ in CASES for p in platforms],
)
async def test_the_ea_refuses_what_it_cannot_execute_as_asked(
    make_desk: MakeDesk, platform: Platform, msg: m.Request
) -> None:
    desk = make_desk(platform)
    async with wire_session(desk) as (bridge, _terminal):
        before = len(desk.server.executed)
        answer = await bridge.request(msg)
        assert not answer.ok and answer.error is not None
        assert (answer.error.code, answer.error.name) == (-2, "invalid_request"), answer.error
        assert len(desk.server.executed) == before  # the platform was never called
        assert (await bridge.request(m.AccountInfo(id=msg.id + 1))).ok  # the session lives


@pytest.mark.parametrize("platform", [MT4, MT5])
async def test_a_comment_of_31_is_passed_on_whole(make_desk: MakeDesk, platform: Platform) -> None:
    desk = make_desk(platform)
    comment = "mg:" + "a" * 28
    async with wire_session(desk) as (bridge, _terminal):
        answer = await bridge.request(_market(comment=comment))
    assert answer.ok
    [position] = desk.server.positions(desk.login)
    assert position.comment == comment[: desk.server.config.comment_max]
