"""Wire reports (``mtgate.protocol.messages``) built from the server's state."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from mtgate.domain.enums import OrderState
from mtgate.protocol.messages import AccountReport, OrderReport, PositionReport
from mtsim.arith import Arithmetic
from mtsim.book import Account, Pending, Position
from mtsim.money import Figures

MONEY_DIGITS = 2
"""Deposit-currency digits (USD): deal profits and reported money are rounded to cents."""

_replace = msgspec.structs.replace


Valuation = tuple[Arithmetic, float, float]
"""A symbol's formulas for the account, and its Bid and Ask now."""


def position_reports(
    positions: Iterable[Position], valuation: Callable[[str], Valuation]
) -> list[PositionReport]:
    """Positions valued at the current price (Bid closes a buy, Ask a sell: reference §4.2);
    ``valuation(symbol)`` is called once per symbol.

    Every snapshot values every open position, so this is a snapshot's hot path: the fields
    that do not move with prices are built once per position version and kept on the
    position (:attr:`mtsim.book.Position.report`); a report is a copy of that template with
    the price and profit of now."""
    valued: dict[str, tuple[Callable[[bool, float, float, float], float], float, float]] = {}
    reports: list[PositionReport] = []
    append = reports.append
    for pos in positions:
        symbol_value = valued.get(pos.symbol)
        if symbol_value is None:
            arith, bid, ask = valuation(pos.symbol)
            symbol_value = valued[pos.symbol] = (arith.position_profit, bid, ask)
        profit, bid, ask = symbol_value
        template = pos.report
        if (
            template is None
            or pos.report_version != pos.version
            or template.time_update_ms != pos.time_update_ms
        ):
            template = pos.report = _position_template(pos)
            pos.report_version = pos.version
        buy = pos.buy
        close = bid if buy else ask
        pnl = round(profit(buy, pos.volume, pos.price_open, close), MONEY_DIGITS)
        append(_replace(template, price_current=close, profit=pnl))
    return reports


def _position_template(pos: Position) -> PositionReport:
    return PositionReport(
        ticket=pos.ticket,
        identifier=pos.identifier,
        symbol=pos.symbol,
        type=0 if pos.buy else 1,
        volume=pos.volume,
        price_open=pos.price_open,
        price_current=0.0,
        time_ms=pos.time_ms,
        magic=pos.magic,
        comment=pos.comment,
        sl=pos.sl,
        tp=pos.tp,
        time_update_ms=pos.time_update_ms,
    )


def pending_report(
    order: Pending,
    bid: float,
    ask: float,
    *,
    state: OrderState = OrderState.PLACED,
    time_done_ms: int = 0,
    position_id: int = 0,
) -> OrderReport:
    """A pending order, live (PLACED) or as it leaves the book (FILLED, CANCELED, ...)."""
    filled = state == OrderState.FILLED
    return OrderReport(
        ticket=order.ticket,
        symbol=order.symbol,
        type=int(order.type),
        state=int(state),
        volume_initial=order.volume,
        volume_current=0.0 if filled else order.volume,
        price_open=order.price,
        time_setup_ms=order.time_setup_ms,
        magic=order.magic,
        comment=order.comment,
        stoplimit=order.stoplimit,
        sl=order.sl,
        tp=order.tp,
        price_current=ask if order.type.is_buy else bid,
        time_done_ms=time_done_ms,
        expiration_ms=order.expires_at_ms,
        time_type=order.time_type,
        position_id=position_id,
    )


def account_report(
    acct: Account,
    fig: Figures,
    *,
    server: str,
    company: str,
    trade_expert: bool,
) -> AccountReport:
    """ACCOUNT_* figures (reference §5.2); margin level 0 when there is no margin."""
    return AccountReport(
        login=acct.login,
        server=server,
        currency=acct.currency,
        leverage=acct.leverage,
        margin_mode=int(acct.margin_mode),
        balance=round(fig.balance, MONEY_DIGITS),
        credit=0.0,
        profit=round(fig.profit, MONEY_DIGITS),
        equity=round(fig.equity, MONEY_DIGITS),
        margin=round(fig.margin, MONEY_DIGITS),
        margin_free=round(fig.margin_free, MONEY_DIGITS),
        margin_level=round(fig.margin_level, MONEY_DIGITS),
        margin_so_call=acct.margin_so_call,
        margin_so_so=acct.margin_so_so,
        trade_allowed=True,
        trade_expert=trade_expert,
        limit_orders=acct.limit_orders,
        company=company,
        name=f"Simulated account {acct.login}",
    )
