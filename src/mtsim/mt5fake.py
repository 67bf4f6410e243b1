"""A strict stand-in for the ``MetaTrader5`` Python package, over the simulator's trade server.

The real package (Windows only) talks to one running terminal through IPC. This module gives
the MetaTrader5 agent (:mod:`mtgate.agent`) the same surface on Linux, so that the agent's
mapping is tested against documented behaviour rather than against itself
(docs/terminals.md, reference terminal-side.md §5.6):

- the functions the agent calls, with the documented positional and keyword rules
  (``order_send(request, /)``, ``positions_get(*, symbol=, group=, ticket=)``,
  ``history_deals_get(date_from, date_to, *, group=, ticket=, position=)`` taking ``datetime``
  or int seconds), and the documented constants;
- results as named tuples with the documented field names and order (``time`` in seconds,
  ``*_msc`` in milliseconds, ``OrderSendResult.request`` a nested ``TradeRequest``), and no
  field the real package lacks: ``OrderSendResult`` has no position id and no time;
- the error model: a failed call returns ``None`` and sets ``last_error()``; nothing works
  before ``initialize()`` or after ``shutdown()`` (an IPC code); a malformed request (an unknown
  key, a value of the wrong Python type, a field its action requires missing, per the
  MqlTradeRequest table) is refused with ``RES_E_INVALID_PARAMS`` and reaches no server;
- the trade server's answers through :class:`mtsim.server.TradeServer`: its retcodes come back
  in ``OrderSendResult.retcode`` (a refusal is a result, not ``None``);
- terminal conditions as switches: Algo Trading off (10027), ``tradeapi_disabled`` (10027),
  the terminal disconnected from its server (``terminal_info().connected`` false, 10031), an
  IPC timeout *after* the request executed (``None`` and -10005 while the order exists), slow
  calls, and a deal that reaches the history only some calls after its trade;
- one caller at a time: a call made while another runs (the package is not thread-safe)
  raises :class:`ConcurrentCallError`, so an agent that calls from two threads fails its tests.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

from mtgate.domain.symbols import SymbolSpec
from mtgate.protocol import messages as m
from mtsim.errors import TradeError
from mtsim.server import TradeServer

T = TypeVar("T")

# --- constants (reference terminal-side.md §5.3; mql5.com/en/docs/constants) ----------------

ORDER_TYPE_BUY, ORDER_TYPE_SELL = 0, 1
ORDER_TYPE_BUY_LIMIT, ORDER_TYPE_SELL_LIMIT = 2, 3
ORDER_TYPE_BUY_STOP, ORDER_TYPE_SELL_STOP = 4, 5
ORDER_TYPE_BUY_STOP_LIMIT, ORDER_TYPE_SELL_STOP_LIMIT = 6, 7
ORDER_TYPE_CLOSE_BY = 8
ORDER_FILLING_FOK, ORDER_FILLING_IOC, ORDER_FILLING_RETURN, ORDER_FILLING_BOC = 0, 1, 2, 3
ORDER_TIME_GTC, ORDER_TIME_DAY, ORDER_TIME_SPECIFIED, ORDER_TIME_SPECIFIED_DAY = 0, 1, 2, 3
TRADE_ACTION_DEAL = 1
TRADE_ACTION_PENDING = 5
TRADE_ACTION_SLTP = 6
TRADE_ACTION_MODIFY = 7
TRADE_ACTION_REMOVE = 8
TRADE_ACTION_CLOSE_BY = 10
ACCOUNT_MARGIN_MODE_RETAIL_NETTING = 0
ACCOUNT_MARGIN_MODE_EXCHANGE = 1
ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2
TRADE_RETCODE_PLACED = 10008
TRADE_RETCODE_DONE = 10009
TRADE_RETCODE_DONE_PARTIAL = 10010
TRADE_RETCODE_INVALID = 10013
TRADE_RETCODE_INVALID_PRICE = 10015
TRADE_RETCODE_CLIENT_DISABLES_AT = 10027
TRADE_RETCODE_CONNECTION = 10031

_EXECUTION_REQUEST, _EXECUTION_INSTANT = 0, 1  # SYMBOL_TRADE_EXECUTION_*

RES_S_OK = 1
RES_E_FAIL = -1
RES_E_INVALID_PARAMS = -2
RES_E_NOT_FOUND = -4
RES_E_AUTO_TRADING_DISABLED = -8
RES_E_INTERNAL_FAIL_SEND = -10001
RES_E_INTERNAL_FAIL_RECEIVE = -10002
RES_E_INTERNAL_FAIL_INIT = -10003
RES_E_INTERNAL_FAIL_TIMEOUT = -10005

# --- result named tuples (reference terminal-side.md §5.2) ---------------------------------


class TradeRequest(NamedTuple):
    action: int
    magic: int
    order: int
    symbol: str
    volume: float
    price: float
    stoplimit: float
    sl: float
    tp: float
    deviation: int
    type: int
    type_filling: int
    type_time: int
    expiration: int
    comment: str
    position: int
    position_by: int


class OrderSendResult(NamedTuple):
    retcode: int
    deal: int
    order: int
    volume: float
    price: float
    bid: float
    ask: float
    comment: str
    request_id: int
    retcode_external: int
    request: TradeRequest


class TradePosition(NamedTuple):
    ticket: int
    time: int
    time_msc: int
    time_update: int
    time_update_msc: int
    type: int
    magic: int
    identifier: int
    reason: int
    volume: float
    price_open: float
    sl: float
    tp: float
    price_current: float
    swap: float
    profit: float
    symbol: str
    comment: str
    external_id: str


class TradeOrder(NamedTuple):
    ticket: int
    time_setup: int
    time_setup_msc: int
    time_done: int
    time_done_msc: int
    time_expiration: int
    type: int
    type_time: int
    type_filling: int
    state: int
    magic: int
    position_id: int
    position_by_id: int
    reason: int
    volume_initial: float
    volume_current: float
    price_open: float
    sl: float
    tp: float
    price_current: float
    price_stoplimit: float
    symbol: str
    comment: str
    external_id: str


class TradeDeal(NamedTuple):
    ticket: int
    order: int
    time: int
    time_msc: int
    type: int
    entry: int
    magic: int
    position_id: int
    reason: int
    volume: float
    price: float
    commission: float
    swap: float
    profit: float
    fee: float
    symbol: str
    comment: str
    external_id: str


class Tick(NamedTuple):
    time: int
    bid: float
    ask: float
    last: float
    volume: int
    time_msc: int
    flags: int
    volume_real: float


class AccountInfo(NamedTuple):
    login: int
    trade_mode: int
    leverage: int
    limit_orders: int
    margin_so_mode: int
    trade_allowed: bool
    trade_expert: bool
    margin_mode: int
    currency_digits: int
    fifo_close: bool
    balance: float
    credit: float
    profit: float
    equity: float
    margin: float
    margin_free: float
    margin_level: float
    margin_so_call: float
    margin_so_so: float
    margin_initial: float
    margin_maintenance: float
    assets: float
    liabilities: float
    commission_blocked: float
    name: str
    server: str
    currency: str
    company: str


class TerminalInfo(NamedTuple):
    community_account: bool
    community_connection: bool
    connected: bool
    dlls_allowed: bool
    trade_allowed: bool
    tradeapi_disabled: bool
    email_enabled: bool
    ftp_enabled: bool
    notifications_enabled: bool
    mqid: bool
    build: int
    maxbars: int
    codepage: int
    ping_last: int
    community_balance: float
    retransmission: float
    company: str
    name: str
    language: str
    path: str
    data_path: str
    commondata_path: str


class SymbolInfo(NamedTuple):
    """The documented SymbolInfo members an agent reads (the real tuple has ~100)."""

    name: str
    description: str
    digits: int
    point: float
    trade_tick_size: float
    trade_tick_value: float
    trade_contract_size: float
    volume_min: float
    volume_max: float
    volume_step: float
    volume_limit: float
    currency_base: str
    currency_profit: str
    currency_margin: str
    trade_calc_mode: int
    trade_mode: int
    trade_exemode: int
    trade_stops_level: int
    trade_freeze_level: int
    filling_mode: int
    expiration_mode: int
    order_mode: int
    margin_initial: float
    margin_hedged: float
    bid: float
    ask: float
    time: int
    select: bool
    visible: bool


class ConcurrentCallError(AssertionError):
    """Two calls at once: the package has one IPC channel and is not thread-safe."""


# The MqlTradeRequest members, their Python types, and what each action requires
# (mql5.com/en/docs/constants/structures/mqltraderequest, "Trade request structure").
_FIELDS: dict[str, type] = {
    "action": int,
    "magic": int,
    "order": int,
    "symbol": str,
    "volume": float,
    "price": float,
    "stoplimit": float,
    "sl": float,
    "tp": float,
    "deviation": int,
    "type": int,
    "type_filling": int,
    "type_time": int,
    "expiration": int,
    "comment": str,
    "position": int,
    "position_by": int,
}
_REQUIRED: dict[int, tuple[str, ...]] = {
    TRADE_ACTION_DEAL: ("symbol", "volume", "type"),
    TRADE_ACTION_PENDING: ("symbol", "volume", "price", "type"),
    TRADE_ACTION_SLTP: ("position", "sl", "tp"),
    TRADE_ACTION_MODIFY: ("order", "price"),
    TRADE_ACTION_REMOVE: ("order",),
    TRADE_ACTION_CLOSE_BY: ("position", "position_by"),
}
_HISTORY_TO_FAR = 32_535_215_999  # 3000-12-31 23:59:59: the end of MQL's datetime


class FakeMetaTrader5:
    """One terminal's ``MetaTrader5`` module: ``login``'s account at ``server``.

    Use it where the agent takes its module (``Agent(mt5=FakeMetaTrader5(...))``). The
    switches below are the terminal conditions of the module text."""

    def __init__(self, server: TradeServer, login: int, *, build: int = 4755) -> None:
        self.server = server
        self.login = login
        self.build = build
        self.algo_trading = True
        """The terminal's Algo Trading button: off, every trade answers 10027."""
        self.tradeapi_disabled = False
        """Options > Expert Advisors > "Disable automatic trading via external Python API"."""
        self.connected = True
        """The terminal's link to its trade server: off, trades answer 10031."""
        self.ipc_timeout_after_next_send = False
        """The next ``order_send`` executes, then returns None with -10005 (outcome unknown)."""
        self.call_delay_s = 0.0
        """Each call takes this long (a busy terminal)."""
        self.deal_delay_calls = 0
        """A trade's deals are invisible to this many history calls after it (the terminal's
        history is updated a little after ``order_send`` returns)."""
        self.deal_delay_s = 0.0
        """... or for this long after it, whatever the calls (a terminal under load)."""
        self.failing: dict[str, int] = {}
        """Function name -> how many of its next calls fail (None, an IPC receive error),
        as a busy or restarting terminal's do: a failed read is not an empty one."""
        self.calls: list[str] = []
        self._hidden: dict[int, int] = {}  # deal ticket -> history calls still blind to it
        self._hidden_until: dict[int, float] = {}  # deal ticket -> monotonic time it shows
        self._initialized = False
        self._error: tuple[int, str] = (RES_S_OK, "Success")
        self._busy = threading.Lock()
        self._request_id = 0

    # --- session ---------------------------------------------------------------------------

    def initialize(self, *args: Any, **kwargs: Any) -> bool:
        self._enter("initialize")
        try:
            self._initialized = True
            self._ok(None)
            return True
        finally:
            self._busy.release()

    def shutdown(self) -> None:
        self._enter("shutdown")
        try:
            self._initialized = False
        finally:
            self._busy.release()

    def last_error(self) -> tuple[int, str]:
        return self._error

    def version(self) -> tuple[int, int, str] | None:
        return self._call("version", lambda: (500, self.build, "15 Nov 2026"))

    def terminal_info(self) -> TerminalInfo | None:
        return self._call("terminal_info", self._terminal_info)

    def account_info(self) -> AccountInfo | None:
        return self._call("account_info", self._account_info)

    # --- market data -----------------------------------------------------------------------

    def symbols_get(self, group: str = "*") -> tuple[SymbolInfo, ...] | None:
        return self._call(
            "symbols_get",
            lambda: tuple(self._symbol_info(s) for s in self.server.symbols.values()),
        )

    def symbol_info(self, symbol: str, /) -> SymbolInfo | None:
        def run() -> SymbolInfo | None:
            spec = self.server.symbols.get(symbol)
            return None if spec is None else self._symbol_info(spec)

        return self._call("symbol_info", run, missing=True)

    def symbol_info_tick(self, symbol: str, /) -> Tick | None:
        def run() -> Tick | None:
            if symbol not in self.server.symbols:
                return None
            bid, ask, time_ms = self.server.feed.quote(symbol)
            return Tick(time_ms // 1000, bid, ask, 0.0, 0, time_ms, 6, 0.0)

        return self._call("symbol_info_tick", run, missing=True)

    # --- trading state ---------------------------------------------------------------------

    def positions_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradePosition, ...] | None:
        def run() -> tuple[TradePosition, ...]:
            found = self.server.positions(self.login)
            return tuple(
                _position(p) for p in found if _matches(p.symbol, p.ticket, symbol, ticket)
            )

        return self._call("positions_get", run)

    def orders_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradeOrder, ...] | None:
        def run() -> tuple[TradeOrder, ...]:
            found = self.server.pending_orders(self.login)
            return tuple(_order(o) for o in found if _matches(o.symbol, o.ticket, symbol, ticket))

        return self._call("orders_get", run)

    def history_orders_get(
        self,
        date_from: dt.datetime | int | None = None,
        date_to: dt.datetime | int | None = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeOrder, ...] | None:
        def run() -> tuple[TradeOrder, ...] | None:
            lo, hi = _history_window(date_from, date_to, ticket, position)
            out = []
            for o in self.server.history_orders(self.login):
                if ticket is not None and o.ticket != ticket:
                    continue
                if position is not None and o.position_id != position:
                    continue
                if lo <= (o.time_done_ms or o.time_setup_ms) <= hi:
                    out.append(_order(o))
            return tuple(out)

        return self._call("history_orders_get", run)

    def history_deals_get(
        self,
        date_from: dt.datetime | int | None = None,
        date_to: dt.datetime | int | None = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeDeal, ...] | None:
        """``ticket``: the deals of that *order* (DEAL_ORDER); ``position``: of that position
        (DEAL_POSITION_ID); otherwise the deals with a time in the range."""

        def run() -> tuple[TradeDeal, ...] | None:
            lo, hi = _history_window(date_from, date_to, ticket, position)
            out = []
            for d in self.server.deals(self.login):
                if self._still_hidden(d.ticket):
                    continue
                if ticket is not None and d.order != ticket:
                    continue
                if position is not None and d.position_id != position:
                    continue
                if lo <= d.time_ms <= hi:
                    out.append(_deal(d))
            return tuple(out)

        return self._call("history_deals_get", run)

    # --- order_send ------------------------------------------------------------------------

    def order_send(self, request: Mapping[str, Any], /) -> OrderSendResult | None:
        self._enter("order_send")
        try:
            return self._order_send(request)
        finally:
            self._busy.release()

    def _order_send(self, request: Mapping[str, Any]) -> OrderSendResult | None:
        if not self._initialized:
            self._fail(RES_E_INTERNAL_FAIL_INIT, "IPC initialize failed")
            return None
        self._pause()
        invalid = _invalid(request)
        if invalid is not None:
            self._fail(RES_E_INVALID_PARAMS, invalid)
            return None
        echo = TradeRequest(**{k: request.get(k, _FIELDS[k]()) for k in _FIELDS})
        self._request_id += 1
        if not self.algo_trading or self.tradeapi_disabled:
            why = "AutoTrading disabled by client"
            return self._ok(self._refusal(echo, TRADE_RETCODE_CLIENT_DISABLES_AT, why))
        if not self.connected:
            return self._ok(self._refusal(echo, TRADE_RETCODE_CONNECTION, "No connection"))
        spec = self.server.symbols.get(echo.symbol)
        if (
            echo.action == TRADE_ACTION_DEAL
            and spec is not None
            and spec.exe_mode in (_EXECUTION_REQUEST, _EXECUTION_INSTANT)
            and not echo.price > 0
        ):
            # Request and Instant execution take the price the client asks for: a DEAL
            # without one is refused (the MqlTradeRequest table: "price" is required there).
            return self._ok(self._refusal(echo, TRADE_RETCODE_INVALID_PRICE, "Invalid price"))
        try:
            msg = self._as_protocol(echo)
        except LookupError as exc:
            return self._ok(self._refusal(echo, TRADE_RETCODE_INVALID, str(exc)))
        before = {d.ticket for d in self.server.deals(self.login)}
        try:
            result = self.server.handle(self.login, msg)
        except TradeError as exc:
            bid, ask = exc.bid, exc.ask
            out = OrderSendResult(exc.code, 0, 0, 0.0, 0.0, bid, ask, exc.message,
                                  self._request_id, 0, echo)  # fmt: skip
        else:
            assert isinstance(result, m.TradeResult)
            out = OrderSendResult(result.code, result.deal, result.order, result.volume,
                                  result.price, result.bid, result.ask, result.comment,
                                  self._request_id, 0, echo)  # fmt: skip
        if self.deal_delay_calls > 0 or self.deal_delay_s > 0:
            until = time.monotonic() + self.deal_delay_s
            for d in self.server.deals(self.login):
                if d.ticket not in before:
                    self._hidden[d.ticket] = self.deal_delay_calls
                    self._hidden_until[d.ticket] = until
        if self.ipc_timeout_after_next_send:
            self.ipc_timeout_after_next_send = False
            self._fail(RES_E_INTERNAL_FAIL_TIMEOUT, "IPC timeout")
            return None
        return self._ok(out)

    def _as_protocol(self, r: TradeRequest) -> m.Request:
        """The request as the trade server executes it (what the terminal would send)."""
        if r.action == TRADE_ACTION_DEAL and r.position:
            held = {p.ticket: p for p in self.server.positions(self.login)}
            pos = held.get(r.position)
            if pos is None:
                raise LookupError("position not found")
            if r.type != 1 - pos.type:
                raise LookupError("a close is the position's opposite type")
            volume = 0.0 if abs(r.volume - pos.volume) < 1e-9 else r.volume
            return m.ClosePosition(id=0, ticket=r.position, volume=volume, price=r.price,
                                   deviation=r.deviation, comment=r.comment)  # fmt: skip
        if r.action == TRADE_ACTION_DEAL:
            return m.MarketOrder(id=0, symbol=r.symbol, order_type=r.type, volume=r.volume,
                                 magic=r.magic, comment=r.comment, price=r.price,
                                 deviation=r.deviation, sl=r.sl, tp=r.tp,
                                 filling=r.type_filling)  # fmt: skip
        if r.action == TRADE_ACTION_PENDING:
            return m.PendingOrder(id=0, symbol=r.symbol, order_type=r.type, volume=r.volume,
                                  price=r.price, magic=r.magic, comment=r.comment,
                                  stoplimit=r.stoplimit, sl=r.sl, tp=r.tp,
                                  expiration_ms=r.expiration * 1000, time_type=r.type_time,
                                  filling=r.type_filling)  # fmt: skip
        if r.action == TRADE_ACTION_SLTP:
            return m.ModifyPosition(id=0, ticket=r.position, sl=r.sl, tp=r.tp)
        if r.action == TRADE_ACTION_MODIFY:
            return m.ModifyOrder(id=0, ticket=r.order, price=r.price, sl=r.sl, tp=r.tp,
                                 stoplimit=r.stoplimit, expiration_ms=r.expiration * 1000,
                                 time_type=r.type_time)  # fmt: skip
        if r.action == TRADE_ACTION_REMOVE:
            return m.CancelOrder(id=0, ticket=r.order)
        return m.CloseBy(id=0, ticket=r.position, opposite=r.position_by)

    def _refusal(self, echo: TradeRequest, code: int, comment: str) -> OrderSendResult:
        bid = ask = 0.0
        if echo.symbol in self.server.symbols:
            bid, ask, _ = self.server.feed.quote(echo.symbol)
        return OrderSendResult(code, 0, 0, 0.0, 0.0, bid, ask, comment, self._request_id, 0, echo)

    # --- the module's plumbing ------------------------------------------------------------

    def _enter(self, name: str) -> None:
        if not self._busy.acquire(blocking=False):
            raise ConcurrentCallError(f"{name} called while another MetaTrader5 call runs")
        self.calls.append(name)

    def _call(self, name: str, run: Callable[[], T], *, missing: bool = False) -> T | None:
        self._enter(name)
        try:
            if not self._initialized:
                self._fail(RES_E_INTERNAL_FAIL_INIT, "IPC initialize failed")
                return None
            self._pause()
            if self.failing.get(name, 0) > 0:
                self.failing[name] -= 1
                self._fail(RES_E_INTERNAL_FAIL_RECEIVE, "IPC recv failed")
                return None
            value = run()
            if value is None and missing:
                self._fail(RES_E_NOT_FOUND, "Terminal: Not found")
                return None
            return self._ok(value)
        finally:
            self._busy.release()

    def _pause(self) -> None:
        if self.call_delay_s > 0:
            time.sleep(self.call_delay_s)

    def _ok(self, value: T) -> T:
        self._error = (RES_S_OK, "Success")
        return value

    def _fail(self, code: int, description: str) -> None:
        """Record the error; the value the call returns (None)."""
        self._error = (code, description)

    def _still_hidden(self, deal: int) -> bool:
        until = self._hidden_until.get(deal)
        if until is not None:
            if time.monotonic() < until:
                return True
            del self._hidden_until[deal]
        left = self._hidden.get(deal)
        if not left:
            self._hidden.pop(deal, None)
            return False
        if left <= 1:
            del self._hidden[deal]
        else:
            self._hidden[deal] = left - 1
        return True

    def _terminal_info(self) -> TerminalInfo:
        return TerminalInfo(False, False, self.connected, False, self.algo_trading,
                            self.tradeapi_disabled, False, False, False, False, self.build,
                            100_000, 0, 1_000, 0.0, 0.0, "mtsim", "MetaTrader 5", "English",
                            "C:\\mtsim", "C:\\mtsim\\data", "C:\\mtsim\\common")  # fmt: skip

    def _account_info(self) -> AccountInfo:
        a = self.server.account(self.login)
        return AccountInfo(a.login, 0, a.leverage, a.limit_orders, 0, a.trade_allowed,
                           a.trade_expert, a.margin_mode, 2, False, a.balance, a.credit,
                           a.profit, a.equity, a.margin, a.margin_free, a.margin_level,
                           a.margin_so_call, a.margin_so_so, 0.0, 0.0, 0.0, 0.0, 0.0, a.name,
                           a.server, a.currency, a.company)  # fmt: skip

    def _symbol_info(self, s: SymbolSpec) -> SymbolInfo:
        bid, ask, time_ms = self.server.feed.quote(s.name)
        return SymbolInfo(s.name, s.description, s.digits, s.point, s.tick_size, s.tick_value,
                          s.contract_size, s.volume_min, s.volume_max, s.volume_step,
                          s.volume_limit, s.currency_base, s.currency_profit, s.currency_margin,
                          s.calc_mode, s.trade_mode, s.exe_mode, s.stops_level, s.freeze_level,
                          s.filling_mode, s.expiration_mode, s.order_mode, s.margin_initial,
                          s.margin_hedged, bid, ask, time_ms // 1000, True, True)  # fmt: skip


def _invalid(request: Mapping[str, Any]) -> str | None:
    if not isinstance(request, Mapping):
        return "request must be a dict"
    for key, value in request.items():
        kind = _FIELDS.get(key)
        if kind is None:
            return f'unknown field "{key}"'
        if type(value) is not kind:  # bool is not an int here, an int is not a float
            return f'Invalid "{key}" argument type'
    action = request.get("action")
    if action not in _REQUIRED:
        return 'Invalid "action" argument'
    missing = [f for f in _REQUIRED[action] if f not in request]
    if missing:
        return f"Invalid request: missing {', '.join(missing)}"
    specified = request.get("type_time") == ORDER_TIME_SPECIFIED
    if action == TRADE_ACTION_PENDING and specified and "expiration" not in request:
        return "Invalid request: missing expiration"
    return None


def _matches(sym: str, tkt: int, symbol: str | None, ticket: int | None) -> bool:
    return (symbol is None or sym == symbol) and (ticket is None or tkt == ticket)


def _seconds(value: dt.datetime | int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp())
    if type(value) is not int:
        raise TypeError("a date is a datetime or int seconds")
    return value


def _history_window(
    date_from: dt.datetime | int | None,
    date_to: dt.datetime | int | None,
    ticket: int | None,
    position: int | None,
) -> tuple[int, int]:
    """The ms window a history call selects: all of it by ``ticket`` or ``position``,
    otherwise the dates given."""
    if ticket is not None or position is not None:
        return 0, _HISTORY_TO_FAR * 1000
    return _range_ms(date_from, date_to)


def _range_ms(
    date_from: dt.datetime | int | None, date_to: dt.datetime | int | None
) -> tuple[int, int]:
    lo = _seconds(date_from, 0) * 1000
    hi = _seconds(date_to, _HISTORY_TO_FAR) * 1000 + 999
    return lo, hi


def _position(p: m.PositionReport) -> TradePosition:
    reason = 3 if p.magic else 0  # POSITION_REASON_EXPERT / _CLIENT
    update = p.time_update_ms or p.time_ms
    return TradePosition(p.ticket, p.time_ms // 1000, p.time_ms, update // 1000, update,
                         p.type, p.magic, p.identifier, reason, p.volume, p.price_open, p.sl,
                         p.tp, p.price_current, p.swap, p.profit, p.symbol, p.comment,
                         "")  # fmt: skip


def _order(o: m.OrderReport) -> TradeOrder:
    reason = 3 if o.magic else 0  # ORDER_REASON_EXPERT / _CLIENT
    return TradeOrder(o.ticket, o.time_setup_ms // 1000, o.time_setup_ms, o.time_done_ms // 1000,
                      o.time_done_ms, o.expiration_ms // 1000, o.type, o.time_type, 2, o.state,
                      o.magic, o.position_id, 0, reason, o.volume_initial, o.volume_current,
                      o.price_open, o.sl, o.tp, o.price_current, o.stoplimit, o.symbol,
                      o.comment, "")  # fmt: skip


def _deal(d: m.DealReport) -> TradeDeal:
    return TradeDeal(d.ticket, d.order, d.time_ms // 1000, d.time_ms, d.type, d.entry, d.magic,
                     d.position_id, d.reason, d.volume, d.price, d.commission, d.swap,
                     d.profit, 0.0, d.symbol, d.comment, "")  # fmt: skip
