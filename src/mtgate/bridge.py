"""The in-process Python API: one object that owns the listener, the journal and the pipeline.

async with Bridge.from_config(config) as bridge:
    result = await bridge.place_market_order(account="1001@Sim-Live", symbol="EURUSD",
                                             side="buy", volume=0.1)
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from mtgate.config import Config
from mtgate.domain.clock import Clock, SystemClock
from mtgate.domain.orders import OrderStatus
from mtgate.execution.book import OrderBook
from mtgate.execution.requests import (
    CancelOrderRequest,
    MarketOrderRequest,
    ModifyOrderRequest,
    OrderResult,
    PendingOrderRequest,
    parse,
)
from mtgate.execution.service import ExecutionService
from mtgate.execution.tracker import Tracker
from mtgate.protocol import messages as m
from mtgate.protocol.auth import Secret
from mtgate.sessions.registry import TerminalRegistry
from mtgate.sessions.session import AccountKey, SessionSettings
from mtgate.store.journal import Journal, open_journal


class Bridge:
    """Places and manages orders on the MetaTrader terminals that dial in."""

    def __init__(
        self,
        *,
        keys: Mapping[str, Secret],
        journal: Journal,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: SessionSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._keys = dict(keys)
        self._journal = journal
        self._host, self._port = host, port
        self._settings = settings or SessionSettings()
        self._clock = clock or SystemClock()
        self._registry: TerminalRegistry | None = None
        self._service: ExecutionService | None = None
        self._tracker: Tracker | None = None
        self.address: tuple[str, int] | None = None

    @classmethod
    def from_config(cls, config: Config, *, clock: Clock | None = None) -> Bridge:
        b = config.bridge
        settings = SessionSettings(
            heartbeat_ms=b.heartbeat_ms,
            handshake_timeout_s=b.handshake_timeout_s,
            request_timeout_s=b.trade_timeout_s,
            read_timeout_s=b.read_timeout_s,
        )
        journal = open_journal(config.store.url, synchronous=config.store.synchronous)
        return cls(
            keys=config.keys(),
            journal=journal,
            host=b.host,
            port=b.port,
            settings=settings,
            clock=clock,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        await self._journal.open()
        book = OrderBook(self._journal, self._clock)
        self._tracker = Tracker(book)
        self._registry = TerminalRegistry(
            self._keys, self._tracker, clock=self._clock, settings=self._settings
        )
        self._tracker.attach(self._registry)
        self._service = ExecutionService(book, self._registry, self._tracker)
        self.address = await self._registry.listen(self._host, self._port)
        return self.address

    async def stop(self) -> None:
        if self._registry is not None:
            await self._registry.close()
        if self._tracker is not None:
            await self._tracker.close()
        await self._journal.close()

    async def __aenter__(self) -> Bridge:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def registry(self) -> TerminalRegistry:
        if self._registry is None:
            raise RuntimeError("the bridge is not started")
        return self._registry

    @property
    def service(self) -> ExecutionService:
        if self._service is None:
            raise RuntimeError("the bridge is not started")
        return self._service

    @property
    def journal(self) -> Journal:
        return self._journal

    async def wait_ready(self, terminal_ids: set[str], timeout_s: float = 10.0) -> None:
        await self.registry.wait_ready(terminal_ids, timeout_s)

    # --- orders ------------------------------------------------------------------------------

    async def place_market_order(
        self, request: MarketOrderRequest | None = None, **fields: Any
    ) -> OrderResult:
        """Buy or sell at market. Fields as in :class:`MarketOrderRequest`."""
        return await self.service.place_market_order(request or parse(MarketOrderRequest, fields))

    async def place_pending_order(
        self, request: PendingOrderRequest | None = None, **fields: Any
    ) -> OrderResult:
        """Place a limit, stop or stop-limit order. Fields as in :class:`PendingOrderRequest`."""
        return await self.service.place_pending_order(request or parse(PendingOrderRequest, fields))

    async def modify_order(
        self, request: ModifyOrderRequest | None = None, **fields: Any
    ) -> OrderResult:
        """Change a placed pending order's price, stop-limit price, SL, TP or expiration."""
        return await self.service.modify_order(request or parse(ModifyOrderRequest, fields))

    async def cancel_order(
        self, request: CancelOrderRequest | None = None, **fields: Any
    ) -> OrderResult:
        """Delete a placed pending order."""
        return await self.service.cancel_order(request or parse(CancelOrderRequest, fields))

    async def get_order(
        self, account: str, *, client_order_id: str | None = None, ticket: int | None = None
    ) -> OrderResult | None:
        """The bridge's record of one order, by client order id or by ticket."""
        return await self.service.get_order(account, client_order_id=client_order_id, ticket=ticket)

    async def list_orders(
        self,
        account: str | None = None,
        statuses: set[OrderStatus] | None = None,
        limit: int = 1000,
    ) -> list[OrderResult]:
        """Orders in the journal, newest first."""
        return await self.service.list_orders(account, statuses, limit)

    async def list_positions(self, account: str, symbol: str = "") -> list[m.PositionReport]:
        """Open positions as the terminal reports them now."""
        result: list[m.PositionReport] = await self.service.read(
            account, m.Positions(id=0, symbol=symbol)
        )
        return result

    async def list_pending_orders(self, account: str, symbol: str = "") -> list[m.OrderReport]:
        """Pending orders as the terminal reports them now."""
        result: list[m.OrderReport] = await self.service.read(
            account, m.Orders(id=0, symbol=symbol)
        )
        return result

    async def get_account(self, account: str) -> m.AccountReport:
        """Balance, equity, margin and margin level as the terminal reports them now."""
        report: m.AccountReport = await self.service.read(account, m.AccountInfo(id=0))
        session = self.registry.route(AccountKey.parse(account))
        session.view.account = report
        return report
