"""The server's request checks, one method per step of reference §4.6, in that order.

Each method raises the :class:`~mtsim.errors.TradeError` of the first rule it finds broken;
the trade operations call them in step order, so when a request breaks two rules the earlier
step's code wins. Choices where the reference is open (⚠) are documented on each method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from mtgate.domain.enums import (
    ORDER_MODE_BITS,
    ExecutionMode,
    ExpirationFlag,
    Filling,
    OrderModeFlag,
    OrderType,
    Platform,
    SymbolFillingFlag,
    TimeInForce,
    TradeMode,
)
from mtgate.domain.limits import MT_DATETIME_MAX_MS
from mtgate.domain.symbols import (
    SymbolSpec,
    pending_frozen,
    pending_price_side_ok,
    price_normalized,
    stoplimit_side_ok,
    stops_distance_broken,
    volume_rule_broken,
)
from mtsim import errors
from mtsim.book import Pending
from mtsim.config import ServerConfig, end_of_day_ms, market_open
from mtsim.errors import Rule
from mtsim.prices import Quote

FILLING_NOT_GIVEN = -1
# Plain ints and tuples: IntFlag/IntEnum arithmetic costs microseconds on the market-order path.
_ORDER_TYPES = tuple(OrderType)
_MARKET_TYPES = frozenset((OrderType.BUY, OrderType.SELL))
_FILLING_FLAG = (int(SymbolFillingFlag.FOK), int(SymbolFillingFlag.IOC))
_BOC_FLAG = int(SymbolFillingFlag.BOC)
_FOK, _IOC, _RETURN, _BOC = (int(f) for f in Filling)
_MARKET_FILLINGS = (_FOK, _IOC, _RETURN)
_PRICED_EXE = (int(ExecutionMode.REQUEST), int(ExecutionMode.INSTANT))
_MARKET_EXE = int(ExecutionMode.MARKET)
_SL_FLAG, _TP_FLAG = int(OrderModeFlag.SL), int(OrderModeFlag.TP)


class Checks:
    """The validation steps of one server (platform and configuration)."""

    def __init__(
        self,
        platform: Platform,
        config: ServerConfig,
        closures: dict[str, tuple[int, int]] | None = None,
    ) -> None:
        self.platform = platform
        self.config = config
        self.mt4 = platform == Platform.MT4
        self.closures = {} if closures is None else closures
        """Injected market closures (mtsim.faults ``market_closed``): symbol → server-time
        window ``[from_ms, until_ms)``, shared with the server (its ``Venue``)."""
        self.closure_refusals = 0
        """Requests refused by an injected closure (the fault counters read it)."""

    def fail(self, rule: Rule, message: str, *, bid: float = 0.0, ask: float = 0.0) -> NoReturn:
        raise errors.refuse(self.platform, rule, message, bid=bid, ask=ask)

    # step 0 -------------------------------------------------------------------------------

    def order_type(self, value: int, *, pending: bool) -> OrderType:
        """The request names an order type its operation takes (MT4 has no stop-limit).

        ⚠ Checked before everything else: the terminal refuses a malformed request locally
        (MT4 OrderSend with a bad ``cmd``: 3; MT5 order_send: invalid request) before it
        looks at the connection."""
        allowed = range(2, 8) if pending else range(2)
        if value not in allowed:
            self.fail(
                errors.BAD_REQUEST,
                f"order type {value} is not a {'pending' if pending else 'market'} type",
            )
        order_type = _ORDER_TYPES[value]
        if self.mt4 and order_type.is_stop_limit:
            self.fail(errors.BAD_REQUEST, "MT4 has no stop-limit orders")
        return order_type

    # steps 1-4 ----------------------------------------------------------------------------

    def terminal(self) -> None:
        """Steps 1-2: the terminal is connected and algo trading is on."""
        if not self.config.connected:
            self.fail(errors.NO_CONNECTION, "no connection to the trade server")
        if not self.config.trade_allowed:
            self.fail(errors.ALGO_DISABLED, "AutoTrading disabled by client")

    def symbol(self, symbols: dict[str, SymbolSpec], name: str) -> SymbolSpec:
        """Step 3 (MT5 ⚠: 10013 with the symbol named, see :mod:`mtsim.errors`)."""
        spec = symbols.get(name)
        if spec is None:
            self.fail(errors.UNKNOWN_SYMBOL, f"unknown symbol {name!r}")
        return spec

    def session(self, symbol: str, now_ms: int) -> None:
        """Step 4: inside a trade session of the symbol (reference §8), and not inside a
        closure window injected as a fault (the same answer, 132 / 10018)."""
        if closed(self.closures, symbol, now_ms):
            self.closure_refusals += 1
            until = self.closures[symbol][1]
            self.fail(errors.MARKET_CLOSED, f"{symbol}: market is closed until {until}")
        if not market_open(self.config.sessions, symbol, now_ms):
            self.fail(errors.MARKET_CLOSED, f"{symbol}: market is closed")

    # steps 5-8 ----------------------------------------------------------------------------

    def trade_mode(self, spec: SymbolSpec, *, buy: bool, opening: bool) -> None:
        """Step 5. ``opening``: the order opens or increases exposure (a netting deal that
        only reduces the opposite position is a close and passes the direction limits).

        ⚠ A pending order always counts as opening."""
        mode = spec.trade_mode
        if mode == TradeMode.DISABLED:
            self.fail(errors.TRADE_DISABLED, f"{spec.name}: trade is disabled")
        if not opening:
            return
        if mode == TradeMode.CLOSE_ONLY:
            self.fail(errors.CLOSE_ONLY, f"{spec.name}: only closing is allowed")
        if mode == TradeMode.LONG_ONLY and not buy:
            self.fail(errors.LONG_ONLY, f"{spec.name}: only long positions are allowed")
        if mode == TradeMode.SHORT_ONLY and buy:
            self.fail(errors.SHORT_ONLY, f"{spec.name}: only short positions are allowed")

    def order_mode(self, spec: SymbolSpec, order_type: OrderType) -> None:
        """Step 6 (MT5 only): the symbol's ``order_mode`` allows the type (reference §3.4)."""
        if not self.mt4 and not spec.order_mode & ORDER_MODE_BITS[order_type]:
            self.fail(
                errors.ORDER_TYPE_DENIED, f"{spec.name}: {order_type.name} orders are not allowed"
            )

    def filling(self, spec: SymbolSpec, order_type: OrderType, filling: int) -> int:
        """Step 7 (MT5 only; reference §3.3): the policy the execution mode accepts.

        ⚠ ``filling`` -1 (not given) takes what a careful EA picks from SYMBOL_FILLING_MODE:
        RETURN for a pending order; for a market order the first of FOK, IOC, RETURN that the
        symbol's execution mode accepts. Pending orders accept RETURN always and FOK/IOC under
        the same flags as market orders; BOC only for limit and stop-limit orders with the
        BOC flag. Returns the policy used (MT4: RETURN, the field does not exist there)."""
        if self.mt4:
            return _RETURN
        if filling == FILLING_NOT_GIVEN:
            if order_type not in _MARKET_TYPES:
                return _RETURN
            for candidate in _MARKET_FILLINGS:
                if filling_allowed(spec, order_type, candidate):
                    return candidate
            self.fail(errors.INVALID_FILL, f"{spec.name}: no filling policy allowed")
        if not filling_allowed(spec, order_type, filling):
            self.fail(errors.INVALID_FILL, f"{spec.name}: filling {filling} is not allowed")
        return filling

    def expiration(
        self, spec: SymbolSpec, time_type: int, expiration_ms: int, now_ms: int
    ) -> tuple[int, int]:
        """Step 8 (reference §3.4): returns (time type, effective expiry ms, 0 = none).

        MT5 ⚠: ``time_type`` GTC with a non-zero ``expiration_ms`` is read as SPECIFIED (the
        protocol's "expiration_ms 0: good till cancelled"). DAY ends at the next server
        midnight, SPECIFIED_DAY at the midnight after the given day. MT4 ignores
        ``time_type``: any expiration needs ``expiration_allowed`` (147) and must be at least
        ``mt4_min_expiration_ms`` ahead (3, see :mod:`mtsim.errors`). Both platforms refuse
        first a value no MQL ``datetime`` holds (negative, or after 3000-12-31 23:59:59):
        10022 / 3."""
        if not 0 <= expiration_ms <= MT_DATETIME_MAX_MS:
            self.fail(
                errors.EXPIRATION_TIME,
                f"expiration {expiration_ms} is outside the datetime range (1970 to 3000)",
            )
        if self.mt4:
            if not expiration_ms:
                return int(TimeInForce.GTC), 0
            if not self.config.expiration_allowed:
                self.fail(errors.EXPIRATION_DENIED, "expirations are denied by the broker")
            if expiration_ms < now_ms + self.config.mt4_min_expiration_ms:
                self.fail(errors.EXPIRATION_TIME, "expiration is less than 10 minutes ahead")
            return int(TimeInForce.SPECIFIED), expiration_ms
        if time_type == TimeInForce.GTC and expiration_ms:
            time_type = TimeInForce.SPECIFIED
        if time_type not in range(4):
            self.fail(errors.EXPIRATION_DENIED, f"unknown time type {time_type}")
        if not spec.expiration_mode & ExpirationFlag(1 << time_type):
            self.fail(
                errors.EXPIRATION_DENIED,
                f"{spec.name}: {TimeInForce(time_type).name} is not allowed",
            )
        expires = {
            TimeInForce.GTC: 0,
            TimeInForce.DAY: end_of_day_ms(now_ms),
            TimeInForce.SPECIFIED: expiration_ms,
            TimeInForce.SPECIFIED_DAY: end_of_day_ms(expiration_ms) if expiration_ms else 0,
        }[TimeInForce(time_type)]
        if time_type >= TimeInForce.SPECIFIED and expires <= now_ms:
            self.fail(errors.EXPIRATION_TIME, f"expiration {expiration_ms} is not in the future")
        return time_type, expires

    # steps 9-12 ---------------------------------------------------------------------------

    def volume(self, spec: SymbolSpec, volume: float) -> None:
        """Step 9 (reference §4.5): min, max and step."""
        broken = volume_rule_broken(spec, volume)
        if broken is not None:
            self.fail(errors.INVALID_VOLUME, f"{spec.name}: {broken}")

    def price(self, spec: SymbolSpec, price: float, what: str = "price") -> None:
        """Step 10: normalized to digits and to the tick size (reference §4.1)."""
        if not price_normalized(spec, price):
            self.fail(errors.INVALID_PRICE, f"{spec.name}: {what} {price!r} is not normalized")

    def pending_price(
        self, spec: SymbolSpec, order_type: OrderType, price: float, stoplimit: float, quote: Quote
    ) -> None:
        """Step 10 for pending orders: normalized, on the right side of the market
        (reference §4.2; MT4 130, MT5 10015 ⚠), stop-limit price normalized and beyond the
        limit side of the stop price (MT5 10015)."""
        self.price(spec, price)
        if order_type.is_stop_limit:
            self.price(spec, stoplimit, "stoplimit")
            if not stoplimit_side_ok(order_type, price, stoplimit):
                self.fail(
                    errors.INVALID_PRICE,
                    f"{spec.name}: stoplimit {stoplimit} on the wrong side of {price}",
                )
        if not pending_price_side_ok(order_type, price, quote.bid, quote.ask):
            self.fail(
                errors.WRONG_SIDE,
                f"{spec.name}: {order_type.name} at {price} on the wrong side of the market",
            )

    def stops(
        self,
        spec: SymbolSpec,
        order_type: OrderType,
        price: float,
        sl: float,
        tp: float,
        stoplimit: float,
        quote: Quote,
    ) -> None:
        """Step 11 (reference §4.3): SL/TP normalized and allowed by ``order_mode`` (MT5
        ⚠: 10016), every distance at least the stops level (a distance equal to the level
        is accepted), and a pending price at least the level away from the market."""
        if not (sl or tp) and order_type in _MARKET_TYPES:
            return
        for value, flag, what in ((sl, _SL_FLAG, "sl"), (tp, _TP_FLAG, "tp")):
            if not value:
                continue
            if not price_normalized(spec, value):
                self.fail(errors.INVALID_STOPS, f"{spec.name}: {what} {value!r} is not normalized")
            if not self.mt4 and not spec.order_mode & flag:
                self.fail(errors.INVALID_STOPS, f"{spec.name}: {what} is not allowed")
        broken = stops_distance_broken(
            order_type,
            open_price=price,
            sl=sl,
            tp=tp,
            bid=quote.bid,
            ask=quote.ask,
            min_distance=spec.stops_level * spec.point,
            stoplimit=stoplimit,
        )
        if broken is not None:
            self.fail(
                errors.INVALID_STOPS,
                f"{spec.name}: {broken} closer than the stops level ({spec.stops_level} points)",
            )

    def freeze(self, spec: SymbolSpec, order: Pending, quote: Quote) -> None:
        """Step 12 (reference §4.4): a pending order within the freeze distance (equal
        included) cannot be modified or deleted."""
        if pending_frozen(
            order.type, order.price, quote.bid, quote.ask, spec.freeze_level * spec.point
        ):
            self.fail(
                errors.FROZEN,
                f"order {order.ticket} is within the freeze level ({spec.freeze_level} points)",
            )

    # step 16 ------------------------------------------------------------------------------

    def instant_price(
        self,
        spec: SymbolSpec,
        buy: bool,
        price: float,
        deviation: int,
        quote: Quote,
        recent: Sequence[Quote],
        now_ms: int,
    ) -> float:
        """Step 16 for instant/request execution: the fill price, or a requote.

        The fill is at the current Ask/Bid (⚠ not the requested price). MT5: when the current
        price is within ``deviation`` points of the requested one, else 10004 with the new
        prices. MT4 (reference §1.1): the requested price must be the current one, or one still
        in the recent stream (quoted at most ``recent_ms`` before the request) with the current
        price within ``slippage`` points of it; a price only quoted earlier (completely stale)
        or only on the other side (bid/ask confused) is a requote (138) whatever the slippage.
        A price never quoted was refused at step 10 (:meth:`mt4_quoted`)."""
        current = quote.ask if buy else quote.bid
        if not price or abs(price - current) <= spec.point * 1e-3:
            return current
        if self.mt4:
            same_side, recently, _ = _seen(spec, buy, price, recent, now_ms - self.config.recent_ms)
            if not (same_side and recently):
                self.fail(
                    errors.REQUOTE,
                    f"{spec.name}: price {price} is stale",
                    bid=quote.bid,
                    ask=quote.ask,
                )
        if abs(current - price) > deviation * spec.point + spec.point * 1e-3:
            self.fail(
                errors.REQUOTE,
                f"{spec.name}: price moved to {current}",
                bid=quote.bid,
                ask=quote.ask,
            )
        return current

    def mt4_quoted(
        self, spec: SymbolSpec, buy: bool, price: float, recent: Sequence[Quote]
    ) -> None:
        """Step 10, MT4 instant execution: a requested price the server never quoted, on
        either side, within its price history is invalid (129, reference §1.1)."""
        same_side, _, other_side = _seen(spec, buy, price, recent, 0)
        if not (same_side or other_side):
            self.fail(errors.INVALID_PRICE, f"{spec.name}: price {price} was never quoted")


