"""The only code that changes an account: fills, closes, pending orders and their history.

Ticket model (reference §1.3, §7, §9 #2):

- MT5: two server-wide counters, orders (first ticket 20000001) and deals (first 10000001).
  A position's ticket is the ticket of the order that opened it and its identifier stays that
  ticket for its whole life (a netting reversal gives the position the reversing order's
  ticket, the identifier does not change).
- MT4: one counter for everything (first ticket 10000001): a market order's ticket is the
  position; a triggered pending order keeps its ticket. MT4 has no deals: the server model
  synthesizes one ``DealReport`` per open (entry IN) and per close (entry OUT) of a ticket,
  with ``order`` = ``position_id`` = the ticket and the deal ticket **2·ticket** for the open
  and **2·ticket + 1** for the close. The EA derives the same numbers from the ticket alone,
  so they are unique, stable across EA restarts and need no counter.

History orders (reference §7): MT5 records every order that leaves the book — a market order
(FILLED, at once), a pending order (FILLED, CANCELED, EXPIRED, REJECTED) and the order the
server creates for an SL/TP close. MT4 records a ticket in history when it leaves the trading
pool: a closed market order (FILLED, ``price_current`` = close price) or a deleted/expired
pending order; a triggered MT4 pending order stays in the pool as the open position.

Comments: MT4 appends ``[sl]`` / ``[tp]`` to the comment of a ticket closed by SL/TP,
truncating the original so the marker fits (reference §1.1: "the last part may be changed by
the server"). MT5 gives the close order and its deal the comment ``[sl 1.08400]`` /
``[tp 1.08600]`` (the level that triggered, observed on MT5 servers ⚠ [O]). A broker that
rewrites or drops the comments of trade requests (``ServerConfig.rewrite_comment``) is
modelled by :meth:`Venue.request_comment`, the one place a request's comment enters the book.

Deal reasons: MT5 deals carry the server's reason (EXPERT for the EA's requests, CLIENT for
manual trades, SL/TP/SO for the server's own closes). An MT4 deal is synthesised by the EA,
which knows only the ticket's comment and magic, so :func:`record_deal` derives its reason
with :func:`mtsim.markers.mt4_deal_reason` whatever the caller passed (docs/protocol.md §10).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import NamedTuple

from mtgate.domain.clock import Clock
from mtgate.domain.enums import DealEntry, DealReason, OrderState, OrderType, Platform
from mtgate.domain.symbols import SymbolSpec, profit
from mtgate.protocol.messages import DealReport, OrderReport
from mtsim.book import VOLUME_DECIMALS, Account, Pending, Position
from mtsim.config import ServerConfig
from mtsim.markers import SL_MARKER, TP_MARKER, mt4_deal_reason
from mtsim.prices import PriceFeed
from mtsim.reports import MONEY_DIGITS, pending_report


class Tickets:
    """Ticket counters of one trade server (see the module docstring)."""

    def __init__(self, platform: Platform) -> None:
        self._mt4 = platform == Platform.MT4
        self._order = 10_000_000 if self._mt4 else 20_000_000
        self._deal = 10_000_000

    def order(self) -> int:
        self._order += 1
        return self._order

    def deal(self, order_ticket: int, entry: DealEntry) -> int:
        if self._mt4:
            return 2 * order_ticket + (0 if entry == DealEntry.IN else 1)
        self._deal += 1
        return self._deal


@dataclass(slots=True)
class Venue:
    """What every trade operation of one server shares; ``outbox`` holds events until the
    server dispatches them, after the state change is complete."""

    platform: Platform
    name: str
    clock: Clock
    feed: PriceFeed
    symbols: dict[str, SymbolSpec]
    config: ServerConfig
    tickets: Tickets
    rng: random.Random
    outbox: list[tuple[int, str, object]] = field(default_factory=list)
    closures: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Market closures injected as faults (:meth:`mtsim.server.TradeServer.close_market`)."""
    mt4: bool = field(init=False)

    def __post_init__(self) -> None:
        self.mt4 = self.platform == Platform.MT4

    def emit(self, login: int, name: str, payload: object) -> None:
        self.outbox.append((login, name, payload))

    def request_comment(self, comment: str) -> str:
        """The comment the server stores for a trade request's ``comment``: the broker's
        rewrite when it has one (``ServerConfig.rewrite_comment``; ``""`` drops it), cut to
        ``comment_max`` as servers do. Server-written comments (``[sl]``, ``to #N``, stop-out
        and close-by markers) do not come through here."""
        rewrite = self.config.rewrite_comment
        return (comment if rewrite is None else rewrite)[: self.config.comment_max]


