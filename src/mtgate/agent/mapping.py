"""Protocol messages to MetaTrader5 calls and back: the agent's pure part.

Every function here takes what the ``MetaTrader5`` package returned (its named tuples, read by
attribute) and gives the protocol's payloads (docs/protocol.md §6), or builds the request dict
``order_send`` takes (the MqlTradeRequest members, mql5.com/en/docs/constants/structures/
mqltraderequest). Nothing here calls the package: :mod:`mtgate.agent.agent` does, on its one
worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mtgate.domain.codes import lookup
from mtgate.domain.enums import Platform
from mtgate.domain.symbols import SymbolSpec
from mtgate.protocol import messages as m

TRADE_ACTION_DEAL = 1
TRADE_ACTION_PENDING = 5
TRADE_ACTION_SLTP = 6
TRADE_ACTION_MODIFY = 7
TRADE_ACTION_REMOVE = 8
TRADE_ACTION_CLOSE_BY = 10
ORDER_FILLING_FOK, ORDER_FILLING_IOC, ORDER_FILLING_RETURN = 0, 1, 2
ORDER_TIME_SPECIFIED = 2
SYMBOL_FILLING_FOK, SYMBOL_FILLING_IOC = 1, 2
SYMBOL_TRADE_EXECUTION_REQUEST, SYMBOL_TRADE_EXECUTION_INSTANT = 0, 1
SYMBOL_TRADE_EXECUTION_MARKET, SYMBOL_TRADE_EXECUTION_EXCHANGE = 2, 3


def needs_price(info: Any) -> bool:
    """Request and Instant execution fill at the price the request names: a deal must carry
    it (Market and Exchange execution take 0, "at market")."""
    return info is not None and info.trade_exemode in (
        SYMBOL_TRADE_EXECUTION_REQUEST,
        SYMBOL_TRADE_EXECUTION_INSTANT,
    )


DONE_CODES = frozenset({10008, 10009, 10010})
"""PLACED, DONE, DONE_PARTIAL: the trade happened (docs/protocol.md §4.2)."""
NO_CHANGES = 10025
ALGO_DISABLED = 10027

# ``last_error()`` codes of the package (reference terminal-side.md §5.3).
RES_E_INVALID_PARAMS = -2
RES_E_AUTO_TRADING_DISABLED = -8
IPC_FAILURE_BASE = -10_000
"""``last_error()`` codes from -10000 down are the IPC channel's own (INTERNAL_FAIL, SEND,
RECEIVE, INIT, CONNECT, TIMEOUT). Inside ``order_send`` the request may already be at the
terminal: the outcome is unknown."""
OUTCOME_UNKNOWN_CODE = -7
"""The protocol's ``outcome_unknown`` (docs/protocol.md §4.2): the answer to a trade whose
``order_send`` failed after it may have reached the terminal (an IPC failure, an exception of
the package). The bridge resolves the order against the account (§9) and never resends it."""


def filling_for(msg: m.MarketOrder | m.PendingOrder, info: Any) -> int:
    """docs/protocol.md §11 "Filling": an explicit one is passed through; -1: RETURN for
    pending orders, and for market orders under market or exchange execution FOK when the
    symbol allows it, else IOC; otherwise RETURN."""
    if msg.filling >= 0:
        return int(msg.filling)
    if isinstance(msg, m.PendingOrder):
        return ORDER_FILLING_RETURN
    if info.trade_exemode in (SYMBOL_TRADE_EXECUTION_MARKET, SYMBOL_TRADE_EXECUTION_EXCHANGE):
        if info.filling_mode & SYMBOL_FILLING_FOK:
            return ORDER_FILLING_FOK
        if info.filling_mode & SYMBOL_FILLING_IOC:
            return ORDER_FILLING_IOC
    return ORDER_FILLING_RETURN


def is_pending_type(order_type: int) -> bool:
    """ORDER_TYPE_BUY_LIMIT (2) to ORDER_TYPE_SELL_STOP_LIMIT (7)."""
    return 2 <= order_type <= 7


def market_request(msg: m.MarketOrder, filling: int) -> dict[str, Any]:
    return {
        "action": TRADE_ACTION_DEAL,
        "symbol": msg.symbol,
        "type": int(msg.order_type),
        "volume": float(msg.volume),
        "price": float(msg.price),
        "deviation": int(msg.deviation),
        "sl": float(msg.sl),
        "tp": float(msg.tp),
        "magic": int(msg.magic),
        "comment": msg.comment,
        "type_filling": filling,
    }


def pending_request(msg: m.PendingOrder, filling: int) -> dict[str, Any]:
    request: dict[str, Any] = {
        "action": TRADE_ACTION_PENDING,
        "symbol": msg.symbol,
        "type": int(msg.order_type),
        "volume": float(msg.volume),
        "price": float(msg.price),
        "stoplimit": float(msg.stoplimit),
        "sl": float(msg.sl),
        "tp": float(msg.tp),
        "magic": int(msg.magic),
        "comment": msg.comment,
        "type_filling": filling,
        "type_time": int(msg.time_type),
    }
    if msg.expiration_ms:
        request["expiration"] = int(msg.expiration_ms // 1000)
    return request


def modify_order_request(msg: m.ModifyOrder) -> dict[str, Any]:
    request: dict[str, Any] = {
        "action": TRADE_ACTION_MODIFY,
        "order": int(msg.ticket),
        "price": float(msg.price),
        "stoplimit": float(msg.stoplimit),
        "sl": float(msg.sl),
        "tp": float(msg.tp),
        "type_time": int(msg.time_type),
    }
    if msg.expiration_ms:
        request["expiration"] = int(msg.expiration_ms // 1000)
    return request


def cancel_request(msg: m.CancelOrder) -> dict[str, Any]:
    return {"action": TRADE_ACTION_REMOVE, "order": int(msg.ticket)}


def sltp_request(msg: m.ModifyPosition, position: Any) -> dict[str, Any]:
    return {
        "action": TRADE_ACTION_SLTP,
        "position": int(msg.ticket),
        "symbol": position.symbol,
        "sl": float(msg.sl),
        "tp": float(msg.tp),
    }


def close_request(msg: m.ClosePosition, position: Any, filling: int) -> dict[str, Any]:
    """The opposite deal on the position (volume 0: all of it)."""
    volume = float(msg.volume) if msg.volume > 0 else float(position.volume)
    return {
        "action": TRADE_ACTION_DEAL,
        "position": int(position.ticket),
        "symbol": position.symbol,
        "type": 1 - int(position.type),
        "volume": volume,
        "price": float(msg.price),
        "deviation": int(msg.deviation),
        "magic": int(position.magic),
        "comment": msg.comment,
        "type_filling": filling,
    }


def close_by_request(msg: m.CloseBy) -> dict[str, Any]:
    return {
        "action": TRADE_ACTION_CLOSE_BY,
        "position": int(msg.ticket),
        "position_by": int(msg.opposite),
    }


def refusal(result: Any) -> m.Error:
    """A retcode that is not a success, as the protocol's error (its MT5 name)."""
    code = int(result.retcode)
    return m.Error(
        code=code,
        name=lookup(Platform.MT5, code).name,
        message=str(result.comment) or lookup(Platform.MT5, code).description,
        bid=float(result.bid),
        ask=float(result.ask),
    )


