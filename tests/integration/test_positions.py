"""Position operations end to end (socket, journal, simulator) on MT4, MT5 hedging and MT5
netting accounts: SL/TP changes with stops/freeze refusals, partial and full closes, close-by,
reversal (incl. a failed second leg), bulk operations."""

from __future__ import annotations

import pytest

from mtgate.domain.orders import OrderAction, OrderStatus
from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey
from tests.integration.conftest import MT4, MT5H, MT5N, SIM_EA_FAULTS, Harness, eventually

EURUSD = "EURUSD"
POINT = 0.00001


def _quote(h: Harness, tid: str) -> tuple[float, float]:
    bid, ask, _ = h.server(tid).feed.quote(EURUSD)
    return bid, ask


def _position(h: Harness, tid: str, ticket: int) -> m.PositionReport | None:
    login = h.login(tid)
    return next((p for p in h.server(tid).positions(login) if p.ticket == ticket), None)


def _ticket(h: Harness, tid: str, cid: str) -> int:
    login = h.login(tid)
    return next(p.ticket for p in h.server(tid).positions(login) if p.comment == f"mg:{cid}")


async def _open(
    h: Harness, tid: str, cid: str, *, side: str = "buy", volume: float = 0.3, magic: int = 7
) -> int:
    result = await h.bridge.place_market_order(
        account=h.account(tid),
        symbol=EURUSD,
        side=side,
        volume=volume,
        magic=magic,
        client_order_id=cid,
    )
    assert result.status == OrderStatus.FILLED, result
    ticket = _ticket(h, tid, cid)
    await _synced(h, tid, lambda: ticket in _view(h, tid))
    return ticket


def _view(h: Harness, tid: str) -> dict[int, object]:
    view = h.bridge.sync.views.get(AccountKey.parse(h.account(tid)))
    return {} if view is None else dict(view.positions)


async def _synced(h: Harness, tid: str, check: object) -> None:
    assert callable(check)
    await eventually(check, timeout_s=3.0)


# --- SL / TP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_modify_sl_tp_reaches_the_position(harness: Harness, tid: str) -> None:
    ticket = await _open(harness, tid, f"mod-{tid}")
    bid, _ = _quote(harness, tid)
    sl, tp = round(bid - 300 * POINT, 5), round(bid + 400 * POINT, 5)
    result = await harness.bridge.modify_position(
        account=harness.account(tid), ticket=ticket, sl=sl, tp=tp
    )
    assert (result.status, result.sl, result.tp) == ("done", sl, tp)
    pos = _position(harness, tid, ticket)
    assert pos is not None and (pos.sl, pos.tp) == (sl, tp)
    # A level left out is kept; 0 removes one.
    result = await harness.bridge.modify_position(
        account=harness.account(tid), ticket=ticket, tp=0.0
    )
    assert (result.status, result.sl, result.tp) == ("done", sl, 0.0)
    pos = _position(harness, tid, ticket)
    assert pos is not None and (pos.sl, pos.tp) == (sl, 0.0)


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_sl_inside_the_stops_level_is_refused_before_sending(
    harness: Harness, tid: str
) -> None:
    ticket = await _open(harness, tid, f"stp-{tid}")
    seen = harness.trades_seen(tid)
    bid, _ = _quote(harness, tid)
    # EURUSD: stops level 10 points; the bridge keeps one point of slack.
    for distance in (1, 9, 10):
        result = await harness.bridge.modify_position(
            account=harness.account(tid), ticket=ticket, sl=round(bid - distance * POINT, 5)
        )
        assert result.status == "refused", distance
        assert result.error is not None
        assert (result.error.source, result.error.field, result.error.rule) == (
            "bridge",
            "sl",
            "stops_level",
        )
    assert harness.trades_seen(tid) == seen
    result = await harness.bridge.modify_position(
        account=harness.account(tid), ticket=ticket, sl=round(bid - 11 * POINT, 5)
    )
    assert result.status == "done"