class Fill(NamedTuple):
    """One execution: buy or sell ``volume`` at ``price`` under order ``order``.

    A NamedTuple rather than a frozen dataclass: it is built on every fill, and a frozen
    dataclass costs about five times as much to construct."""

    symbol: str
    buy: bool
    volume: float
    price: float
    sl: float
    tp: float
    magic: int
    comment: str
    order: int
    time_ms: int
    reason: DealReason = DealReason.EXPERT
    """MT5: the deal's reason. MT4 ignores it: :func:`record_deal` derives the reason from
    the comment and magic, as the EA does (see the module docstring)."""


class Filled(NamedTuple):
    deal: DealReport
    position: int
    """Identifier of the position the deal opened, changed or closed (MT4: the ticket)."""


def with_marker(comment: str, marker: str, limit: int) -> str:
    """``comment`` + ``marker``, cutting the comment so the result fits in ``limit``."""
    return comment[: max(0, limit - len(marker))] + marker


def record_deal(
    venue: Venue, acct: Account, fill: Fill, entry: DealEntry, position_id: int, pnl: float
) -> DealReport:
    """Book one deal, its profit and its event. Every deal of every platform is recorded
    here, so the MT4 reason rule (docs/protocol.md §10) holds for opens, closes, partial and
    close-by closes, SL/TP, stop-out, pending fills and manual trades alike."""
    reason = mt4_deal_reason(fill.comment, fill.magic) if venue.mt4 else fill.reason
    deal = DealReport(
        ticket=venue.tickets.deal(fill.order, entry),
        order=fill.order,
        position_id=position_id,
        symbol=fill.symbol,
        type=0 if fill.buy else 1,
        entry=int(entry),
        volume=fill.volume,
        price=fill.price,
        time_ms=fill.time_ms,
        reason=int(reason),
        magic=fill.magic,
        comment=fill.comment,
        profit=pnl,
    )
    if pnl:
        acct.balance = round(acct.balance + pnl, MONEY_DIGITS)
    acct.record_deal(deal)
    venue.emit(acct.login, "deal", deal)
    return deal


def execute(venue: Venue, acct: Account, spec: SymbolSpec, fill: Fill) -> Filled:
    """Execute one deal: a new position (hedging, MT4) or a netting change (reference §3.6)."""
    if acct.netting:
        pos = acct.netting_position(fill.symbol)
        if pos is not None:
            return _net(venue, acct, spec, fill, pos)
    now = fill.time_ms
    pos = Position(
        ticket=fill.order,
        identifier=fill.order,
        symbol=fill.symbol,
        buy=fill.buy,
        volume=fill.volume,
        price_open=fill.price,
        time_ms=now,
        magic=fill.magic,
        comment=fill.comment,
        sl=fill.sl,
        tp=fill.tp,
        time_update_ms=now,
    )
    acct.add_position(pos)
    return Filled(record_deal(venue, acct, fill, DealEntry.IN, pos.identifier, 0.0), pos.identifier)


def _net(venue: Venue, acct: Account, spec: SymbolSpec, fill: Fill, pos: Position) -> Filled:
    """Netting (reference §3.6): add (VWAP, SL/TP from the order, zeros delete), reduce
    (OUT, price and SL/TP kept), close, or reverse (one INOUT deal; the identifier stays, the
    ticket, magic, comment and open time become the reversing order's)."""
    now = fill.time_ms
    ident = pos.identifier
    if pos.buy == fill.buy:
        volume = round(pos.volume + fill.volume, VOLUME_DECIMALS)
        price = (pos.volume * pos.price_open + fill.volume * fill.price) / volume
        acct.change_position(pos, volume=volume, price_open=price, sl=fill.sl, tp=fill.tp)
        pos.time_update_ms = now
        return Filled(record_deal(venue, acct, fill, DealEntry.IN, ident, 0.0), ident)
    closed = min(fill.volume, pos.volume)
    pnl = round(
        profit(spec, pos.buy, closed, pos.price_open, fill.price, acct.currency), MONEY_DIGITS
    )
    rest = round(pos.volume - fill.volume, VOLUME_DECIMALS)
    if rest > 0:
        acct.change_position(pos, volume=rest, price_open=pos.price_open, sl=pos.sl, tp=pos.tp)
        pos.time_update_ms = now
        return Filled(record_deal(venue, acct, fill, DealEntry.OUT, ident, pnl), ident)
    acct.remove_position(pos)
    if rest == 0:
        return Filled(record_deal(venue, acct, fill, DealEntry.OUT, ident, pnl), ident)
    reversed_pos = Position(
        ticket=fill.order,
        identifier=ident,
        symbol=fill.symbol,
        buy=fill.buy,
        volume=-rest,
        price_open=fill.price,
        time_ms=now,
        magic=fill.magic,
        comment=fill.comment,
        sl=fill.sl,
        tp=fill.tp,
        time_update_ms=now,
    )
    acct.add_position(reversed_pos)
    return Filled(record_deal(venue, acct, fill, DealEntry.INOUT, ident, pnl), ident)