def send_failure(code: int, description: str) -> m.Error:
    """``order_send`` returned None: what the bridge is told (reference §5.4). Invalid
    parameters never reach the terminal (-2, nothing executed); Algo Trading off is MT5's
    10027; anything else may have reached it: outcome unknown."""
    if code == RES_E_INVALID_PARAMS:
        return m.Error(code=-2, name="invalid_request", message=f"MetaTrader5: {description}")
    if code == RES_E_AUTO_TRADING_DISABLED:
        name = lookup(Platform.MT5, ALGO_DISABLED).name
        return m.Error(code=ALGO_DISABLED, name=name, message=description)
    return m.Error(
        code=OUTCOME_UNKNOWN_CODE,
        name="outcome_unknown",
        message=f"MetaTrader5 order_send failed ({code}: {description}); it may have executed",
    )


# --- reports -------------------------------------------------------------------------------


def account_report(a: Any) -> m.AccountReport:
    return m.AccountReport(
        login=a.login,
        server=a.server,
        currency=a.currency,
        leverage=a.leverage,
        margin_mode=a.margin_mode,
        balance=a.balance,
        credit=a.credit,
        profit=a.profit,
        equity=a.equity,
        margin=a.margin,
        margin_free=a.margin_free,
        margin_level=a.margin_level,
        margin_so_call=a.margin_so_call,
        margin_so_so=a.margin_so_so,
        trade_allowed=bool(a.trade_allowed),
        trade_expert=bool(a.trade_expert),
        limit_orders=a.limit_orders,
        company=a.company,
        name=a.name,
    )


