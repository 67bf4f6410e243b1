"""The bridge's record of one order: what the journal stores and the pipeline mutates."""

from __future__ import annotations

from dataclasses import dataclass

from mtgate.domain.enums import OrderType, Platform
from mtgate.domain.orders import OrderAction, OrderStatus


@dataclass(slots=True)
class OrderRecord:
    """One order the bridge was asked to place, from intent to its final status.

    Prices are in the symbol's quote currency, volumes in lots, times in epoch ms. ``mt_*``
    fields hold what the terminal reported: the order ticket (MT4: the ticket), and for MT5
    the position id and deal ticket of the fill.
    """

    order_id: str
    client_order_id: str
    account_login: int
    account_server: str
    terminal_id: str
    platform: Platform | None
    """None only for an order refused because no terminal of its account ever connected."""
    symbol: str
    order_type: OrderType
    volume: float
    magic: int
    comment: str
    placed_at_ms: int
    status: OrderStatus = OrderStatus.NEW
    requested_price: float | None = None
    stoplimit_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    expiration_ms: int | None = None
    deviation_points: int | None = None
    signal_id: str | None = None
    mt_order_id: int | None = None
    mt_position_id: int | None = None
    mt_deal_id: int | None = None
    fill_price: float | None = None
    fill_volume: float | None = None
    slippage_points: float | None = None
    execution_time_ms: float | None = None
    rejection_code: int | None = None
    rejection_name: str | None = None
    rejection_reason: str | None = None
    retry_count: int = 0
    updated_at_ms: int = 0
    filled_at_ms: int | None = None
    action: OrderAction = OrderAction.OPEN
    position_ticket: int | None = None
    """CLOSE / CLOSE_BY: the position closed (MT4: its ticket)."""
    by_ticket: int | None = None
    """CLOSE_BY: the opposite position."""
    remainder_ticket: int | None = None
    """CLOSE / CLOSE_BY answered: the ticket holding what is left (not journalled: the
    synchronizer's position rows carry it)."""
    sent_server_ms: int | None = None
    """A lower bound of the trade server's clock when the order was sent: the latest server
    time the carrying session had seen (ticks, snapshots, trade results). Server time is not
    the bridge's clock (brokers run GMT+2/+3), so resolution windows (the history fallback of
    docs/protocol.md §9, MT4 close matching) are taken from it. None: nothing seen yet.
    Journalled once, when the order is created (``execution_orders.server_time_at_send``,
    stored as the epoch value it is, with no zone conversion)."""
    deadline_at_ms: int | None = None
    """The bridge's wall-clock time (epoch ms) after which the terminal never starts this
    order's trade call: the request's deadline, told to an EA with the feature ``deadline``
    on its own clock (docs/protocol.md §4.4). Once it and the longest trade call have passed,
    a lookup on any terminal of the account proves the order absent. None: no deadline was
    given (an EA without the feature). Journalled once (``execution_orders.trade_deadline_at``)."""