@pytest.mark.parametrize(
    ("tid", "code", "name"),
    [(MT4, 130, "ERR_INVALID_STOPS"), (MT5H, 10016, "TRADE_RETCODE_INVALID_STOPS")],
)
async def test_the_terminal_answers_its_own_code_for_stops_too_close(
    harness: Harness, tid: str, code: int, name: str
) -> None:
    """The rule the bridge pre-checks is the server's: sent directly, the simulated server
    answers with the platform's code (what a terminal whose levels moved would answer)."""
    ticket = await _open(harness, tid, f"raw-{tid}")
    bid, _ = _quote(harness, tid)
    session = harness.bridge.registry.route(AccountKey.parse(harness.account(tid)))
    from mtgate.sessions.errors import TerminalRejected

    with pytest.raises(TerminalRejected) as caught:
        await session.request(
            m.ModifyPosition(id=0, ticket=ticket, sl=round(bid - 5 * POINT, 5), tp=0.0)
        )
    assert (caught.value.code, caught.value.name) == (code, name)


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_a_position_within_the_freeze_level_cannot_be_modified_or_closed(
    harness: Harness, tid: str
) -> None:
    ticket = await _open(harness, tid, f"frz-{tid}")
    bid, ask = _quote(harness, tid)
    sl = round(bid - 20 * POINT, 5)
    assert (
        await harness.bridge.modify_position(account=harness.account(tid), ticket=ticket, sl=sl)
    ).status == "done"
    # The price falls to 3 points above the SL: inside the freeze level (5 points).
    harness.server(tid).set_quote(EURUSD, round(sl + 3 * POINT, 5), round(sl + 5 * POINT, 5))
    await eventually(
        lambda: (
            harness.bridge.registry.route(AccountKey.parse(harness.account(tid)))
            .view.ticks[EURUSD]
            .bid
            == round(sl + 3 * POINT, 5)
        )
    )
    seen = harness.trades_seen(tid)
    moved = await harness.bridge.modify_position(
        account=harness.account(tid), ticket=ticket, sl=round(sl - 50 * POINT, 5)
    )
    assert moved.status == "refused" and moved.error is not None
    assert moved.error.rule == "freeze_level"
    closed = await harness.bridge.close_position(account=harness.account(tid), ticket=ticket)
    assert closed.status == OrderStatus.REJECTED and closed.error is not None
    assert (closed.error.source, closed.error.rule) == ("bridge", "freeze_level")
    assert harness.trades_seen(tid) == seen
    del ask


# --- closes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_partial_then_full_close_keeps_tickets_and_client_ids_right(
    harness: Harness, tid: str
) -> None:
    cid = f"pc-{tid}"
    ticket = await _open(harness, tid, cid, volume=0.5)
    part = await harness.bridge.close_position(
        account=harness.account(tid), ticket=ticket, volume=0.2, client_order_id=f"pcx-{tid}"
    )
    assert part.status == OrderStatus.FILLED, part
    assert (part.action, part.position_ticket, part.fill_volume) == ("close", ticket, 0.2)
    rest = part.remainder_ticket
    assert rest is not None
    if tid == MT4:  # MT4: the rest is a new ticket, "from #<old>"
        assert rest != ticket
        pos = _position(harness, tid, rest)
        assert pos is not None and pos.comment == f"from #{ticket}"
        assert _position(harness, tid, ticket) is None
    else:  # MT5: the same ticket, less volume
        assert rest == ticket
    pos = _position(harness, tid, rest)
    assert pos is not None and pos.volume == pytest.approx(0.3)
    # The bridge keeps the rest under the client order id that opened it, after the next sync.
    await eventually(
        lambda: (
            (v := _view(harness, tid).get(rest)) is not None
            and getattr(v, "client_order_id", None) == cid
            and getattr(v, "volume", 0) == pytest.approx(0.3)
        ),
        timeout_s=3,
    )
    journalled = await harness.bridge.journal.get(f"pcx-{tid}")
    assert journalled is not None
    assert (journalled.action, journalled.position_ticket, journalled.status) == (
        OrderAction.CLOSE,
        ticket,
        OrderStatus.FILLED,
    )
    full = await harness.bridge.close_position(account=harness.account(tid), ticket=rest)
    assert full.status == OrderStatus.FILLED and full.fill_volume == pytest.approx(0.3)
    login = harness.login(tid)
    assert harness.server(tid).positions(login) == []
    await eventually(lambda: rest not in _view(harness, tid), timeout_s=3)
    stored = await harness.bridge.store.position(AccountKey.parse(harness.account(tid)), rest)
    assert stored is not None and not stored.open and stored.client_order_id == cid


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_close_volume_rules_are_checked_before_journalling(
    harness: Harness, tid: str
) -> None:
    ticket = await _open(harness, tid, f"cv-{tid}", volume=0.1)
    seen = harness.trades_seen(tid)
    for volume, rule in ((0.2, "volume_above_position"), (0.095, "volume_min"), (0.005, None)):
        result = await harness.bridge.close_position(
            account=harness.account(tid), ticket=ticket, volume=volume
        )
        assert result.status == OrderStatus.REJECTED
        assert result.error is not None and result.error.source == "bridge"
        if rule is not None:
            assert result.error.rule in (rule, "volume_step")
    assert harness.trades_seen(tid) == seen