def position_report(p: Any) -> m.PositionReport:
    return m.PositionReport(
        ticket=p.ticket,
        identifier=p.identifier,
        symbol=p.symbol,
        type=p.type,
        volume=p.volume,
        price_open=p.price_open,
        price_current=p.price_current,
        time_ms=p.time_msc,
        magic=p.magic,
        comment=p.comment,
        sl=p.sl,
        tp=p.tp,
        profit=p.profit,
        swap=p.swap,
        time_update_ms=p.time_update_msc,
    )


def order_report(o: Any) -> m.OrderReport:
    return m.OrderReport(
        ticket=o.ticket,
        symbol=o.symbol,
        type=o.type,
        state=o.state,
        volume_initial=o.volume_initial,
        volume_current=o.volume_current,
        price_open=o.price_open,
        time_setup_ms=o.time_setup_msc,
        magic=o.magic,
        comment=o.comment,
        stoplimit=o.price_stoplimit,
        sl=o.sl,
        tp=o.tp,
        price_current=o.price_current,
        time_done_ms=o.time_done_msc,
        expiration_ms=o.time_expiration * 1000,
        time_type=o.type_time,
        position_id=o.position_id,
    )


def deal_report(d: Any) -> m.DealReport:
    return m.DealReport(
        ticket=d.ticket,
        order=d.order,
        position_id=d.position_id,
        symbol=d.symbol,
        type=d.type,
        entry=d.entry,
        volume=d.volume,
        price=d.price,
        time_ms=d.time_msc,
        reason=d.reason,
        magic=d.magic,
        comment=d.comment,
        profit=d.profit,
        swap=d.swap,
        commission=d.commission,
    )


def symbol_spec(s: Any) -> SymbolSpec:
    return SymbolSpec(
        name=s.name,
        digits=s.digits,
        point=s.point,
        tick_size=s.trade_tick_size,
        tick_value=s.trade_tick_value,
        contract_size=s.trade_contract_size,
        volume_min=s.volume_min,
        volume_max=s.volume_max,
        volume_step=s.volume_step,
        currency_base=s.currency_base,
        currency_profit=s.currency_profit,
        currency_margin=s.currency_margin,
        calc_mode=s.trade_calc_mode,
        trade_mode=s.trade_mode,
        exe_mode=s.trade_exemode,
        volume_limit=s.volume_limit,
        stops_level=s.trade_stops_level,
        freeze_level=s.trade_freeze_level,
        filling_mode=s.filling_mode,
        expiration_mode=s.expiration_mode,
        order_mode=s.order_mode,
        margin_initial=s.margin_initial,
        margin_hedged=s.margin_hedged,
        description=s.description,
    )


def tick_report(symbol: str, t: Any) -> m.Tick:
    return m.Tick(symbol=symbol, bid=t.bid, ask=t.ask, time_ms=t.time_msc)


class HistoryCursor:
    """docs/protocol.md §5.3 "History cursor", for one kind of record (deals or history
    orders): ``t_last``, the time of the newest record reported, and the tickets reported with
    a time from ``t_last - 60 s`` on. :meth:`select_from` is the time the next selection starts
    at; :meth:`take` reports, oldest first (time, then ticket), every record at or after it
    whose ticket is new, at most ``limit``, and moves the cursor."""

    WINDOW_MS = 60_000

    def __init__(self, since_ms: int) -> None:
        self.t_last = since_ms
        self.since_ms = since_ms
        self._first = True
        self._seen: dict[int, int] = {}  # ticket -> time

    def select_from(self) -> int:
        if self._first:
            return self.t_last
        return max(self.t_last - self.WINDOW_MS, self.since_ms)

    def take(self, records: Iterable[tuple[int, int, Any]], limit: int) -> list[Any]:
        """``records``: (time_ms, ticket, record) of the terminal's history from
        :meth:`select_from` on."""
        start = self.select_from()
        fresh = sorted(
            (r for r in records if r[0] >= start and r[1] not in self._seen),
            key=lambda r: (r[0], r[1]),
        )[:limit]
        for time_ms, ticket, _ in fresh:
            self._seen[ticket] = time_ms
            self.t_last = max(self.t_last, time_ms)
        if fresh:
            self._first = False
        horizon = self.t_last - self.WINDOW_MS
        self._seen = {t: at for t, at in self._seen.items() if at >= horizon}
        return [r[2] for r in fresh]
