"""A terminal that restarts while the account changes: it comes back READY, reconciled.

The terminal drops without a ``bye`` (its machine crashed) and stays away while the trade
server closes the bridge's position at its SL and the account holder trades by hand. When it
dials again it must end READY after reconciliation, the bridge's view must be the server's,
and the health figures must show the disconnect.
"""

from __future__ import annotations

import pytest

from mtgate.domain.enums import OrderType
from mtgate.domain.orders import OrderStatus
from mtgate.health.alerts import Alert, AlertKind
from mtgate.health.settings import HealthSettings
from mtgate.sessions.session import AccountKey
from tests.integration.conftest import (
    MT4,
    MT5H,
    MT5N,
    Harness,
    HarnessFactory,
    eventually,
    open_tickets,
)


def _server_tickets(h: Harness, tid: str) -> set[int]:
    login = h.terminal(tid).config.login
    return {p.ticket for p in h.server(tid).positions(login)}


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_a_restarted_terminal_is_ready_again_with_what_changed_while_away(
    make_harness: HarnessFactory, tid: str
) -> None:
    h = await make_harness(health=HealthSettings(interval_ms=100, down_after_ms=0), start=False)
    alerts: list[Alert] = []
    h.bridge.on_alert(alerts.append)
    host, port = await h.bridge.start()
    h.world.start(host, port)
    await h.ready()
    key = AccountKey.parse(h.account(tid))
    login = h.terminal(tid).config.login
    await eventually(lambda: h.bridge.synced_account(h.account(tid)) is not None, timeout_s=3)

    opened = await h.bridge.place_market_order(
        account=h.account(tid), symbol="EURUSD", side="buy", volume=0.1, client_order_id="rs1"
    )
    assert opened.status == OrderStatus.FILLED and opened.position_id is not None
    ticket = opened.position_id
    bid, _, _ = h.server(tid).feed.quote("EURUSD")
    sl = round(bid - 0.0005, 5)
    done = await h.bridge.modify_position(account=h.account(tid), ticket=ticket, sl=sl)
    assert done.status == "done"
    await eventually(lambda: ticket in open_tickets(h.bridge, key))

    faults = h.terminal(tid).faults
    faults.stay_down = True
    h.terminal(tid).drop()  # no bye: the terminal's machine went away
    await eventually(lambda: h.bridge.registry.session(tid) is None)
    # While it is away: the server closes the position at its SL, the holder buys by hand.
    h.server(tid).set_quote("EURUSD", round(sl - 0.0001, 5), round(sl + 0.0001, 5))
    assert ticket not in _server_tickets(h, tid)
    manual = h.server(tid).manual_market_order(login, "EURUSD", OrderType.SELL, 0.2)
    assert manual.code in (0, 10009)
    truth = _server_tickets(h, tid)
    assert truth and ticket not in truth
    await eventually(lambda: any(a.kind == AlertKind.TERMINAL_DOWN for a in alerts))

    faults.stay_down = False
    await h.ready(tid)
    assert next(s for s in h.bridge.terminals() if s.terminal_id == tid).state == "ready"
    await eventually(lambda: open_tickets(h.bridge, key) == truth)
    positions = h.bridge.synced_positions(h.account(tid))
    assert [(p.external, p.client_order_id, p.volume) for p in positions] == [(True, None, 0.2)]
    journalled = await h.bridge.journal.get("rs1")
    assert journalled is not None and journalled.status == OrderStatus.FILLED

    def back_and_counted() -> bool:
        figures = next((t for t in h.bridge.health_metrics() if t.terminal_id == tid), None)
        return figures is not None and figures.ready and figures.disconnects == 1

    await eventually(back_and_counted)
    await eventually(
        lambda: any(a.kind == AlertKind.TERMINAL_DOWN and not a.raised for a in alerts)
    )
    assert [a.terminal_id for a in alerts if a.kind == AlertKind.TERMINAL_DOWN] == [tid, tid]