def closed(closures: dict[str, tuple[int, int]], symbol: str, now_ms: int) -> bool:
    """Whether an injected closure window of ``symbol`` holds ``now_ms`` (server time)."""
    window = closures.get(symbol)
    return window is not None and window[0] <= now_ms < window[1]


def filling_allowed(spec: SymbolSpec, order_type: OrderType, filling: int) -> bool:
    """Reference §3.3: which policies each execution mode accepts."""
    if filling == _RETURN:
        return order_type.is_pending or spec.exe_mode != _MARKET_EXE
    if filling == _BOC:
        return (order_type.is_limit or order_type.is_stop_limit) and bool(
            spec.filling_mode & _BOC_FLAG
        )
    if filling not in (_FOK, _IOC):
        return False
    return spec.exe_mode in _PRICED_EXE or bool(spec.filling_mode & _FILLING_FLAG[filling])


def instant(spec: SymbolSpec) -> bool:
    """Whether the requested price and deviation matter (request/instant execution)."""
    return spec.exe_mode in _PRICED_EXE


def _seen(
    spec: SymbolSpec, buy: bool, price: float, recent: Sequence[Quote], since_ms: int
) -> tuple[bool, bool, bool]:
    """Whether ``price`` appears in the quote history on its own side (Ask for a buy), on
    its own side at or after ``since_ms``, and on the other side."""
    eps = spec.point * 1e-3
    same_side = recently = other_side = False
    for q in recent:
        same, other = (q.ask, q.bid) if buy else (q.bid, q.ask)
        if abs(same - price) <= eps:
            same_side = True
            recently = recently or q.time_ms >= since_ms
        elif abs(other - price) <= eps:
            other_side = True
    return same_side, recently, other_side