def market_order_report(fill: Fill, filled: Filled, requested: float = 0.0) -> OrderReport:
    """The MT5 history record of a market order, FILLED at once. ``requested`` above the
    fill's volume: an IOC order filled in part, whose rest was cancelled (reference §3.3):
    ``volume_current`` keeps the unfilled rest (⚠ the state stays FILLED: the reference does
    not say which state such an order ends in)."""
    initial = max(requested, fill.volume)
    return OrderReport(
        ticket=fill.order,
        symbol=fill.symbol,
        type=0 if fill.buy else 1,
        state=int(OrderState.FILLED),
        volume_initial=initial,
        volume_current=round(initial - fill.volume, VOLUME_DECIMALS),
        price_open=fill.price,
        time_setup_ms=fill.time_ms,
        magic=fill.magic,
        comment=fill.comment,
        sl=fill.sl,
        tp=fill.tp,
        price_current=fill.price,
        time_done_ms=fill.time_ms,
        position_id=filled.position,
    )


def close_position(
    venue: Venue,
    acct: Account,
    spec: SymbolSpec,
    pos: Position,
    *,
    price: float,
    reason: DealReason,
    level: float,
) -> DealReport:
    """Close all of ``pos`` at ``price`` (SL/TP now; close requests next), booking the profit."""
    now = venue.clock.now_ms()
    pnl = round(
        profit(spec, pos.buy, pos.volume, pos.price_open, price, acct.currency), MONEY_DIGITS
    )
    acct.remove_position(pos)
    tag = {DealReason.SL: "sl", DealReason.TP: "tp"}.get(reason)
    if venue.mt4:
        order = pos.ticket
        marker = {DealReason.SL: SL_MARKER, DealReason.TP: TP_MARKER}.get(reason)
        comment = (
            with_marker(pos.comment, marker, venue.config.comment_max) if marker else pos.comment
        )
        report_type = 0 if pos.buy else 1
        time_setup, price_open = pos.time_ms, pos.price_open
    else:
        order = venue.tickets.order()
        comment = f"[{tag} {level:.{spec.digits}f}]" if tag else ""
        report_type = 1 if pos.buy else 0
        time_setup, price_open = now, price
    acct.record_order(
        OrderReport(
            ticket=order,
            symbol=pos.symbol,
            type=report_type,
            state=int(OrderState.FILLED),
            volume_initial=pos.volume,
            volume_current=0.0,
            price_open=price_open,
            time_setup_ms=time_setup,
            magic=pos.magic,
            comment=comment,
            sl=pos.sl,
            tp=pos.tp,
            price_current=price,
            time_done_ms=now,
            position_id=pos.identifier,
        )
    )
    fill = Fill(
        pos.symbol, not pos.buy, pos.volume, price, 0.0, 0.0, pos.magic, comment, order, now, reason
    )
    return record_deal(venue, acct, fill, DealEntry.OUT, pos.identifier, pnl)


def place_pending(venue: Venue, acct: Account, order: Pending) -> None:
    acct.add_pending(order)
    bid, ask, _ = venue.feed.quote(order.symbol)
    venue.emit(acct.login, "order", pending_report(order, bid, ask))


def modify_pending(venue: Venue, acct: Account, order: Pending, **changes: float | int) -> None:
    """Apply new values (any of price, stoplimit, sl, tp, time_type, expiration_ms,
    expires_at_ms, type) and re-arm the order's trigger and expiry."""
    for name, value in changes.items():
        setattr(order, name, value)
    acct.touch_pending(order)
    bid, ask, _ = venue.feed.quote(order.symbol)
    venue.emit(acct.login, "order", pending_report(order, bid, ask))


def end_pending(
    venue: Venue, acct: Account, order: Pending, state: OrderState, position_id: int = 0
) -> None:
    """The order leaves the book (filled, cancelled, expired, rejected): history and event.

    A filled MT4 order becomes the open position under the same ticket, so it is not
    recorded in history (see the module docstring)."""
    acct.remove_pending(order)
    bid, ask, _ = venue.feed.quote(order.symbol)
    report = pending_report(
        order, bid, ask, state=state, time_done_ms=venue.clock.now_ms(), position_id=position_id
    )
    if not (venue.mt4 and state == OrderState.FILLED):
        acct.record_order(report)
    venue.emit(acct.login, "order", report)


def fill_position_id(acct: Account, order: Pending) -> int:
    """The position a pending order's fill will belong to: netting joins the symbol's
    position (reversal keeps its identifier); otherwise the order opens its own."""
    if acct.netting:
        pos = acct.netting_position(order.symbol)
        if pos is not None:
            return pos.identifier
    return order.ticket


def activated_type(order_type: OrderType) -> OrderType:
    """A stop-limit order becomes the limit order of its direction (reference §3.1)."""
    return OrderType.BUY_LIMIT if order_type.is_buy else OrderType.SELL_LIMIT
