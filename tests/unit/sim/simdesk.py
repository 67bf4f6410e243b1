"""Test helpers for the trade-server model: a ``Desk`` is one server, its clock and one account.

Prices default to a static feed (``step_ms=0``) so a test sets every quote it relies on; the
standard EURUSD quote is Bid 1.10000 / Ask 1.10012 (12-point spread).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from mtgate.domain.clock import ManualClock
from mtgate.domain.enums import MarginMode, Platform
from mtgate.domain.symbols import SymbolSpec
from mtgate.protocol.messages import (
    CancelOrder,
    CloseBy,
    ClosePosition,
    MarketOrder,
    ModifyOrder,
    ModifyPosition,
    PendingOrder,
    Request,
    TradeResult,
)
from mtsim.prices import PriceFeed
from mtsim.server import ServerConfig, TradeError, TradeServer
from mtsim.symbols import DEFAULT_SYMBOLS

BID, ASK = 1.10000, 1.10012
LOGIN = 1


def px(base: float, points: int, digits: int = 5) -> float:
    """``base`` moved by ``points`` points, normalized."""
    return round(base + points * 10.0**-digits, digits)


@dataclass
class Desk:
    server: TradeServer
    clock: ManualClock
    login: int = LOGIN
    events: list[tuple[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def mt4(self) -> bool:
        return self.server.platform == Platform.MT4

    def quote(self, symbol: str, bid: float, ask: float) -> None:
        self.server.set_quote(symbol, bid, ask)

    def send(self, request: Request) -> Any:
        return self.server.handle(self.login, request)

    def refused(self, request: Request) -> TradeError:
        with pytest.raises(TradeError) as info:
            self.server.handle(self.login, request)
        return info.value

    def market_req(
        self, order_type: int = 0, volume: float = 0.1, symbol: str = "EURUSD", **kw: Any
    ) -> MarketOrder:
        kw.setdefault("magic", 7)
        kw.setdefault("comment", "")
        return MarketOrder(
            id=next(self._ids), symbol=symbol, order_type=order_type, volume=volume, **kw
        )

    def market(
        self, order_type: int = 0, volume: float = 0.1, symbol: str = "EURUSD", **kw: Any
    ) -> TradeResult:
        result = self.send(self.market_req(order_type, volume, symbol, **kw))
        assert isinstance(result, TradeResult)
        return result

    def pending_req(
        self,
        order_type: int,
        price: float,
        volume: float = 0.1,
        symbol: str = "EURUSD",
        **kw: Any,
    ) -> PendingOrder:
        kw.setdefault("magic", 7)
        kw.setdefault("comment", "")
        return PendingOrder(
            id=next(self._ids),
            symbol=symbol,
            order_type=order_type,
            volume=volume,
            price=price,
            **kw,
        )

    def pending(
        self,
        order_type: int,
        price: float,
        volume: float = 0.1,
        symbol: str = "EURUSD",
        **kw: Any,
    ) -> TradeResult:
        result = self.send(self.pending_req(order_type, price, volume, symbol, **kw))
        assert isinstance(result, TradeResult)
        return result

    def modify_req(self, ticket: int, price: float, **kw: Any) -> ModifyOrder:
        return ModifyOrder(id=next(self._ids), ticket=ticket, price=price, **kw)

    def cancel_req(self, ticket: int) -> CancelOrder:
        return CancelOrder(id=next(self._ids), ticket=ticket)

    def modify_position_req(self, ticket: int, sl: float = 0.0, tp: float = 0.0) -> ModifyPosition:
        return ModifyPosition(id=next(self._ids), ticket=ticket, sl=sl, tp=tp)

    def close_req(self, ticket: int, volume: float = 0.0, **kw: Any) -> ClosePosition:
        return ClosePosition(id=next(self._ids), ticket=ticket, volume=volume, **kw)

    def close(self, ticket: int, volume: float = 0.0, **kw: Any) -> TradeResult:
        result = self.send(self.close_req(ticket, volume, **kw))
        assert isinstance(result, TradeResult)
        return result

    def close_by_req(self, ticket: int, opposite: int) -> CloseBy:
        return CloseBy(id=next(self._ids), ticket=ticket, opposite=opposite)

    def close_by(self, ticket: int, opposite: int) -> TradeResult:
        result = self.send(self.close_by_req(ticket, opposite))
        assert isinstance(result, TradeResult)
        return result

    def position(self, ticket: int) -> Any:
        """The open position with ``ticket`` (PositionReport), or None."""
        return next((p for p in self.server.positions(self.login) if p.ticket == ticket), None)

    def names(self, name: str) -> list[Any]:
        """Payloads of the events called ``name``, oldest first."""
        return [payload for n, payload in self.events if n == name]


MakeDesk = Callable[..., Desk]


def make_desk(
    platform: Platform = Platform.MT5,
    *,
    margin_mode: MarginMode = MarginMode.HEDGING,
    symbols: Mapping[str, SymbolSpec] | None = None,
    config: ServerConfig | None = None,
    balance: float = 100_000.0,
    leverage: int = 100,
    limit_orders: int = 0,
    step_ms: int = 0,
    seed: int = 0,
    start: Mapping[str, tuple[float, float]] | None = None,
    quote: bool = True,
) -> Desk:
    clock = ManualClock()
    specs = dict(DEFAULT_SYMBOLS if symbols is None else symbols)
    feed = PriceFeed(specs, seed=seed, start=start, clock=clock, step_ms=step_ms)
    server = TradeServer(
        name="Sim-Demo",
        platform=platform,
        clock=clock,
        feed=feed,
        symbols=specs,
        config=config,
    )
    server.open_account(
        login=LOGIN,
        margin_mode=margin_mode,
        balance=balance,
        leverage=leverage,
        limit_orders=limit_orders,
    )
    desk = Desk(server, clock)
    server.on_event(LOGIN, lambda name, payload: desk.events.append((name, payload)))
    if quote and "EURUSD" in specs:
        desk.quote("EURUSD", BID, ASK)
    return desk
