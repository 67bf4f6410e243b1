"""What the server does on its own as prices move and time passes: pending activation, SL/TP,
expiration (reference §3.4, §4.2, §7).

Activation (reference §4.2): Buy Limit / Buy Stop trigger when Ask reaches the order price,
Sell Limit / Sell Stop when Bid does — at the price, not one tick before. Fill price ⚠: a
limit order fills at its own price (a limit never fills worse), a stop order at the market
price that triggered it (a gap fills beyond the stop). A stop-limit order (MT5), when its stop
price is reached, becomes the limit order of its direction at ``stoplimit`` and **keeps its
ticket** ⚠ (the order's type changes, as MT5 reports an order update rather than a new order);
the limit then fills by the limit rule, possibly on the same quote.

SL/TP (reference §4.2): a buy position's SL/TP trigger on Bid, a sell's on Ask. ⚠ SL closes at
the market price that triggered it; TP at its own level. Deals carry reason SL/TP and the
comment markers of :mod:`mtsim.ledger`.

A pending order whose activation finds too little free margin, or an opposite position while
hedging is prohibited, is cancelled with state REJECTED (MT5 10041 REJECT_CANCEL: the order
is cancelled, the bridge's state machine reads it as a rejection).

Expiration: an order whose effective expiry is at or before the time seen leaves the book
with state EXPIRED. Triggers run only inside the symbol's trade sessions; expirations always.
"""

from __future__ import annotations

import heapq

from mtgate.domain.enums import DealReason, OrderState
from mtgate.domain.symbols import SymbolSpec
from mtsim.book import Account, Pending, Position
from mtsim.ledger import (
    Fill,
    Venue,
    activated_type,
    close_position,
    end_pending,
    execute,
    fill_position_id,
    modify_pending,
)
from mtsim.money import figures, free_margin_after
from mtsim.prices import Quote
from mtsim.triggers import Fired, Kind

_MAX_ROUNDS = 16
"""Activations can arm new levels (a stop-limit's limit, a new position's SL/TP) that the same
quote reaches; a few rounds settle any real case."""


def expire_due(venue: Venue, acct: Account, now_ms: int) -> None:
    heap = acct.expiries
    while heap and heap[0][0] <= now_ms:
        _, ticket, version = heapq.heappop(heap)
        order = acct.pending.get(ticket)
        if order is not None and order.version == version:
            end_pending(venue, acct, order, OrderState.EXPIRED)


def process_quote(venue: Venue, acct: Account, spec: SymbolSpec, quote: Quote) -> None:
    """Act on every pending order and SL/TP of ``spec`` that ``quote`` reaches."""
    book = acct.books.get(spec.name)
    if book is None:
        return
    if book.triggers.reached(quote.bid, quote.ask):  # the usual quote reaches nothing
        for _ in range(_MAX_ROUNDS):
            fired = book.triggers.fired(quote.bid, quote.ask)
            if not fired:
                break
            for entry in fired:
                _act(venue, acct, spec, entry, quote)
    if book.triggers.needs_compaction():
        book.triggers.compact(lambda kind, ticket, version: _live(acct, kind, ticket, version))


def _live(acct: Account, kind: int, ticket: int, version: int) -> bool:
    obj: Pending | Position | None = (
        acct.pending.get(ticket) if kind == Kind.ORDER else acct.positions.get(ticket)
    )
    return obj is not None and obj.version == version


def _act(venue: Venue, acct: Account, spec: SymbolSpec, entry: Fired, quote: Quote) -> None:
    if entry.kind == Kind.ORDER:
        order = acct.pending.get(entry.ticket)
        if order is not None and order.version == entry.version:
            _activate(venue, acct, spec, order, quote)
        return
    pos = acct.positions.get(entry.ticket)
    if pos is None or pos.version != entry.version:
        return
    if entry.kind == Kind.SL:
        price, reason = (quote.bid if pos.buy else quote.ask), DealReason.SL
    else:
        price, reason = pos.tp, DealReason.TP
    close_position(venue, acct, spec, pos, price=price, reason=reason, level=entry.level)


def _activate(venue: Venue, acct: Account, spec: SymbolSpec, order: Pending, quote: Quote) -> None:
    if order.type.is_stop_limit:
        modify_pending(
            venue,
            acct,
            order,
            type=activated_type(order.type),
            price=order.stoplimit,
            stoplimit=0.0,
        )
        return
    buy = order.type.is_buy
    price = order.price if order.type.is_limit else (quote.ask if buy else quote.bid)
    if _refused(venue, acct, spec, order, price, quote):
        end_pending(venue, acct, order, OrderState.REJECTED)
        return
    end_pending(venue, acct, order, OrderState.FILLED, fill_position_id(acct, order))
    fill = Fill(
        symbol=order.symbol,
        buy=buy,
        volume=order.volume,
        price=price,
        sl=order.sl,
        tp=order.tp,
        magic=order.magic,
        comment=order.comment,
        order=order.ticket,
        time_ms=venue.clock.now_ms(),
    )
    execute(venue, acct, spec, fill)


def _refused(
    venue: Venue, acct: Account, spec: SymbolSpec, order: Pending, price: float, quote: Quote
) -> bool:
    """Whether the server cancels the activation: no margin, or a prohibited hedge."""
    buy = order.type.is_buy
    if not venue.config.hedging_allowed and not acct.netting:
        book = acct.books.get(order.symbol)
        if book is not None and book.side(not buy).count:
            return True
    now = figures(acct, venue.symbols, venue.feed)
    close = quote.bid if buy else quote.ask
    free = free_margin_after(
        acct, spec, now, buy=buy, volume=order.volume, price=price, close=close
    )
    return free is not None and free < 0
