"""Position operations: SL/TP change, close (full or partial) and close-by (reference §1.1,
§3.2, §3.6, §4.3, §4.4, §7), with the checks in the order of reference §4.6.

Like :mod:`mtsim.trading`, every operation runs all its checks before it changes anything;
the state changes are :mod:`mtsim.closing`'s. Choices where the reference is open (⚠):

- ``modify_position``: unchanged SL and TP are detected right after the ticket (MT4 1,
  MT5 10025), as for ``modify_order``. The stops level applies to every level the request
  sets (reference §4.3, market rows: a buy's SL/TP against Bid, a sell's against Ask), SL/TP
  disallowed by ``order_mode`` give 10016 (as for new orders, :meth:`Checks.stops`). The
  freeze level (reference §4.4, position rows) applies to the levels the position has now.
- ``close_position``: only DISABLED trade mode refuses a close (close-only, long-only and
  short-only allow it); ``order_mode`` is not checked (a close is not a new order type);
  MT5 picks the filling as for a market order without ``filling``; free margin is not
  checked (⚠ MT4 servers may answer 134 when closing one leg of a hedge raises the margin).
  Netting closes are the same opposite deal as on hedging: the volume may not exceed the
  position's (10038), so ``close_position`` never reverses.
- ``close_by``: no FIFO check (the rule is about closing order at NFA brokers, which also
  forbid hedging).
"""

from __future__ import annotations

from mtgate.domain.codes import MT5
from mtgate.domain.enums import DealReason, OrderModeFlag, OrderType
from mtgate.domain.symbols import SymbolSpec, position_frozen
from mtgate.protocol.messages import CloseBy, ClosePosition, ModifyPosition, TradeResult
from mtsim import closing, errors
from mtsim.book import VOLUME_DECIMALS, Account, Position
from mtsim.ledger import Venue
from mtsim.prices import Quote
from mtsim.trading import market_price, maybe_requote
from mtsim.validation import FILLING_NOT_GIVEN, Checks, instant

_EPS = 1e-9
_DONE_COMMENT = "Request executed"
_CLOSE_BY_FLAG = int(OrderModeFlag.CLOSE_BY)


def find_position(checks: Checks, acct: Account, ticket: int) -> Position:
    """Step 3: ``ticket`` is an open position of this account (see :mod:`mtsim.errors`)."""
    pos = acct.positions.get(ticket)
    if pos is not None:
        return pos
    if ticket in acct.pending:
        checks.fail(errors.BAD_REQUEST, f"ticket {ticket} is a pending order, not a position")
    if ticket in acct.identifiers:
        checks.fail(
            errors.UNKNOWN_TICKET,
            f"{ticket} is the identifier of position {acct.identifiers[ticket]}, not its ticket",
        )
    if ticket in acct.closed:
        checks.fail(errors.POSITION_CLOSED, f"position {ticket} is already closed")
    checks.fail(errors.UNKNOWN_TICKET, f"no position {ticket}")


def check_frozen(checks: Checks, spec: SymbolSpec, pos: Position, quote: Quote) -> None:
    """Step 12 (reference §4.4): a set SL or TP within the freeze distance (equal included)."""
    freeze = spec.freeze_level * spec.point
    if position_frozen(pos.buy, pos.sl, pos.tp, quote.bid, quote.ask, freeze):
        checks.fail(
            errors.FROZEN,
            f"position {pos.ticket} is within the freeze level ({spec.freeze_level} points)",
        )


def check_fifo(venue: Venue, checks: Checks, acct: Account, pos: Position) -> None:
    """Step 15: under a FIFO rule only a symbol's oldest open position may be closed
    (reference §1.3, §3.6: MT4 150, MT5 10045; never on netting accounts).

    Oldest by open time, then opening ticket (:attr:`Position.age`): an MT4 partial-close
    remainder has a new ticket but keeps its place. A scan of the symbol's positions, only
    when the rule is on."""
    if not venue.config.fifo or acct.netting:
        return
    oldest = min(acct.books[pos.symbol].positions.values(), key=lambda p: p.age)
    if oldest is not pos:
        checks.fail(
            errors.FIFO_CLOSE, f"{pos.symbol}: position {oldest.ticket} must be closed first"
        )


def _result(
    venue: Venue,
    quote: Quote,
    *,
    order: int,
    volume: float,
    price: float,
    deal: int = 0,
    position: int = 0,
    remainder: int = 0,
) -> TradeResult:
    mt4 = venue.mt4
    return TradeResult(
        code=0 if mt4 else MT5.DONE,
        order=order,
        volume=volume,
        price=price,
        bid=quote.bid,
        ask=quote.ask,
        time_ms=venue.clock.now_ms(),
        deal=0 if mt4 else deal,
        position=0 if mt4 else position,
        comment="" if mt4 else _DONE_COMMENT,
        remainder=remainder,
    )


def modify_position(
    venue: Venue, checks: Checks, acct: Account, req: ModifyPosition
) -> TradeResult:
    """New SL/TP of a position (TRADE_ACTION_SLTP / MT4 OrderModify of a market order)."""
    checks.terminal()
    pos = find_position(checks, acct, req.ticket)
    spec = venue.symbols[pos.symbol]
    tolerance = spec.point * 1e-3
    if abs(pos.sl - req.sl) <= tolerance and abs(pos.tp - req.tp) <= tolerance:
        checks.fail(errors.NO_CHANGES, f"position {pos.ticket}: no changes")
    checks.session(spec.name, venue.clock.now_ms())
    checks.trade_mode(spec, buy=pos.buy, opening=False)
    quote = venue.feed.quote(spec.name)
    side = OrderType.BUY if pos.buy else OrderType.SELL
    checks.stops(spec, side, 0.0, req.sl, req.tp, 0.0, quote)
    check_frozen(checks, spec, pos, quote)
    sl = round(req.sl, spec.digits) if req.sl else 0.0
    tp = round(req.tp, spec.digits) if req.tp else 0.0
    acct.set_stops(pos, sl=sl, tp=tp)
    pos.time_update_ms = venue.clock.now_ms()
    return _result(
        venue,
        quote,
        order=pos.ticket,
        volume=pos.volume,
        price=pos.price_open,
        position=pos.identifier,
    )


