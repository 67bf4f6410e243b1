"""The in-process Python API: one object that owns the listener, the journal and the pipeline.

async with Bridge.from_config(config) as bridge:
    result = await bridge.place_market_order(account="1001@Sim-Live", symbol="EURUSD",
                                             side="buy", volume=0.1)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from mtgate import runtime
from mtgate.config import DEFAULT_MAGIC, Config, EventsSection
from mtgate.domain.clock import Clock, SystemClock
from mtgate.domain.orders import OrderStatus
from mtgate.domain.retry import RetryPolicy
from mtgate.events.relay import Relay, Sink
from mtgate.events.service import Events
from mtgate.execution.book import OrderBook
from mtgate.execution.forced import ForcedAttempts
from mtgate.execution.overrides import OverrideResult, Overrides
from mtgate.execution.requests import (
    AccountQuery,
    CancelOrderRequest,
    InvalidRequest,
    MarketOrderRequest,
    ModifyOrderRequest,
    OrderQuery,
    OrderResult,
    OrdersQuery,
    PendingOrderRequest,
    checked,
    parse,
)
from mtgate.execution.service import ExecutionService, account_key
from mtgate.execution.signals import SignalRequest, SignalResult, Signals
from mtgate.execution.tracker import Tracker
from mtgate.health.alerts import AccountHealth, Alert, TerminalHealth
from mtgate.health.monitor import AlertListener, HealthMonitor
from mtgate.health.settings import HealthSettings
from mtgate.positions.requests import (
    BulkCloseRequest,
    BulkItem,
    BulkModifyRequest,
    CloseByRequest,
    ClosePositionRequest,
    ModifyPositionRequest,
    PositionResult,
    ReversalResult,
    ReversePositionRequest,
    TrailingStopRequest,
)
from mtgate.positions.service import PositionService
from mtgate.positions.trailing_stops import TrailingManager
from mtgate.protocol import messages as m
from mtgate.sessions.registry import HandshakeLimits, TerminalRegistry, TerminalStatus
from mtgate.sessions.routing import RoutingPolicy
from mtgate.sessions.session import AccountKey, SessionSettings, TerminalGrant
from mtgate.store.journal import Journal, open_journal
from mtgate.store.rejections import RejectionReport, parse_time, rejection_query
from mtgate.store.sync_store import PositionState, SyncStore, TrailingState
from mtgate.sync.synchronizer import Synchronizer, SyncSettings


class Bridge:
    """Places and manages orders on the MetaTrader terminals that dial in."""

    def __init__(
        self,
        *,
        terminals: Mapping[str, TerminalGrant],
        journal: Journal,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: SessionSettings | None = None,
        clock: Clock | None = None,
        store_url: str | None = None,
        sync: SyncSettings | None = None,
        store_flush_interval_s: float = 1.0,
        magic: int = DEFAULT_MAGIC,
        failover_wait_s: float = 5.0,
        handshake_limits: HandshakeLimits | None = None,
        routing: RoutingPolicy | None = None,
        retry: RetryPolicy | None = None,
        health: HealthSettings | None = None,
        events: EventsSection | None = None,
        event_sinks: list[Sink] | None = None,
    ) -> None:
        """``terminals``: each terminal id's key and the accounts it may serve.
        ``store_url``: where positions, deals and account states are kept (usually the
        journal's URL); without it there is no account synchronization and no trailing stop.
        ``magic``: the magic number of orders placed without one. ``failover_wait_s``: how
        long a new order waits for unknown orders of its account carried by another terminal
        to be resolved (DESIGN §4). ``health``: connection-quality sampling and alert
        limits (docs/operations.md, "Connection health and alerts"). ``events``: the outbox
        and its sinks (docs/events.md); None writes no events. ``event_sinks`` replaces the
        sinks ``events`` names (tests)."""
        if not 0 < magic <= 2**31 - 1:
            raise ValueError(f"magic must be in 1..2147483647, got {magic}")
        self._grants = dict(terminals)
        self._magic = magic
        self._failover_wait_s = failover_wait_s
        self._limits = handshake_limits or HandshakeLimits()
        self._routing = routing or RoutingPolicy()
        self._retry = retry or RetryPolicy()
        self._store = (
            SyncStore(store_url, flush_interval_s=store_flush_interval_s) if store_url else None
        )
        self._sync_settings = sync or SyncSettings()
        self._sync: Synchronizer | None = None
        self._positions: PositionService | None = None
        self._trailing: TrailingManager | None = None
        self._journal = journal
        self._host, self._port = host, port
        self._settings = settings or SessionSettings()
        self._clock = clock or SystemClock()
        self._registry: TerminalRegistry | None = None
        self._service: ExecutionService | None = None
        self._tracker: Tracker | None = None
        self._overrides: Overrides | None = None
        self._health_settings = health or HealthSettings()
        self._health: HealthMonitor | None = None
        self._alert_listeners: list[AlertListener] = []
        self._events = (
            None
            if events is None or not events.enabled
            else Events(events, journal, self._store, self._clock, event_sinks)
        )
        if self._events is not None:
            self._alert_listeners.append(self._events.alert_listener())
        self.loop_lag = runtime.LoopLag()
        """The event loop's lag while the bridge runs (``/metrics``; mtgate.runtime)."""
        self.gc_pauses = runtime.GcPauses()
        """The garbage collector's pauses while the bridge runs (``/metrics``)."""
        self.address: tuple[str, int] | None = None

    @classmethod
    def from_config(cls, config: Config, *, clock: Clock | None = None) -> Bridge:
        b = config.bridge
        settings = SessionSettings(
            heartbeat_ms=b.heartbeat_ms,
            handshake_timeout_s=b.handshake_timeout_s,
            request_timeout_s=b.trade_timeout_s,
            read_timeout_s=b.read_timeout_s,
            max_trade_call_s=b.max_trade_call_s,
            trade_queue_wait_s=b.trade_queue_wait_ms / 1000,
            trade_queue_max=b.trade_queue_max,
        )
        journal = open_journal(config.store.url, synchronous=config.store.synchronous)
        s = config.sync
        return cls(
            terminals=config.grants(),
            journal=journal,
            magic=b.magic,
            failover_wait_s=b.failover_wait_s,
            handshake_limits=HandshakeLimits(
                max_pending=b.max_pending_handshakes,
                per_s=b.handshakes_per_s,
                burst=b.handshake_burst,
            ),
            routing=RoutingPolicy(failback_after_s=b.failback_after_s),
            retry=config.retry.policy(),
            host=b.host,
            port=b.port,
            settings=settings,
            clock=clock,
            store_url=config.store.url if s.enabled else None,
            sync=SyncSettings(
                s.interval_ms, s.margin_history_interval_ms, s.account_state_interval_ms
            ),
            store_flush_interval_s=s.store_flush_interval_ms / 1000,
            health=config.health.settings(),
            events=config.events,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        self.loop_lag.start()
        self.gc_pauses.install()
        await self._journal.open()
        book = OrderBook(self._journal, self._clock)
        self._tracker = Tracker(book)
        self._registry = TerminalRegistry(
            self._grants,
            self._tracker,
            clock=self._clock,
            settings=self._settings,
            limits=self._limits,
            routing=self._routing,
            health=self._health_settings,
        )
        self._tracker.attach(self._registry)
        if self._events is not None:
            self._events.attach(self._registry)
        self._service = ExecutionService(
            book,
            self._registry,
            self._tracker,
            magic=self._magic,
            failover_wait_s=self._failover_wait_s,
            retry_policy=self._retry,
        )
        if self._store is not None:
            await self._store.open()
            self._sync = Synchronizer(
                self._store,
                self._clock,
                self._sync_settings,
                journal_hook=self._tracker.recheck,
            )
            self._tracker.sync = self._sync
            self._sync.start(self._registry)
        self._positions = PositionService(self._service, self._sync)
        if self._store is not None and self._sync is not None:
            self._trailing = TrailingManager(self._positions, self._sync, self._store, self._clock)
            await self._trailing.load()
            self._tracker.tick_listeners.append(self._trailing.on_tick)
            self._sync.subscribe(self._trailing.on_sync)
        self._health = HealthMonitor(
            self._registry,
            self._journal,
            self._clock,
            self._health_settings,
            sync=self._sync,
            listeners=self._alert_listeners,
        )
        if self._health_settings.enabled:
            self._health.start()
        if self._events is not None:
            await self._events.start()
        self.address = await self._registry.listen(self._host, self._port)
        return self.address

    async def stop(self) -> None:
        if self._health is not None:
            await self._health.close()  # first: the shutdown's disconnects are not alerts
        if self._registry is not None:
            await self._registry.close()
        if self._tracker is not None:
            await self._tracker.close()
        if self._trailing is not None:
            await self._trailing.close()
        if self._sync is not None:
            await self._sync.close()
        if self._store is not None:
            await self._store.close()
        await self._journal.close()
        if self._events is not None:
            await self._events.close()  # last: it relays what the closing writers wrote
        self.loop_lag.stop()
        self.gc_pauses.remove()

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
    def positions(self) -> PositionService:
        if self._positions is None:
            raise RuntimeError("the bridge is not started")
        return self._positions

    @property
    def trailing(self) -> TrailingManager:
        if self._trailing is None:
            raise RuntimeError("the bridge runs without a store: no trailing stops")
        return self._trailing

    @property
    def sync(self) -> Synchronizer:
        if self._sync is None:
            raise RuntimeError("the bridge runs without a store: no account synchronization")
        return self._sync

    @property
    def store(self) -> SyncStore:
        if self._store is None:
            raise RuntimeError("the bridge runs without a store")
        return self._store

    @property
    def relay(self) -> Relay:
        """The outbox relay (docs/events.md)."""
        if self._events is None or self._events.relay is None:
            raise RuntimeError("the bridge runs without events")
        return self._events.relay

    def now_ms(self) -> int:
        """The bridge's clock (epoch ms)."""
        return self._clock.now_ms()

    @property
    def has_sync(self) -> bool:
        return self._sync is not None

    @property
    def has_events(self) -> bool:
        return self._events is not None and self._events.relay is not None

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
        return await self.service.place_market_order(checked(MarketOrderRequest, request, fields))

    async def execute_signal(
        self, request: SignalRequest | None = None, **fields: Any
    ) -> SignalResult:
        """One trade decision on many accounts, each sized by its risk (mtgate.execution.signals);
        a signal sent again answers with the orders it made (never a second order)."""
        req = checked(SignalRequest, request, fields)
        signals = Signals(self.registry, self.place_market_order, self._find_order)
        return await signals.execute(req)

    async def _find_order(self, account: str, client_order_id: str) -> OrderResult | None:
        return await self.get_order(account, client_order_id=client_order_id)

    async def place_pending_order(
        self, request: PendingOrderRequest | None = None, **fields: Any
    ) -> OrderResult:
        """Place a limit, stop or stop-limit order. Fields as in :class:`PendingOrderRequest`."""
        return await self.service.place_pending_order(checked(PendingOrderRequest, request, fields))

    async def modify_order(
        self, request: ModifyOrderRequest | None = None, **fields: Any
    ) -> OrderResult:
        """Change a placed pending order's price, stop-limit price, SL, TP or expiration."""
        return await self.service.modify_order(checked(ModifyOrderRequest, request, fields))

    async def cancel_order(
        self, request: CancelOrderRequest | None = None, **fields: Any
    ) -> OrderResult:
        """Delete a placed pending order."""
        return await self.service.cancel_order(checked(CancelOrderRequest, request, fields))

    async def get_order(
        self, account: str, *, client_order_id: str | None = None, ticket: int | None = None
    ) -> OrderResult | None:
        """The bridge's record of one order, by client order id or by ticket."""
        query = parse(
            OrderQuery, {"account": account, "client_order_id": client_order_id, "ticket": ticket}
        )
        return await self.service.get_order(query)

    async def list_orders(
        self,
        account: str | None = None,
        statuses: set[OrderStatus] | None = None,
        limit: int = 1000,
    ) -> list[OrderResult]:
        """Orders in the journal, newest first."""
        query = parse(OrdersQuery, {"account": account, "statuses": statuses, "limit": limit})
        return await self.service.list_orders(query)

    async def list_positions(self, account: str, symbol: str = "") -> list[m.PositionReport]:
        """Open positions as the terminal reports them now."""
        query = parse(AccountQuery, {"account": account, "symbol": symbol})
        result: list[m.PositionReport] = await self.service.read(
            query.account, m.Positions(id=0, symbol=query.symbol)
        )
        return result

    async def list_pending_orders(self, account: str, symbol: str = "") -> list[m.OrderReport]:
        """Pending orders as the terminal reports them now."""
        query = parse(AccountQuery, {"account": account, "symbol": symbol})
        result: list[m.OrderReport] = await self.service.read(
            query.account, m.Orders(id=0, symbol=query.symbol)
        )
        return result

    # --- rejections and manual overrides (docs/operations.md) --------------------------------

    async def rejections(
        self,
        since: str = "1h",
        until: str | None = None,
        *,
        by: str | Sequence[str] = "code",
        account: str | None = None,
        symbol: str | None = None,
        platform: str | None = None,
        limit: int = 1000,
    ) -> RejectionReport:
        """Rejection counts and rates of the orders placed in ``[since, until)``, grouped by
        ``by`` (``code``, ``account``, ``symbol``, and one of ``minute`` / ``hour`` /
        ``day``). ``since`` / ``until``: a duration before now (``30m``, ``1h``, ``2d``),
        ``now``, or an ISO 8601 time. Raises ``RejectionQueryError`` naming what is wrong."""
        now_ms = self._clock.now_ms()
        key = None if account is None else _key(account)
        query = rejection_query(
            since_ms=parse_time(since, now_ms, option="since"),
            until_ms=now_ms if until is None else parse_time(until, now_ms, option="until"),
            by=by,
            account_login=None if key is None else key.login,
            account_server=None if key is None else key.server,
            symbol=symbol,
            platform=platform,
            limit=limit,
        )
        return await self.journal.rejections(query)

    async def override_resolve(
        self,
        client_order_id: str,
        status: OrderStatus | str,
        *,
        evidence: str,
        operator: str,
        reason: str,
    ) -> OverrideResult:
        """Mark an order in doubt resolved as a human found it (:meth:`Overrides.mark_resolved`):
        journalled with ``operator``, ``reason`` and ``evidence``."""
        return await self.overrides.mark_resolved(
            client_order_id, status, evidence=evidence, operator=operator, reason=reason
        )

    async def override_cancel(
        self, client_order_id: str, *, operator: str, reason: str
    ) -> OverrideResult:
        """Withdraw a journalled intent nothing carries (:meth:`Overrides.cancel_intent`)."""
        return await self.overrides.cancel_intent(client_order_id, operator=operator, reason=reason)

    async def override_force_attempt(
        self, client_order_id: str, *, operator: str, reason: str
    ) -> OrderResult:
        """Send an order proven not to have executed (rejected or not_found) again, as its
        next attempt (:class:`~mtgate.execution.forced.ForcedAttempts`); its result."""
        forced = ForcedAttempts(self.overrides, self.service)
        return await forced.force_attempt(client_order_id, operator=operator, reason=reason)

    @property
    def overrides(self) -> Overrides:
        """Manual overrides of single orders, through this run's order book."""
        service = self.service
        if self._overrides is None or self._overrides.book is not service.book:
            self._overrides = Overrides(service.book, service.tracker.resolver)
        return self._overrides

    # --- positions ---------------------------------------------------------------------------

    async def modify_position(
        self, request: ModifyPositionRequest | None = None, **fields: Any
    ) -> PositionResult:
        """Change a position's SL and/or TP (validated against stops and freeze levels)."""
        return await self.positions.modify_position(checked(ModifyPositionRequest, request, fields))

    async def close_position(
        self, request: ClosePositionRequest | None = None, **fields: Any
    ) -> OrderResult:
        """Close all or part of a position; the close is journalled as an order."""
        return await self.positions.close_position(checked(ClosePositionRequest, request, fields))

    async def close_by(self, request: CloseByRequest | None = None, **fields: Any) -> OrderResult:
        """Close a position by an opposite one (hedging accounts)."""
        return await self.positions.close_by(checked(CloseByRequest, request, fields))

    async def reverse_position(
        self, request: ReversePositionRequest | None = None, **fields: Any
    ) -> ReversalResult:
        """Turn a position around: one deal on netting, close then open on hedging."""
        return await self.positions.reverse_position(
            checked(ReversePositionRequest, request, fields)
        )

    async def bulk_modify(
        self, request: BulkModifyRequest | None = None, **fields: Any
    ) -> list[BulkItem]:
        """Change SL/TP of every synced position the filter selects."""
        return await self.positions.bulk_modify(checked(BulkModifyRequest, request, fields))

    async def bulk_close(
        self, request: BulkCloseRequest | None = None, **fields: Any
    ) -> list[BulkItem]:
        """Close every synced position the filter selects."""
        return await self.positions.bulk_close(checked(BulkCloseRequest, request, fields))

    async def trail_position(
        self, request: TrailingStopRequest | None = None, **fields: Any
    ) -> TrailingState:
        """Start (or replace) a bridge-managed trailing stop on a position."""
        return await self.trailing.start(checked(TrailingStopRequest, request, fields))

    def cancel_trailing(self, account: str, ticket: int) -> bool:
        """Stop trailing a position (its SL stays where it is); False when none was active."""
        query = parse(OrderQuery, {"account": account, "ticket": ticket})
        assert query.ticket is not None
        return self.trailing.cancel(_key(query.account), query.ticket)

    def synced_positions(self, account: str) -> list[PositionState]:
        """Open positions as of the last snapshot (with the client order ids that opened them)."""
        view = self.sync.views.get(_key(account))
        return [] if view is None else sorted(view.positions.values(), key=lambda p: p.ticket)

    def synced_account(self, account: str) -> m.AccountReport | None:
        """The account's figures as of the last snapshot (None before the first one)."""
        view = self.sync.views.get(_key(account))
        return None if view is None or view.snapshot is None else view.snapshot.account

    # --- terminal pool ------------------------------------------------------------------------

    # --- connection health (docs/operations.md, "Connection health and alerts") ---------------

    @property
    def health(self) -> HealthMonitor:
        if self._health is None:
            raise RuntimeError("the bridge is not started")
        return self._health

    def health_metrics(self) -> list[TerminalHealth]:
        """Every configured terminal's figures at the latest health sample (empty before the
        first): state, heartbeat RTT, request latency p50/p99, trade p99, disconnects, flaps,
        the account's snapshot age."""
        return list(self.health.terminals)

    def account_health(self) -> list[AccountHealth]:
        """Every configured account's figures at the latest health sample: ready terminals,
        snapshot age, trade answers and refusals in the rejection window."""
        return list(self.health.accounts)

    def on_alert(self, listener: AlertListener) -> Callable[[], None]:
        """Call ``listener(alert)`` for every alert raised and cleared (it may subscribe
        before :meth:`start`); returns a function that unsubscribes it. It runs in the
        monitor's task and must not block; one that raises is logged, and the others and
        the monitor go on."""
        self._alert_listeners.append(listener)
        return lambda: self._alert_listeners.remove(listener)

    def active_alerts(self) -> list[Alert]:
        """The alerts raised and not cleared yet."""
        return self.health.active_alerts()

    def terminals(self) -> list[TerminalStatus]:
        """Every configured terminal: state, priority, drained, the accounts it is active for."""
        return self.registry.status()

    def drain_terminal(self, terminal_id: str) -> None:
        """Send no new orders nor position changes to ``terminal_id`` (its other terminals
        take over); what it has in flight finishes there. :class:`InvalidRequest` for an id
        the configuration does not know."""
        try:
            self.registry.drain(terminal_id)
        except KeyError:
            raise InvalidRequest(f"unknown terminal {terminal_id!r}", field="terminal_id") from None

    def enable_terminal(self, terminal_id: str) -> None:
        """Undo :meth:`drain_terminal`: the terminal is eligible for orders again at once."""
        try:
            self.registry.enable(terminal_id)
        except KeyError:
            raise InvalidRequest(f"unknown terminal {terminal_id!r}", field="terminal_id") from None

    async def get_account(self, account: str) -> m.AccountReport:
        """Balance, equity, margin and margin level as the terminal reports them now."""
        key = _key(account)
        report: m.AccountReport = await self.service.read(account, m.AccountInfo(id=0))
        session = self.registry.route(key)
        session.saw_account(report)
        return report


def _key(account: object) -> AccountKey:
    """An API ``account`` argument, or :class:`InvalidRequest` naming it."""
    return account_key(parse(AccountQuery, {"account": account}).account)
