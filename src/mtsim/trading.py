"""Trade requests: market orders, pending orders, modify and cancel (reference §4.6, §7).

Each operation runs the checks of :class:`~mtsim.validation.Checks` in the order of reference
§4.6 and changes nothing until all of them passed, so a refused request leaves no trace but
its entry in the server's ``executed`` log.

Execution (reference §8): under market (and exchange) execution the requested price and
deviation are ignored and the order fills at the current Ask/Bid, moved by the seeded
slippage of ``ServerConfig.slippage_points``; under instant (and request) execution the
requested price must be honoured within the deviation, else a requote (see
:meth:`~mtsim.validation.Checks.instant_price`).
"""

from __future__ import annotations

import msgspec

from mtgate.domain.codes import MT5
from mtgate.domain.enums import DealReason, Filling, OrderState, TimeInForce
from mtgate.domain.symbols import SymbolSpec
from mtgate.protocol.messages import (
    CancelOrder,
    MarketOrder,
    ModifyOrder,
    PendingOrder,
    TradeResult,
)
from mtsim import errors
from mtsim.book import VOLUME_DECIMALS, Account, Pending
from mtsim.faults import partial_volume
from mtsim.ledger import (
    Fill,
    Venue,
    end_pending,
    execute,
    market_order_report,
    modify_pending,
    place_pending,
)
from mtsim.money import figures, free_margin_after
from mtsim.prices import Quote
from mtsim.validation import Checks, instant

_EPS = 1e-9
DONE_PARTIAL = 10010
"""MT5 TRADE_RETCODE_DONE_PARTIAL: an IOC order filled in part (reference §3.3, §3.7)."""
_PARTIAL_COMMENT = "Request executed partially"
_DONE_COMMENT = "Request executed"
_PLACED_COMMENT = "Order placed"


def _opening_volume(acct: Account, symbol: str, buy: bool, volume: float) -> float:
    """The part of a deal that opens or increases exposure (netting: beyond the opposite
    position it closes)."""
    if not acct.netting:
        return volume
    pos = acct.netting_position(symbol)
    if pos is None or pos.buy == buy:
        return volume
    return max(0.0, round(volume - pos.volume, VOLUME_DECIMALS))


def _adds_position(acct: Account, symbol: str) -> bool:
    """Whether a deal adds to the number of open positions (hedging: always; netting: only
    when the symbol has no position yet, a reversal replaces the position)."""
    return not acct.netting or acct.netting_position(symbol) is None


def check_margin(
    venue: Venue,
    checks: Checks,
    acct: Account,
    spec: SymbolSpec,
    buy: bool,
    volume: float,
    price: float,
    close: float,
) -> None:
    """Step 13: free margin after the deal must not be negative when it adds margin
    (reference §5.2: 10019 / 134)."""
    now = figures(acct, venue.symbols, venue.feed)
    free = free_margin_after(acct, spec, now, buy=buy, volume=volume, price=price, close=close)
    if free is not None and free < -_EPS:
        checks.fail(errors.NO_MONEY, f"not enough money: free margin after the trade {free:.2f}")


def _limit(*values: int) -> int:
    """The tightest non-zero limit (0: none)."""
    set_values = [v for v in values if v > 0]
    return min(set_values) if set_values else 0


def check_limits(
    venue: Venue,
    checks: Checks,
    acct: Account,
    spec: SymbolSpec,
    *,
    buy: bool,
    pending: bool,
    opening: float,
) -> None:
    """Step 14: order and position counts, symbol volume limit (reference §4.5 #3, §4.6 #14).

    MT4 counts open and pending orders together (148). MT5 counts pending orders against
    ``ACCOUNT_LIMIT_ORDERS`` / ``max_orders`` (10033) and positions against ``max_orders``
    (10040); ``volume_limit`` caps one direction's positions plus pending orders (10034)."""
    cfg = venue.config
    if venue.mt4:
        limit = _limit(cfg.max_orders, acct.limit_orders)
        if limit and len(acct.positions) + len(acct.pending) >= limit:
            checks.fail(errors.LIMIT_ORDERS, f"open and pending orders limit {limit} reached")
        return
    if pending:
        limit = _limit(cfg.max_orders, acct.limit_orders)
        if limit and len(acct.pending) >= limit:
            checks.fail(errors.LIMIT_ORDERS, f"pending orders limit {limit} reached")
    elif (
        cfg.max_orders and len(acct.positions) >= cfg.max_orders and _adds_position(acct, spec.name)
    ):
        checks.fail(errors.LIMIT_POSITIONS, f"open positions limit {cfg.max_orders} reached")
    if spec.volume_limit and opening > _EPS:
        book = acct.books.get(spec.name)
        held = 0.0
        if book is not None:
            held = book.side(buy).volume + (
                book.pending_buy_volume if buy else book.pending_sell_volume
            )
        if held + opening > spec.volume_limit + _EPS:
            checks.fail(
                errors.LIMIT_VOLUME, f"{spec.name}: volume limit {spec.volume_limit:g} reached"
            )


