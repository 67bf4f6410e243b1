"""The simulated trade server (the broker side of a MetaTrader terminal), without sockets.

:class:`TradeServer` executes the protocol's requests for its accounts with MetaTrader's rules
(reference §1-§5, §7) and reports what the terminal would: results, refusals with the
platform's own codes, and trade events. It never reads the time itself (injected clock) and
draws every random number from generators seeded by its configuration and its feed, so two
servers built alike and fed the same calls produce identical results.

Events (``on_event``) are collected while an operation changes the state and dispatched when it
is complete, still synchronously inside the call that caused them (``handle``, ``set_quote``,
``step``, or the feed's own quotes). A listener that raises propagates to that caller; the
state is already consistent by then.

Time: ``handle`` does not move prices; it first expires what is due at the clock's time.
``step`` advances the feed to the clock (each generated quote triggers pending orders and SL/TP
in turn) and expires orders; ``set_quote`` forces a price. History times come from the clock.

Cost with many positions: a quote costs O(accounts + what it triggers), never O(positions):
floating profit and margin come from running sums (:mod:`mtsim.money`), SL/TP and pending
levels from trigger heaps (:mod:`mtsim.triggers`); a position's own price and profit are
computed only when a report of it is built (reads, :meth:`TradeServer.snapshot`).

Snapshots (feature "sync", docs/protocol.md §5.3): :meth:`TradeServer.snapshot` builds an
account's state and the history added since a :class:`SyncCursor`; the terminal pushes them.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from mtgate.domain.clock import Clock
from mtgate.domain.enums import MarginMode, Platform
from mtgate.domain.symbols import SymbolSpec
from mtgate.protocol.messages import (
    AccountInfo,
    AccountReport,
    CancelOrder,
    CloseBy,
    ClosePosition,
    DealReport,
    GetTick,
    History,
    HistoryReport,
    Lookup,
    MarketOrder,
    ModifyOrder,
    ModifyPosition,
    OrderGet,
    OrderReport,
    Orders,
    PendingOrder,
    PositionReport,
    Positions,
    Request,
    Snapshot,
    Symbols,
    Tick,
    TradeResult,
)
from mtsim import errors, manual
from mtsim.book import Account, Pending, Position
from mtsim.config import ServerConfig, Session, market_open
from mtsim.errors import TradeError
from mtsim.ledger import Tickets, Venue
from mtsim.money import figures
from mtsim.positions import close_by, close_position, modify_position
from mtsim.prices import PriceFeed, Quote
from mtsim.reports import Valuation, account_report, pending_report, position_reports
from mtsim.stopout import stop_out
from mtsim.symbols import DEFAULT_SYMBOLS, mt4_view
from mtsim.trading import cancel_order, market_order, modify_order, pending_order
from mtsim.validation import Checks, closed
from mtsim.watch import expire_due, process_quote

__all__ = [
    "SNAPSHOT_HISTORY_MAX",
    "ExecutedRequest",
    "ServerConfig",
    "Session",
    "SyncCursor",
    "TradeError",
    "TradeServer",
    "UnknownAccountError",
]

EventListener = Callable[[str, object], None]

SNAPSHOT_HISTORY_MAX = 500
"""At most this many deals, and this many history orders, in one snapshot (oldest first; the
rest follow in the next snapshots), so that a snapshot with a long backlog still fits in a
frame (docs/protocol.md §13): at most ~300 bytes each, ~275 KB in all, which leaves room
for ~2,500 positions."""


class UnknownAccountError(LookupError):
    """A login the server has no account for (a wiring error of the caller)."""


class ExecutedRequest(NamedTuple):
    """Ground truth: one request ``handle`` ran and what came of it (payload or TradeError)."""

    time_ms: int
    login: int
    request: Request
    outcome: object


class SyncCursor(NamedTuple):
    """Where a snapshot subscription stands in an account's history: how many deals and how
    many history orders of the account it has reported (or skipped as older than its
    ``since_ms``).

    The history lists are append-only, so list positions never repeat nor skip a record,
    however many records share a millisecond."""

    deals: int
    orders: int


class TradeServer:
    """One simulated trade server (MT4 or MT5) with its accounts.

    Args:
        name: the server name accounts report.
        platform: MT4 or MT5 rules and codes.
        clock: server time.
        feed: prices; must quote every symbol of ``symbols``.
        symbols: the tradable symbols (default :data:`mtsim.symbols.DEFAULT_SYMBOLS`).
        config: server behaviour (default :class:`ServerConfig`).
    """

    def __init__(
        self,
        *,
        name: str,
        platform: Platform,
        clock: Clock,
        feed: PriceFeed,
        symbols: Mapping[str, SymbolSpec] | None = None,
        config: ServerConfig | None = None,
    ) -> None:
        self.name = name
        self.platform = platform
        self.clock = clock
        self.feed = feed
        given = DEFAULT_SYMBOLS if symbols is None else symbols
        self.symbols: dict[str, SymbolSpec] = {
            name: mt4_view(spec) if platform == Platform.MT4 else spec
            for name, spec in given.items()
        }
        missing = sorted(set(self.symbols) - set(feed.symbols))
        if missing:
            raise ValueError(f"the feed does not quote {', '.join(missing)}")
        cfg = config or ServerConfig()
        self._venue = Venue(
            platform,
            name,
            clock,
            feed,
            self.symbols,
            cfg,
            Tickets(platform),
            random.Random(cfg.seed),
        )
        self._checks = Checks(platform, cfg, self._venue.closures)
        self._accounts: dict[int, Account] = {}
        self._listeners: dict[int, list[EventListener]] = {}
        self.executed: list[ExecutedRequest] = []
        self._handlers: dict[type[Request], Callable[[Account, Any], object]] = {
            AccountInfo: self._account_info,
            Symbols: self._symbols,
            GetTick: self._tick,
            Positions: self._positions,
            Orders: self._orders,
            OrderGet: self._order_get,
            History: self._history,
            MarketOrder: functools.partial(market_order, self._venue, self._checks),
            PendingOrder: functools.partial(pending_order, self._venue, self._checks),
            ModifyOrder: functools.partial(modify_order, self._venue, self._checks),
            CancelOrder: functools.partial(cancel_order, self._venue, self._checks),
            ModifyPosition: functools.partial(modify_position, self._venue, self._checks),
            ClosePosition: functools.partial(close_position, self._venue, self._checks),
            CloseBy: functools.partial(close_by, self._venue, self._checks),
        }
        self._unlisten = feed.listen(self._on_quote)

    @property
    def config(self) -> ServerConfig:
        return self._venue.config

    @config.setter
    def config(self, value: ServerConfig) -> None:
        """Swap the configuration at run time (fault injection: disconnect, algo off, ...)."""
        self._venue.config = value
        self._checks.config = value

    def close(self) -> None:
        """Stop listening to the feed."""
        self._unlisten()

    # --- accounts and events --------------------------------------------------------------

    def open_account(
        self,
        *,
        login: int,
        margin_mode: MarginMode = MarginMode.HEDGING,
        balance: float = 100_000.0,
        leverage: int = 100,
        currency: str = "USD",
        margin_so_call: float = 100.0,
        margin_so_so: float = 50.0,
        limit_orders: int = 0,
    ) -> None:
        """Create an account. MT4 accounts are always hedging (reference §1.3)."""
        if self.platform == Platform.MT4 and margin_mode != MarginMode.HEDGING:
            raise ValueError("MT4 accounts are always hedging")
        if margin_mode == MarginMode.EXCHANGE:
            raise ValueError("exchange margin mode is not simulated")
        if login in self._accounts:
            raise ValueError(f"account {login} exists")
        if leverage <= 0:
            raise ValueError("leverage must be positive")
        self._accounts[login] = Account(
            login=login,
            margin_mode=margin_mode,
            balance=balance,
            leverage=leverage,
            currency=currency,
            margin_so_call=margin_so_call,
            margin_so_so=margin_so_so,
            limit_orders=limit_orders,
            symbols=self.symbols,
        )

    def on_event(self, login: int, callback: EventListener) -> Callable[[], None]:
        """Call ``callback(name, payload)`` for each ``"order"``/``"deal"``/``"account"`` event
        of ``login``;
        returns the unsubscribe function."""
        listeners = self._listeners.setdefault(login, [])
        listeners.append(callback)

        def unsubscribe() -> None:
            if callback in listeners:
                listeners.remove(callback)

        return unsubscribe

    def _account(self, login: int) -> Account:
        acct = self._accounts.get(login)
        if acct is None:
            raise UnknownAccountError(f"no account {login} on {self.name}")
        return acct

    def _flush(self) -> None:
        """Deliver the queued events; after a batch with a deal (a fill, a close, a balance
        operation: the account changed), the account as it is now (docs/protocol.md §7)."""
        venue = self._venue
        while venue.outbox:
            events, venue.outbox = venue.outbox, []
            changed: dict[int, None] = {}
            for login, name, payload in events:
                if name == "deal":
                    changed[login] = None
                for callback in list(self._listeners.get(login, ())):
                    callback(name, payload)
            for login in changed:
                listeners = self._listeners.get(login)
                if not listeners or login not in self._accounts:
                    continue
                report = self._account_info(self._accounts[login], AccountInfo(id=0))
                for callback in list(listeners):
                    callback("account", report)

    # --- requests -------------------------------------------------------------------------

    def handle(self, login: int, request: Request, *, liquidity: float | None = None) -> object:
        """Execute ``request`` for ``login``; returns its result payload (protocol
        ``RESULT_TYPES``) or raises :class:`TradeError` with the platform's code.

        ``liquidity``: a market order meets a market that fills only this share of its
        volume (the ``partial_fill`` fault, :func:`mtsim.trading.market_order`).
        ``Subscribe`` belongs to the terminal, not the server: ValueError."""
        acct = self._account(login)
        handler = self._handlers.get(type(request))
        if handler is None:
            raise ValueError(f"{type(request).__name__} is not a trade-server request")
        if liquidity is not None:
            if not isinstance(request, MarketOrder):
                raise ValueError("liquidity applies to market orders only")
            order, venue, checks = request, self._venue, self._checks

            def handler(acct: Account, _: object) -> object:
                return market_order(venue, checks, acct, order, liquidity=liquidity)

        now = self.clock.now_ms()
        self._expire(now)
        try:
            result = handler(acct, request)
        except TradeError as exc:
            self.executed.append(ExecutedRequest(now, login, request, exc))
            self._flush()
            raise
        self.executed.append(ExecutedRequest(now, login, request, result))
        self._flush()
        return result

    # --- injected market closures (mtsim.faults ``market_closed``) -------------------------

    def close_market(self, symbol: str, until_ms: int, *, from_ms: int | None = None) -> None:
        """Close ``symbol`` from ``from_ms`` (default: the clock's time) until ``until_ms``,
        server time, as a session table would (reference §8): trade requests on it are
        refused 132 / 10018 at step 4 and its quotes trigger no pending order nor SL/TP. A
        later call replaces the window; ``until_ms`` at or before the start reopens it."""
        spec = self._spec(symbol)
        start = self.clock.now_ms() if from_ms is None else from_ms
        if until_ms <= start:
            self._venue.closures.pop(spec.name, None)
        else:
            self._venue.closures[spec.name] = (start, until_ms)

    def position_symbol(self, login: int, ticket: int) -> str:
        """The symbol of the open position ``ticket`` of ``login``; "" when there is none."""
        pos = self._account(login).positions.get(ticket)
        return "" if pos is None else pos.symbol

    @property
    def closure_refusals(self) -> int:
        """Trade requests refused so far because of an injected closure (not a session)."""
        return self._checks.closure_refusals

    def _expire(self, now: int) -> None:
        for account in self._accounts.values():
            if account.expiries and account.expiries[0][0] <= now:
                expire_due(self._venue, account, now)

    # --- manual trades: the account holder, not the bridge (see mtsim.manual) ----------------

    def manual_market_order(
        self,
        login: int,
        symbol: str,
        order_type: int,
        volume: float,
        *,
        sl: float = 0.0,
        tp: float = 0.0,
        comment: str = "",
        magic: int = 0,
    ) -> TradeResult:
        """A market order placed by hand: deal reason CLIENT (MT4: derived from comment and
        magic, :mod:`mtsim.manual`), not in :attr:`executed`."""
        order = (symbol, order_type, volume, sl, tp, comment, magic)
        return self._manual(login, lambda venue, acct: manual.market(venue, acct, *order))

    def manual_close(self, login: int, ticket: int, volume: float = 0.0) -> TradeResult:
        """Close a position by hand (all of it when ``volume`` is 0)."""
        return self._manual(login, lambda venue, acct: manual.close(venue, acct, ticket, volume))

    def open_positions(
        self,
        login: int,
        symbol: str,
        count: int,
        volume: float,
        *,
        order_type: int | None = None,
        sl: float = 0.0,
        tp: float = 0.0,
        comment: str = "",
        magic: int = 0,
    ) -> list[int]:
        """Open ``count`` positions by hand at market (benchmarks, tests that need a full
        account); returns their tickets.

        Each is a :meth:`manual_market_order` (every check, margin, running sums, history and
        events as usual; deal reason as for a manual trade). ``order_type`` None alternates
        buy and sell, starting with a buy. A refusal (e.g. no money) raises TradeError with
        the positions opened so far left open. A netting account holds one position per
        symbol: ValueError for ``count`` > 1."""
        acct = self._account(login)
        if acct.netting and count > 1:
            raise ValueError("a netting account holds one position per symbol")
        self._expire(self.clock.now_ms())
        tickets: list[int] = []
        try:
            for i in range(count):
                side = order_type if order_type is not None else i % 2
                order = (symbol, side, volume, sl, tp, comment, magic)
                result = manual.market(self._venue, acct, *order)
                tickets.append(result.order)
        finally:
            self._flush()
        return tickets

    def _manual(self, login: int, run: Callable[[Venue, Account], TradeResult]) -> TradeResult:
        acct = self._account(login)
        self._expire(self.clock.now_ms())
        try:
            return run(self._venue, acct)
        finally:
            self._flush()

    def _account_info(self, acct: Account, _: AccountInfo) -> AccountReport:
        fig = figures(acct, self.symbols, self.feed)
        return account_report(
            acct,
            fig,
            server=self.name,
            company=self.config.company,
            trade_expert=self.config.trade_allowed,
        )

    def _spec(self, name: str) -> SymbolSpec:
        return self._checks.symbol(self.symbols, name)

    def _symbols(self, _: Account, req: Symbols) -> list[SymbolSpec]:
        """The specs of ``names`` (all: every symbol); a name the terminal does not know is
        left out, not an error (docs/protocol.md §5.1)."""
        if not req.names:
            return list(self.symbols.values())
        return [self.symbols[n] for n in dict.fromkeys(req.names) if n in self.symbols]

    def _tick(self, _: Account, req: GetTick) -> Tick:
        if req.symbol not in self.symbols:  # a read: the runtime error, not a trade retcode
            raise errors.unknown_symbol_read(self.platform == Platform.MT4, req.symbol)
        bid, ask, time_ms = self.feed.quote(req.symbol)
        return Tick(symbol=req.symbol, bid=bid, ask=ask, time_ms=time_ms)

    def _position_reports(
        self, acct: Account, positions: Iterable[Position] | None = None
    ) -> list[PositionReport]:
        """Reports of ``positions`` (default: every open position of ``acct``, in opening
        order), with one quote and one formula lookup per symbol."""

        def valuation(symbol: str) -> Valuation:
            bid, ask, _ = self.feed.quote(symbol)
            return acct.arith(self.symbols[symbol]), bid, ask

        return position_reports(
            acct.positions.values() if positions is None else positions, valuation
        )

    def _order_report(self, order: Pending) -> OrderReport:
        bid, ask, _ = self.feed.quote(order.symbol)
        return pending_report(order, bid, ask)

    def _positions(self, acct: Account, req: Positions) -> list[PositionReport]:
        if req.symbol:
            book = acct.books.get(self._spec(req.symbol).name)
            return self._position_reports(acct, book.positions.values()) if book else []
        return self._position_reports(acct)

    def _orders(self, acct: Account, req: Orders) -> list[OrderReport]:
        if req.symbol:
            self._spec(req.symbol)
        return [
            self._order_report(o)
            for o in acct.pending.values()
            if not req.symbol or o.symbol == req.symbol
        ]

    def _order_get(self, acct: Account, req: OrderGet) -> Lookup:
        if bool(req.ticket) == bool(req.client_id):
            self._checks.fail(
                errors.BAD_REQUEST, "order_get needs exactly one of ticket and client_id"
            )
        if req.ticket:
            pending, positions, history, deals = acct.find_by_ticket(req.ticket)
        else:
            mt4 = self.platform == Platform.MT4
            pending, positions, history, deals = acct.find_by_client(req.client_id, mt4=mt4)
        return Lookup(
            orders=[self._order_report(o) for o in pending],
            positions=self._position_reports(acct, positions),
            history_orders=history,
            deals=deals,
        )

    def _history(self, acct: Account, req: History) -> HistoryReport:
        until = req.until_ms or self.clock.now_ms()
        orders, deals = acct.history(req.since_ms, until)
        return HistoryReport(orders=orders, deals=deals)

    # --- snapshots (feature "sync") ----------------------------------------------------------

    def sync_cursor(self, login: int, since_ms: int = 0) -> SyncCursor:
        """The cursor of a new subscription: its first snapshot carries the history with a
        time at or after ``since_ms``."""
        return SyncCursor(*self._account(login).history_position(since_ms))

    def snapshot(self, login: int, cursor: SyncCursor) -> tuple[Snapshot, SyncCursor]:
        """The account's state at the clock's time, and the history added after ``cursor``;
        returns the snapshot and the cursor of the next one.

        State: the account report, every open position and every pending order. History: the
        deals and history orders after the cursor, at most :data:`SNAPSHOT_HISTORY_MAX` of
        each (the rest come with the next snapshots). Like a read, it first expires what is
        due (those events are dispatched before this returns).

        Cost: O(positions + pending orders + new history), no sorting and no scan of the
        history; a position report copies a per-position template and adds price and profit
        (:func:`mtsim.reports.position_reports`)."""
        acct = self._account(login)
        now = self.clock.now_ms()
        self._expire(now)
        self._flush()
        deals_end = min(len(acct.deals), cursor.deals + SNAPSHOT_HISTORY_MAX)
        orders_end = min(len(acct.history_orders), cursor.orders + SNAPSHOT_HISTORY_MAX)
        snap = Snapshot(
            time_ms=now,
            account=self._account_info(acct, AccountInfo(id=0)),
            positions=self._position_reports(acct),
            orders=[self._order_report(o) for o in acct.pending.values()],
            deals=acct.deals[cursor.deals : deals_end],
            history_orders=acct.history_orders[cursor.orders : orders_end],
        )
        return snap, SyncCursor(deals_end, orders_end)

    # --- prices and time ------------------------------------------------------------------

    def set_quote(self, symbol: str, bid: float, ask: float) -> None:
        """Force a price now; pending orders and SL/TP it reaches are processed at once."""
        self.feed.set_quote(symbol, bid, ask, self.clock.now_ms())

    def step(self) -> None:
        """Advance the feed to the clock (triggers run on each new quote), then expire what
        is due."""
        now = self.clock.now_ms()
        self.feed.advance(now)
        for acct in self._accounts.values():
            expire_due(self._venue, acct, now)
        self._flush()

    def _on_quote(self, symbol: str, bid: float, ask: float, time_ms: int) -> None:
        self._expire(time_ms)
        spec = self.symbols.get(symbol)
        trading = market_open(self.config.sessions, symbol, time_ms)
        if spec is not None and trading and not closed(self._venue.closures, symbol, time_ms):
            quote = Quote(bid, ask, time_ms)
            for acct in self._accounts.values():
                process_quote(self._venue, acct, spec, quote)
            for acct in self._accounts.values() if self.config.stop_out else ():
                book = acct.books.get(symbol)
                if book is not None and book.positions:
                    stop_out(self._venue, acct)
        self._flush()

    # --- ground truth for tests -----------------------------------------------------------

    def account(self, login: int) -> AccountReport:
        return self._account_info(self._account(login), AccountInfo(id=0))

    def positions(self, login: int) -> list[PositionReport]:
        return self._position_reports(self._account(login))

    def pending_orders(self, login: int) -> list[OrderReport]:
        return [self._order_report(o) for o in self._account(login).pending.values()]

    def history_orders(self, login: int) -> list[OrderReport]:
        return list(self._account(login).history_orders)

    def deals(self, login: int) -> list[DealReport]:
        return list(self._account(login).deals)