@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_close_by_closes_both_positions(harness: Harness, tid: str) -> None:
    buy = await _open(harness, tid, f"cbb-{tid}", side="buy", volume=0.3)
    sell = await _open(harness, tid, f"cbs-{tid}", side="sell", volume=0.2)
    result = await harness.bridge.close_by(account=harness.account(tid), ticket=buy, opposite=sell)
    assert result.status == OrderStatus.FILLED, result
    assert result.action == "close_by"
    login = harness.login(tid)
    left = harness.server(tid).positions(login)
    assert [(p.type, p.volume) for p in left] == [(0, pytest.approx(0.1))]
    assert result.remainder_ticket == left[0].ticket


async def test_close_by_is_refused_on_a_netting_account(harness: Harness) -> None:
    ticket = await _open(harness, MT5N, "cbn")
    result = await harness.bridge.close_by(account=harness.account(MT5N), ticket=ticket, opposite=1)
    assert result.status == OrderStatus.REJECTED and result.error is not None
    assert result.error.rule == "hedging_only"


# --- reversal --------------------------------------------------------------------------------


async def test_reversal_on_netting_is_one_deal(harness: Harness) -> None:
    ticket = await _open(harness, MT5N, "rvn", volume=0.2)
    seen = harness.trades_seen(MT5N)
    result = await harness.bridge.reverse_position(
        account=harness.account(MT5N), ticket=ticket, client_order_id="rvn-2"
    )
    assert result.complete, result.message
    assert result.close is None and result.open is not None
    assert result.open.fill_volume == pytest.approx(0.4)
    assert harness.trades_seen(MT5N) == seen + 1
    login = harness.login(MT5N)
    assert [(p.type, p.volume) for p in harness.server(MT5N).positions(login)] == [
        (1, pytest.approx(0.2))
    ]


@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_reversal_on_hedging_closes_then_opens(harness: Harness, tid: str) -> None:
    ticket = await _open(harness, tid, f"rvh-{tid}", volume=0.2)
    result = await harness.bridge.reverse_position(
        account=harness.account(tid), ticket=ticket, volume=0.1, client_order_id=f"rvh2-{tid}"
    )
    assert result.complete, result.message
    assert result.close is not None and result.close.status == OrderStatus.FILLED
    assert result.open is not None and result.open.status == OrderStatus.FILLED
    login = harness.login(tid)
    assert [(p.type, p.volume, p.comment) for p in harness.server(tid).positions(login)] == [
        (1, pytest.approx(0.1), f"mg:rvh2-{tid}")
    ]