def check_hedge(venue: Venue, checks: Checks, acct: Account, symbol: str, buy: bool) -> None:
    """Step 15: a position opposite to an open one when hedging is prohibited (149/10046).
    FIFO (150/10045) applies to closing (:func:`mtsim.positions.check_fifo`)."""
    if venue.config.hedging_allowed or acct.netting:
        return
    book = acct.books.get(symbol)
    if book is not None and book.side(not buy).count:
        checks.fail(errors.HEDGE_PROHIBITED, f"{symbol}: opposite positions are prohibited")


def market_price(venue: Venue, spec: SymbolSpec, buy: bool, quote: Quote) -> float:
    """Market execution: the current Ask/Bid moved by a seeded slippage in whole ticks."""
    base = quote.ask if buy else quote.bid
    max_ticks = int(venue.config.slippage_points * spec.point / spec.tick_size + _EPS)
    if max_ticks <= 0:
        return base
    ticks = venue.rng.randint(-max_ticks, max_ticks)
    delta = ticks * spec.tick_size
    return round(max(base + delta if buy else base - delta, spec.tick_size), spec.digits)


def maybe_requote(venue: Venue, checks: Checks, spec: SymbolSpec, quote: Quote) -> None:
    probability = venue.config.requote_probability
    if probability > 0 and venue.rng.random() < probability:
        checks.fail(errors.REQUOTE, f"{spec.name}: requote", bid=quote.bid, ask=quote.ask)


def _result(
    venue: Venue,
    *,
    placed: bool,
    order: int,
    volume: float,
    price: float,
    quote: Quote,
    deal: int = 0,
    position: int = 0,
) -> TradeResult:
    if venue.mt4:
        code, comment = 0, ""
    else:
        code = MT5.PLACED if placed else MT5.DONE
        comment = _PLACED_COMMENT if placed else _DONE_COMMENT
    return TradeResult(
        code=code,
        order=order,
        volume=volume,
        price=price,
        bid=quote.bid,
        ask=quote.ask,
        time_ms=venue.clock.now_ms(),
        # docs/protocol.md §6, §10: MT4 has no deal or position ids; its results carry 0.
        deal=0 if venue.mt4 else deal,
        position=0 if venue.mt4 else position,
        comment=comment,
    )


def market_order(
    venue: Venue,
    checks: Checks,
    acct: Account,
    req: MarketOrder,
    reason: DealReason = DealReason.EXPERT,
    liquidity: float | None = None,
) -> TradeResult:
    """Buy or sell at market (TRADE_ACTION_DEAL / MT4 OrderSend OP_BUY, OP_SELL).

    ``liquidity`` (MT5 only; the ``partial_fill`` fault of :mod:`mtsim.faults`): the market
    can fill only this share of the volume, once every check passed. IOC fills that (rounded
    down to the step, at least one step) and cancels the rest: 10010 with the filled volume;
    FOK fills nothing (10006 ⚠); RETURN is not modelled and fills in full (reference §3.3)."""
    order_type = checks.order_type(req.order_type, pending=False)
    buy = order_type.is_buy
    checks.terminal()
    spec = checks.symbol(venue.symbols, req.symbol)
    now = venue.clock.now_ms()
    checks.session(spec.name, now)
    quote = venue.feed.quote(spec.name)
    opening = _opening_volume(acct, spec.name, buy, req.volume)
    checks.trade_mode(spec, buy=buy, opening=opening > _EPS)
    checks.order_mode(spec, order_type)
    filling = checks.filling(spec, order_type, req.filling)
    checks.volume(spec, req.volume)
    volume = round(req.volume, VOLUME_DECIMALS)
    by_price = instant(spec)
    if by_price and req.price:
        checks.price(spec, req.price)
        if venue.mt4:
            checks.mt4_quoted(spec, buy, req.price, venue.feed.recent(spec.name))
    checks.stops(spec, order_type, 0.0, req.sl, req.tp, 0.0, quote)
    current = quote.ask if buy else quote.bid
    check_margin(venue, checks, acct, spec, buy, volume, current, quote.bid if buy else quote.ask)
    check_limits(venue, checks, acct, spec, buy=buy, pending=False, opening=opening)
    check_hedge(venue, checks, acct, spec.name, buy)
    if by_price:
        recent = venue.feed.recent(spec.name)
        price = checks.instant_price(spec, buy, req.price, req.deviation, quote, recent, now)
        maybe_requote(venue, checks, spec, quote)
    else:
        price = market_price(venue, spec, buy, quote)
    filled = volume
    if liquidity is not None and not venue.mt4:
        filled = partial_volume(volume, liquidity, spec.volume_step, spec.volume_min)
        if filled < volume - _EPS and filling == Filling.FOK:
            checks.fail(
                errors.FOK_UNFILLED,
                f"{spec.name}: only {filled:g} of {volume:g} lots available (FOK)",
                bid=quote.bid,
                ask=quote.ask,
            )
        if filling != Filling.IOC:
            filled = volume
    result = _fill_market(venue, acct, spec, req, buy, filled, price, quote, now, reason, volume)
    if filled < volume - _EPS:
        return _partial(result)
    return result


