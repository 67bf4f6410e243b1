"""Booking closes: full and partial closes and close-by, on both platforms (reference §1.3, §7).

Only state changes live here; the checks that precede them are in :mod:`mtsim.positions`.
Every change goes through :class:`~mtsim.book.Account`'s ``add_position`` /
``change_position`` / ``remove_position``, so the per-(symbol, side) running sums, the margin
cache and the trigger heaps follow in O(1) per position touched.

MT5 (reference §7):

- A close is a new order (the opposite market type, FILLED at once, ``position_id`` = the
  position's identifier, the request's comment) and one OUT deal carrying the profit. A
  partial close keeps the position's ticket, identifier, open price and SL/TP.
- Close-by is one order of type ORDER_TYPE_CLOSE_BY (8), comment ``close #A by #B`` ⚠ (the
  reference only says the comment "lists the tickets"), and two OUT_BY deals at the open
  price of ``position_by`` (no spread is paid): the deal of ``position`` books the whole
  profit, the deal of ``position_by`` books 0 (it closes at its own open price). The larger
  position survives with the difference, under its own ticket.

MT4 (reference §1.3, docs/protocol.md §10):

- A full close moves the ticket to history (type kept, ``price_current`` = close price) with
  its OUT deal ``2·ticket + 1``.
- A partial close puts the closed lots in history under the **original** ticket with comment
  ``to #<new>``, and reopens the rest under a **new** ticket with comment ``from #<old>``, the
  original open price and ⚠ the original open time; symbol, type, SL, TP and magic carry
  over. The remainder gets no IN deal.
- Close-by closes both tickets at the open price of ``opposite`` (the same arithmetic as MT5);
  each history record carries ``close hedge by #<other ticket>`` ⚠ (the reference names the
  marker, not which record carries it), and the larger order's rest reopens under a new
  ticket with ``from #<larger>``, as for a partial close. Deals are OUT (MT4 has no OUT_BY).

Comments are cut to ``ServerConfig.comment_max``.
"""

from __future__ import annotations

from typing import NamedTuple

from mtgate.domain.enums import DealEntry, DealReason, OrderState
from mtgate.domain.symbols import SymbolSpec, profit
from mtgate.protocol.messages import DealReport, OrderReport
from mtsim.book import VOLUME_DECIMALS, Account, Position
from mtsim.ledger import Fill, Venue, record_deal
from mtsim.reports import MONEY_DIGITS

ORDER_TYPE_CLOSE_BY = 8
"""ENUM_ORDER_TYPE value of the order the server creates for a close-by (reference §3.1)."""


class Closed(NamedTuple):
    """What a close booked: the order (MT5: the closing order; MT4: the closed ticket), the
    deal of the requested position, and the ticket holding the rest (0: nothing left)."""

    order: int
    deal: DealReport
    remainder: int


def close_volume(
    venue: Venue,
    acct: Account,
    spec: SymbolSpec,
    pos: Position,
    *,
    volume: float,
    price: float,
    reason: DealReason,
    comment: str,
) -> Closed:
    """Close ``volume`` lots of ``pos`` at ``price``. ``comment``: the MT5 close order's
    comment; on MT4 the comment of the history record when not empty (stop-out marker),
    else ``to #<new>`` for a partial close and the position's own comment for a full one.
    ``reason``: the MT5 deal's; an MT4 deal's is derived from its comment and magic
    (:func:`mtsim.ledger.record_deal`)."""
    if venue.mt4:
        return _mt4_close(venue, acct, spec, pos, volume, price, comment)
    now = venue.clock.now_ms()
    order = venue.tickets.order()
    comment = comment[: venue.config.comment_max]  # a stop-out marker may be long
    acct.record_order(
        OrderReport(
            ticket=order,
            symbol=pos.symbol,
            type=1 if pos.buy else 0,
            state=int(OrderState.FILLED),
            volume_initial=volume,
            volume_current=0.0,
            price_open=price,
            time_setup_ms=now,
            magic=pos.magic,
            comment=comment,
            price_current=price,
            time_done_ms=now,
            position_id=pos.identifier,
        )
    )
    deal = _book_out(venue, acct, spec, pos, volume, price, order, comment, reason, DealEntry.OUT)
    return Closed(order, deal, _alive(acct, pos))