@SIM_EA_FAULTS
@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_reversal_whose_second_leg_fails_says_so(harness: Harness, tid: str) -> None:
    ticket = await _open(harness, tid, f"rvf-{tid}", volume=0.2)
    # The trade server refuses every trade after the close (trading disabled for the account
    # between the two legs, as a broker may do): the close fills, the opening is rejected.
    harness.terminal(tid).faults.reject_trades_after = 1
    result = await harness.bridge.reverse_position(
        account=harness.account(tid), ticket=ticket, client_order_id=f"rvf2-{tid}"
    )
    assert not result.complete
    assert result.close is not None and result.close.status == OrderStatus.FILLED
    assert result.open is not None and result.open.status == OrderStatus.REJECTED
    assert result.open.error is not None and result.open.error.source == "terminal"
    assert "half reversed" in result.message and f"#{ticket} was closed" in result.message
    login = harness.login(tid)
    assert harness.server(tid).positions(login) == []


# --- bulk ------------------------------------------------------------------------------------


async def test_bulk_close_by_magic_across_accounts_one_result_each(harness: Harness) -> None:
    keep = await _open(harness, MT4, "bk-keep", magic=1)
    chosen = [
        (MT4, await _open(harness, MT4, "bk-a", magic=9)),
        (MT4, await _open(harness, MT4, "bk-b", magic=9, side="sell")),
        (MT5H, await _open(harness, MT5H, "bk-c", magic=9)),
        (MT5N, await _open(harness, MT5N, "bk-d", magic=9)),
    ]
    results = await harness.bridge.bulk_close(select={"magic": 9})
    assert [(r.account, r.ticket) for r in results] == sorted(
        [(harness.account(t), k) for t, k in chosen],
        key=lambda x: (int(x[0].split("@")[0]), x[0], x[1]),
    )
    assert all(r.closed is not None and r.closed.status == OrderStatus.FILLED for r in results)
    assert _position(harness, MT4, keep) is not None
    for tid, ticket in chosen:
        assert _position(harness, tid, ticket) is None


async def test_bulk_modify_by_symbol_and_side(harness: Harness) -> None:
    a = await _open(harness, MT5H, "bm-a")
    b = await _open(harness, MT5H, "bm-b")
    s = await _open(harness, MT5H, "bm-s", side="sell")
    bid, _ = _quote(harness, MT5H)
    sl = round(bid - 500 * POINT, 5)
    results = await harness.bridge.bulk_modify(
        select={"accounts": [harness.account(MT5H)], "symbol": EURUSD, "side": "buy"}, sl=sl
    )
    assert sorted(r.ticket for r in results) == sorted([a, b])
    assert all(r.modified is not None and r.modified.status == "done" for r in results)
    for ticket in (a, b):
        pos = _position(harness, MT5H, ticket)
        assert pos is not None and pos.sl == sl
    pos = _position(harness, MT5H, s)
    assert pos is not None and pos.sl == 0.0


# --- closes whose answer is lost ---------------------------------------------------------------


@SIM_EA_FAULTS
@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_a_close_whose_answer_is_lost_is_resolved_not_resent(
    harness: Harness, tid: str
) -> None:
    """MT4 closes carry no comment: the close is found through the position's ticket."""
    ticket = await _open(harness, tid, f"lc-{tid}")
    seen = harness.trades_seen(tid)
    harness.terminal(tid).faults.answer_lost_next_trade = True
    result = await harness.bridge.close_position(
        account=harness.account(tid), ticket=ticket, client_order_id=f"lcx-{tid}"
    )
    assert result.status in (OrderStatus.UNKNOWN, OrderStatus.FILLED)

    async def settled() -> bool:
        found = await harness.bridge.get_order(harness.account(tid), client_order_id=f"lcx-{tid}")
        return found is not None and found.status == OrderStatus.FILLED

    await eventually(settled, timeout_s=10)
    assert harness.trades_seen(tid) == seen + 1  # executed once, never resent
    assert _position(harness, tid, ticket) is None