def _partial(result: TradeResult) -> TradeResult:
    """The answer of an IOC order filled in part: a success with the filled volume."""
    return msgspec.structs.replace(result, code=DONE_PARTIAL, comment=_PARTIAL_COMMENT)


def _fill_market(
    venue: Venue,
    acct: Account,
    spec: SymbolSpec,
    req: MarketOrder,
    buy: bool,
    volume: float,
    price: float,
    quote: Quote,
    now: int,
    reason: DealReason,
    requested: float = 0.0,
) -> TradeResult:
    """Execute a market order that passed every check (deal ``reason``: EXPERT for the
    bridge's orders, CLIENT for manual trades), record it, and answer. ``volume`` is what
    fills; ``requested`` (when larger) the request's volume, for the history order."""
    fill = Fill(
        symbol=spec.name,
        buy=buy,
        volume=volume,
        price=price,
        sl=round(req.sl, spec.digits) if req.sl else 0.0,
        tp=round(req.tp, spec.digits) if req.tp else 0.0,
        magic=req.magic,
        comment=venue.request_comment(req.comment),
        order=venue.tickets.order(),
        time_ms=now,
        reason=reason,
    )
    filled = execute(venue, acct, spec, fill)
    if not venue.mt4:
        acct.record_order(market_order_report(fill, filled, requested))
    deal = 0 if venue.mt4 else filled.deal.ticket
    return _result(
        venue,
        placed=False,
        order=fill.order,
        volume=volume,
        price=price,
        quote=quote,
        deal=deal,
        position=filled.position,
    )


def pending_order(venue: Venue, checks: Checks, acct: Account, req: PendingOrder) -> TradeResult:
    """Place a pending order (TRADE_ACTION_PENDING / MT4 OrderSend OP_BUYLIMIT..OP_SELLSTOP).

    ⚠ Margin is checked at placement as if the order filled now at its price (what
    order_check reports); at activation it is checked again (see :mod:`mtsim.watch`)."""
    order_type = checks.order_type(req.order_type, pending=True)
    buy = order_type.is_buy
    checks.terminal()
    spec = checks.symbol(venue.symbols, req.symbol)
    now = venue.clock.now_ms()
    checks.session(spec.name, now)
    checks.trade_mode(spec, buy=buy, opening=True)
    checks.order_mode(spec, order_type)
    filling = checks.filling(spec, order_type, req.filling)
    time_type, expires = checks.expiration(spec, req.time_type, req.expiration_ms, now)
    checks.volume(spec, req.volume)
    volume = round(req.volume, VOLUME_DECIMALS)
    quote = venue.feed.quote(spec.name)
    stoplimit = req.stoplimit if order_type.is_stop_limit else 0.0
    checks.pending_price(spec, order_type, req.price, stoplimit, quote)
    checks.stops(spec, order_type, req.price, req.sl, req.tp, stoplimit, quote)
    fill_price = stoplimit or req.price
    check_margin(venue, checks, acct, spec, buy, volume, fill_price, fill_price)
    check_limits(venue, checks, acct, spec, buy=buy, pending=True, opening=volume)
    order = Pending(
        ticket=venue.tickets.order(),
        symbol=spec.name,
        type=order_type,
        volume=volume,
        price=round(req.price, spec.digits),
        stoplimit=round(stoplimit, spec.digits),
        sl=round(req.sl, spec.digits),
        tp=round(req.tp, spec.digits),
        time_type=time_type,
        expiration_ms=req.expiration_ms,
        expires_at_ms=expires,
        filling=filling,
        magic=req.magic,
        comment=venue.request_comment(req.comment),
        time_setup_ms=now,
    )
    place_pending(venue, acct, order)
    return _result(
        venue, placed=True, order=order.ticket, volume=volume, price=order.price, quote=quote
    )