def close_by(venue: Venue, acct: Account, spec: SymbolSpec, pos: Position, by: Position) -> Closed:
    """Close ``pos`` by the opposite ``by`` (see the module docstring)."""
    volume = min(pos.volume, by.volume)
    price = by.price_open
    if venue.mt4:
        first = _mt4_close(venue, acct, spec, pos, volume, price, f"close hedge by #{by.ticket}")
        second = _mt4_close(venue, acct, spec, by, volume, price, f"close hedge by #{pos.ticket}")
        return Closed(first.order, first.deal, first.remainder or second.remainder)
    now = venue.clock.now_ms()
    order = venue.tickets.order()
    comment = f"close #{pos.ticket} by #{by.ticket}"[: venue.config.comment_max]
    acct.record_order(
        OrderReport(
            ticket=order,
            symbol=pos.symbol,
            type=ORDER_TYPE_CLOSE_BY,
            state=int(OrderState.FILLED),
            volume_initial=volume,
            volume_current=0.0,
            price_open=price,
            time_setup_ms=now,
            magic=pos.magic,
            comment=comment,
            price_current=price,
            time_done_ms=now,
            position_id=pos.identifier,
        )
    )
    out_by = DealEntry.OUT_BY
    deal = _book_out(
        venue, acct, spec, pos, volume, price, order, comment, DealReason.EXPERT, out_by
    )
    _book_out(venue, acct, spec, by, volume, price, order, comment, DealReason.EXPERT, out_by)
    return Closed(order, deal, _alive(acct, pos) or _alive(acct, by))


def _alive(acct: Account, pos: Position) -> int:
    return pos.ticket if acct.positions.get(pos.ticket) is pos else 0


def _pnl(acct: Account, spec: SymbolSpec, pos: Position, volume: float, price: float) -> float:
    return round(profit(spec, pos.buy, volume, pos.price_open, price, acct.currency), MONEY_DIGITS)


def _book_out(
    venue: Venue,
    acct: Account,
    spec: SymbolSpec,
    pos: Position,
    volume: float,
    price: float,
    order: int,
    comment: str,
    reason: DealReason,
    entry: DealEntry,
) -> DealReport:
    """MT5: reduce (same ticket, identifier, price, SL/TP) or remove ``pos``, then its deal."""
    now = venue.clock.now_ms()
    pnl = _pnl(acct, spec, pos, volume, price)
    rest = round(pos.volume - volume, VOLUME_DECIMALS)
    if rest > 0:
        acct.change_position(pos, volume=rest, price_open=pos.price_open, sl=pos.sl, tp=pos.tp)
        pos.time_update_ms = now
    else:
        acct.remove_position(pos)
    fill = Fill(
        pos.symbol, not pos.buy, volume, price, 0.0, 0.0, pos.magic, comment, order, now, reason
    )
    return record_deal(venue, acct, fill, entry, pos.identifier, pnl)


def _mt4_close(
    venue: Venue,
    acct: Account,
    spec: SymbolSpec,
    pos: Position,
    volume: float,
    price: float,
    marker: str,
) -> Closed:
    """MT4: the ticket goes to history with ``volume``; a rest reopens under a new ticket.
    The out deal's reason is the one the EA derives from ``comment`` and magic."""
    now = venue.clock.now_ms()
    limit = venue.config.comment_max
    rest = round(pos.volume - volume, VOLUME_DECIMALS)
    new = venue.tickets.order() if rest > 0 else 0
    comment = (marker or (f"to #{new}" if new else pos.comment))[:limit]
    pnl = _pnl(acct, spec, pos, volume, price)
    acct.remove_position(pos)
    acct.record_order(
        OrderReport(
            ticket=pos.ticket,
            symbol=pos.symbol,
            type=0 if pos.buy else 1,
            state=int(OrderState.FILLED),
            volume_initial=volume,
            volume_current=0.0,
            price_open=pos.price_open,
            time_setup_ms=pos.time_ms,
            magic=pos.magic,
            comment=comment,
            sl=pos.sl,
            tp=pos.tp,
            price_current=price,
            time_done_ms=now,
            position_id=pos.ticket,
        )
    )
    fill = Fill(
        pos.symbol, not pos.buy, volume, price, 0.0, 0.0, pos.magic, comment, pos.ticket, now
    )
    deal = record_deal(venue, acct, fill, DealEntry.OUT, pos.ticket, pnl)
    if new:
        acct.add_position(_reopened(pos, new, rest, f"from #{pos.ticket}"[:limit], now))
    return Closed(pos.ticket, deal, new)


def _reopened(pos: Position, ticket: int, volume: float, comment: str, now: int) -> Position:
    """MT4: the rest of ``pos`` under a new ticket, at the original open price and time."""
    return Position(
        ticket=ticket,
        identifier=ticket,
        symbol=pos.symbol,
        buy=pos.buy,
        volume=volume,
        price_open=pos.price_open,
        time_ms=pos.time_ms,
        magic=pos.magic,
        comment=comment,
        sl=pos.sl,
        tp=pos.tp,
        time_update_ms=now,
        origin=pos.origin or pos.ticket,
    )