@SIM_EA_FAULTS
@pytest.mark.parametrize("tid", [MT4, MT5H])
async def test_a_close_lost_before_execution_is_proven_absent(harness: Harness, tid: str) -> None:
    ticket = await _open(harness, tid, f"la-{tid}")
    harness.terminal(tid).faults.drop_before_next_trade = True
    result = await harness.bridge.close_position(
        account=harness.account(tid), ticket=ticket, client_order_id=f"lax-{tid}"
    )
    assert result.status == OrderStatus.UNKNOWN

    async def settled() -> bool:
        found = await harness.bridge.get_order(harness.account(tid), client_order_id=f"lax-{tid}")
        return found is not None and found.status == OrderStatus.NOT_FOUND

    await eventually(settled, timeout_s=10)
    pos = _position(harness, tid, ticket)
    assert pos is not None and pos.volume == pytest.approx(0.3)  # still open, untouched


async def test_position_requests_name_the_bad_field(harness: Harness) -> None:
    from mtgate.execution.requests import InvalidRequest

    account = harness.account(MT5H)
    cases = [
        ("modify_position", {"account": account, "ticket": 0, "sl": 1.0}, "ticket"),
        ("modify_position", {"account": account, "ticket": 5, "sl": -1.0}, "sl"),
        ("close_position", {"account": account, "ticket": 5, "volume": 0}, "volume"),
        ("close_position", {"account": "nobody", "ticket": 5}, "account"),
        ("close_by", {"account": account, "ticket": 5}, "opposite"),
        ("reverse_position", {"account": account, "ticket": 5, "colour": "red"}, "colour"),
        ("bulk_close", {"select": {"side": "up"}}, "select"),
        ("trail_position", {"account": account, "ticket": 5, "distance_points": 0}, None),
    ]
    for method, fields, field in cases:
        with pytest.raises(InvalidRequest) as caught:
            await getattr(harness.bridge, method)(**fields)
        if field is not None:
            assert caught.value.field == field, (method, fields, caught.value)
    assert harness.trades_seen(MT5H) == 0


async def test_an_unknown_ticket_is_refused_without_sending(harness: Harness) -> None:
    seen = harness.trades_seen(MT5H)
    result = await harness.bridge.modify_position(
        account=harness.account(MT5H), ticket=999_999, sl=1.0
    )
    assert result.status == "refused" and result.error is not None
    assert result.error.rule == "no_position"
    closed = await harness.bridge.close_position(account=harness.account(MT5H), ticket=999_999)
    assert closed.status == OrderStatus.REJECTED and closed.error is not None
    assert closed.error.rule == "no_position"
    assert harness.trades_seen(MT5H) == seen


@pytest.mark.parametrize(
    ("tid", "code", "name"),
    [
        (MT4, 145, "ERR_TRADE_MODIFY_DENIED"),
        (MT5H, 10029, "TRADE_RETCODE_FROZEN"),
        (MT5N, 10029, "TRADE_RETCODE_FROZEN"),
    ],
)
async def test_the_terminal_answers_its_own_code_for_a_frozen_position(
    harness: Harness, tid: str, code: int, name: str
) -> None:
    """What the bridge's freeze pre-check stands for: sent directly, the server refuses."""
    ticket = await _open(harness, tid, f"rawf-{tid}")
    bid, _ = _quote(harness, tid)
    sl = round(bid - 20 * POINT, 5)
    done = await harness.bridge.modify_position(account=harness.account(tid), ticket=ticket, sl=sl)
    assert done.status == "done"
    harness.server(tid).set_quote(EURUSD, round(sl + 3 * POINT, 5), round(sl + 5 * POINT, 5))
    session = harness.bridge.registry.route(AccountKey.parse(harness.account(tid)))
    from mtgate.sessions.errors import TerminalRejected

    with pytest.raises(TerminalRejected) as caught:
        await session.request(
            m.ModifyPosition(id=0, ticket=ticket, sl=round(sl - 50 * POINT, 5), tp=0.0)
        )
    assert (caught.value.code, caught.value.name) == (code, name)


@pytest.fixture
async def harness(any_harness: Harness) -> Harness:
    """Every test of this module runs with each kind of MT5 terminal."""
    return any_harness