def _find_pending(venue: Venue, checks: Checks, acct: Account, ticket: int) -> Pending:
    """Step 3 for modify/cancel: the ticket is a pending order of this account.

    A position's ticket is a bad request here: positions have their own operations
    (:mod:`mtsim.positions`)."""
    order = acct.pending.get(ticket)
    if order is not None:
        return order
    if ticket in acct.positions:
        checks.fail(errors.BAD_REQUEST, f"ticket {ticket} is a position, not a pending order")
    checks.fail(errors.UNKNOWN_TICKET, f"no pending order {ticket}")


def _requested_time_type(venue: Venue, req: ModifyOrder) -> int:
    if venue.mt4:
        return int(TimeInForce.SPECIFIED if req.expiration_ms else TimeInForce.GTC)
    if req.time_type == TimeInForce.GTC and req.expiration_ms:
        return int(TimeInForce.SPECIFIED)
    return req.time_type


def _unchanged(venue: Venue, spec: SymbolSpec, order: Pending, req: ModifyOrder) -> bool:
    def same(a: float, b: float) -> bool:
        return abs(a - b) <= spec.point * 1e-3

    stoplimit = req.stoplimit if order.type.is_stop_limit else 0.0
    return (
        same(order.price, req.price)
        and same(order.sl, req.sl)
        and same(order.tp, req.tp)
        and same(order.stoplimit, stoplimit)
        and order.expiration_ms == req.expiration_ms
        and order.time_type == _requested_time_type(venue, req)
    )


def modify_order(venue: Venue, checks: Checks, acct: Account, req: ModifyOrder) -> TradeResult:
    """Change a pending order (TRADE_ACTION_MODIFY / MT4 OrderModify).

    ⚠ Unchanged values (MT4 1, MT5 10025) are detected right after the ticket: the terminal
    knows the order's values without asking the server. Only DISABLED trade mode refuses a
    modification; the direction limits apply to new exposure."""
    checks.terminal()
    order = _find_pending(venue, checks, acct, req.ticket)
    spec = venue.symbols[order.symbol]
    if _unchanged(venue, spec, order, req):
        checks.fail(errors.NO_CHANGES, f"order {order.ticket}: no changes")
    now = venue.clock.now_ms()
    checks.session(spec.name, now)
    checks.trade_mode(spec, buy=order.type.is_buy, opening=False)
    time_type, expires = checks.expiration(spec, req.time_type, req.expiration_ms, now)
    quote = venue.feed.quote(spec.name)
    stoplimit = req.stoplimit if order.type.is_stop_limit else 0.0
    checks.pending_price(spec, order.type, req.price, stoplimit, quote)
    checks.stops(spec, order.type, req.price, req.sl, req.tp, stoplimit, quote)
    checks.freeze(spec, order, quote)
    modify_pending(
        venue,
        acct,
        order,
        price=round(req.price, spec.digits),
        stoplimit=round(stoplimit, spec.digits),
        sl=round(req.sl, spec.digits),
        tp=round(req.tp, spec.digits),
        time_type=time_type,
        expiration_ms=req.expiration_ms,
        expires_at_ms=expires,
    )
    return _result(
        venue, placed=False, order=order.ticket, volume=order.volume, price=order.price, quote=quote
    )


def cancel_order(venue: Venue, checks: Checks, acct: Account, req: CancelOrder) -> TradeResult:
    """Delete a pending order (TRADE_ACTION_REMOVE / MT4 OrderDelete): CANCELED in history."""
    checks.terminal()
    order = _find_pending(venue, checks, acct, req.ticket)
    spec = venue.symbols[order.symbol]
    checks.session(spec.name, venue.clock.now_ms())
    checks.trade_mode(spec, buy=order.type.is_buy, opening=False)
    quote = venue.feed.quote(spec.name)
    checks.freeze(spec, order, quote)
    end_pending(venue, acct, order, OrderState.CANCELED)
    return _result(
        venue, placed=False, order=order.ticket, volume=order.volume, price=order.price, quote=quote
    )