def _close_volume(checks: Checks, spec: SymbolSpec, pos: Position, requested: float) -> float:
    """Step 9: 0 = all; otherwise min/max/step, at most the position's volume (10038 / 131),
    and a remainder of at least ``volume_min`` (⚠ 10014 / 131)."""
    if not requested:
        return pos.volume
    checks.volume(spec, requested)
    volume = round(requested, VOLUME_DECIMALS)
    if volume > pos.volume + _EPS:
        checks.fail(
            errors.INVALID_CLOSE_VOLUME,
            f"close volume {volume:g} exceeds position {pos.ticket}'s {pos.volume:g}",
        )
    rest = round(pos.volume - volume, VOLUME_DECIMALS)
    if 0 < rest < spec.volume_min - _EPS:
        checks.fail(
            errors.INVALID_VOLUME,
            f"the remaining {rest:g} lots would be below the minimum {spec.volume_min:g}",
        )
    return min(volume, pos.volume)


def close_position(
    venue: Venue,
    checks: Checks,
    acct: Account,
    req: ClosePosition,
    reason: DealReason = DealReason.EXPERT,
) -> TradeResult:
    """Close all or part of a position at market: Bid for a buy, Ask for a sell (reference
    §4.2). Under instant/request execution a given ``price`` must hold within ``deviation``
    (requote), as for a market order; under market execution it is ignored."""
    if req.volume < 0 or req.price < 0 or req.deviation < 0:
        checks.fail(errors.BAD_REQUEST, "volume, price and deviation must not be negative")
    checks.terminal()
    pos = find_position(checks, acct, req.ticket)
    spec = venue.symbols[pos.symbol]
    now = venue.clock.now_ms()
    checks.session(spec.name, now)
    checks.trade_mode(spec, buy=pos.buy, opening=False)
    closing_type = OrderType.SELL if pos.buy else OrderType.BUY
    checks.filling(spec, closing_type, FILLING_NOT_GIVEN)
    volume = _close_volume(checks, spec, pos, req.volume)
    quote = venue.feed.quote(spec.name)
    by_price = instant(spec)
    if by_price and req.price:
        checks.price(spec, req.price)
        if venue.mt4:
            checks.mt4_quoted(spec, not pos.buy, req.price, venue.feed.recent(spec.name))
    check_frozen(checks, spec, pos, quote)
    check_fifo(venue, checks, acct, pos)
    if by_price:
        recent = venue.feed.recent(spec.name)
        price = checks.instant_price(
            spec, not pos.buy, req.price, req.deviation, quote, recent, now
        )
        maybe_requote(venue, checks, spec, quote)
    else:
        price = market_price(venue, spec, not pos.buy, quote)
    identifier = pos.identifier
    closed = closing.close_volume(
        venue,
        acct,
        spec,
        pos,
        volume=volume,
        price=price,
        reason=reason,
        comment="" if venue.mt4 else venue.request_comment(req.comment),
    )
    return _result(
        venue,
        quote,
        order=closed.order,
        volume=volume,
        price=price,
        deal=closed.deal.ticket,
        position=identifier,
        remainder=closed.remainder,
    )


def close_by(venue: Venue, checks: Checks, acct: Account, req: CloseBy) -> TradeResult:
    """Close a position by an opposite one of the same symbol (MT4 OrderCloseBy / MT5
    TRADE_ACTION_CLOSE_BY, hedging only). ``price`` of the result: the offset price (the
    open price of ``opposite``); ``volume``: the volume closed on each side."""
    checks.terminal()
    if acct.netting:
        checks.fail(errors.BAD_REQUEST, "close-by needs a hedging account")
    if req.ticket == req.opposite:
        checks.fail(errors.BAD_REQUEST, "a position cannot be closed by itself")
    pos = find_position(checks, acct, req.ticket)
    by = find_position(checks, acct, req.opposite)
    if by.symbol != pos.symbol:
        checks.fail(errors.BAD_REQUEST, f"{pos.ticket} and {by.ticket} have different symbols")
    if by.buy == pos.buy:
        checks.fail(errors.BAD_REQUEST, f"{pos.ticket} and {by.ticket} are not opposite")
    spec = venue.symbols[pos.symbol]
    checks.session(spec.name, venue.clock.now_ms())
    checks.trade_mode(spec, buy=pos.buy, opening=False)
    if not venue.mt4 and not spec.order_mode & _CLOSE_BY_FLAG:
        checks.fail(errors.ORDER_TYPE_DENIED, f"{spec.name}: close-by orders are not allowed")
    quote = venue.feed.quote(spec.name)
    check_frozen(checks, spec, pos, quote)
    check_frozen(checks, spec, by, quote)
    identifier, volume, price = pos.identifier, min(pos.volume, by.volume), by.price_open
    closed = closing.close_by(venue, acct, spec, pos, by)
    return _result(
        venue,
        quote,
        order=closed.order,
        volume=volume,
        price=price,
        deal=closed.deal.ticket,
        position=identifier,
        remainder=closed.remainder,
    )
