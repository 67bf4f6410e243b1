"""One account's state on the simulated server: positions, pending orders, history, indices.

Everything a market order touches is O(1) in the number of open positions: per-(symbol, side)
running sums (count, Σvolume, Σvolume·open price) give floating profit and margin exactly,
because profit is linear in the open price and margin is linear in volume (reference §5.1);
per-symbol trigger heaps give pending activations and SL/TP; ticket and client-id indices give
``OrderGet`` without a scan; history lists are appended in clock order, so a time range is two
binary searches.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field

from mtgate.domain.enums import MarginMode, OrderType
from mtgate.domain.orders import comment_id
from mtgate.domain.symbols import SymbolSpec
from mtgate.protocol.messages import DealReport, OrderReport, PositionReport
from mtsim.arith import Arithmetic
from mtsim.triggers import TriggerBook

VOLUME_DECIMALS = 8
"""Volumes are rounded to this many decimals after arithmetic (0.1 + 0.2 must be 0.3)."""

_client_id = comment_id


@dataclass(slots=True, eq=False)
class Position:
    """An open position (MT4: an open market order, whose ticket is the position)."""

    ticket: int
    identifier: int
    symbol: str
    buy: bool
    volume: float
    price_open: float
    time_ms: int
    magic: int
    comment: str
    sl: float = 0.0
    tp: float = 0.0
    time_update_ms: int = 0
    version: int = 0
    origin: int = 0
    """MT4: the ticket that first opened this volume when a partial close renumbered it (0:
    this ticket); with ``time_ms`` it orders positions for the FIFO rule."""
    report: PositionReport | None = None
    """The report's fields that only change with the position, as of ``report_version``
    (:func:`mtsim.reports.position_reports`). Every change of a reported field moves
    ``version`` (or ``time_update_ms``), so a stale template is never used."""
    report_version: int = -1

    @property
    def age(self) -> tuple[int, int]:
        """FIFO order: open time, then the opening ticket."""
        return self.time_ms, self.origin or self.ticket


@dataclass(slots=True, eq=False)
class Pending:
    """A placed pending order. ``expires_at_ms`` is the effective expiry (0: none);
    ``time_type``/``expiration_ms`` are as requested, for the no-change test of a modify."""

    ticket: int
    symbol: str
    type: OrderType
    volume: float
    price: float
    stoplimit: float
    sl: float
    tp: float
    time_type: int
    expiration_ms: int
    expires_at_ms: int
    filling: int
    magic: int
    comment: str
    time_setup_ms: int
    version: int = 0


@dataclass(slots=True)
class SideBook:
    """Running sums over the open positions of one symbol in one direction."""

    count: int = 0
    volume: float = 0.0
    volume_price: float = 0.0

    def add(self, volume: float, price: float) -> None:
        self.count += 1
        self.volume += volume
        self.volume_price += volume * price

    def remove(self, volume: float, price: float) -> None:
        self.count -= 1
        if self.count == 0:  # reset exactly: no rounding residue on an empty side
            self.volume = self.volume_price = 0.0
        else:
            self.volume -= volume
            self.volume_price -= volume * price


@dataclass(slots=True)
class SymbolBook:
    """An account's positions, pending volume and trigger levels on one symbol."""

    triggers: TriggerBook
    buy: SideBook = field(default_factory=SideBook)
    sell: SideBook = field(default_factory=SideBook)
    positions: dict[int, Position] = field(default_factory=dict)
    pending_buy_volume: float = 0.0
    pending_sell_volume: float = 0.0
    margin: float = -1.0
    """Cached margin of the positions (depends on them only, see mtsim.money); -1: stale."""
    arith: Arithmetic | None = None

    def side(self, buy: bool) -> SideBook:
        return self.buy if buy else self.sell


@dataclass(slots=True)
class Refs:
    """What one ticket or client id points at. Live tickets may be stale (closed, filled):
    readers check them against the live dicts."""

    pending: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    history: list[int] = field(default_factory=list)
    deals: list[int] = field(default_factory=list)


class Account:
    """State of one trading account. Only the server's ledger mutates it."""

    def __init__(
        self,
        *,
        login: int,
        margin_mode: MarginMode,
        balance: float,
        leverage: int,
        currency: str,
        margin_so_call: float,
        margin_so_so: float,
        limit_orders: int,
        symbols: Mapping[str, SymbolSpec],
    ) -> None:
        self.login = login
        self.margin_mode = margin_mode
        self.netting = margin_mode != MarginMode.HEDGING
        self.balance = balance
        self.leverage = leverage
        self.currency = currency
        self.margin_so_call = margin_so_call
        self.margin_so_so = margin_so_so
        self.limit_orders = limit_orders
        self._symbols = symbols
        self.positions: dict[int, Position] = {}
        self.identifiers: dict[int, int] = {}  # position identifier -> current ticket
        self.closed: set[int] = set()  # tickets of positions that left the account
        self.pending: dict[int, Pending] = {}
        self.books: dict[str, SymbolBook] = {}
        self.history_orders: list[OrderReport] = []
        self.deals: list[DealReport] = []
        self._history_times: list[int] = []
        self._deal_times: list[int] = []
        self.by_ticket: dict[int, Refs] = {}
        self.by_client: dict[str, Refs] = {}
        self._last_comment: str | None = None
        self._last_refs: Refs | None = None
        self.expiries: list[tuple[int, int, int]] = []  # (expires_at_ms, ticket, version)

    def book(self, symbol: str) -> SymbolBook:
        book = self.books.get(symbol)
        if book is None:
            book = SymbolBook(TriggerBook(self._symbols[symbol].point * 1e-3))
            self.books[symbol] = book
        return book

    def arith(self, spec: SymbolSpec) -> Arithmetic:
        """The symbol's margin/profit formulas for this account (rebuilt if the spec changed)."""
        book = self.book(spec.name)
        arith = book.arith
        if arith is None or arith.spec is not spec:
            arith = book.arith = Arithmetic(spec, self.leverage, self.currency)
            book.margin = -1.0
        return arith

    def netting_position(self, symbol: str) -> Position | None:
        book = self.books.get(symbol)
        if book is None or not book.positions:
            return None
        return next(iter(book.positions.values()))

    def _refs(self, ticket: int) -> Refs:
        refs = self.by_ticket.get(ticket)
        if refs is None:
            refs = self.by_ticket[ticket] = Refs()
        return refs

    def _client_refs(self, comment: str) -> Refs | None:
        # A fill indexes the same comment object three times (position, order, deal).
        if comment is self._last_comment:
            return self._last_refs
        client_id = _client_id(comment)
        refs = None
        if client_id is not None:
            refs = self.by_client.get(client_id)
            if refs is None:
                refs = self.by_client[client_id] = Refs()
        self._last_comment, self._last_refs = comment, refs
        return refs

    # --- positions ------------------------------------------------------------------------

    def add_position(self, pos: Position) -> None:
        self.positions[pos.ticket] = pos
        self.identifiers[pos.identifier] = pos.ticket
        book = self.book(pos.symbol)
        book.positions[pos.ticket] = pos
        book.side(pos.buy).add(pos.volume, pos.price_open)
        book.margin = -1.0
        book.triggers.add_position(pos.ticket, pos.version, buy=pos.buy, sl=pos.sl, tp=pos.tp)
        refs = self._client_refs(pos.comment)
        if refs is not None:
            refs.positions.append(pos.ticket)

    def change_position(
        self, pos: Position, *, volume: float, price_open: float, sl: float, tp: float
    ) -> None:
        """Resize / re-price a position in place (netting add or reduce, partial close):
        running sums and trigger levels follow."""
        book = self.books[pos.symbol]
        side = book.side(pos.buy)
        side.remove(pos.volume, pos.price_open)
        pos.volume, pos.price_open, pos.sl, pos.tp = volume, price_open, sl, tp
        side.add(volume, price_open)
        book.margin = -1.0
        pos.version += 1
        book.triggers.stale += 1
        book.triggers.add_position(pos.ticket, pos.version, buy=pos.buy, sl=sl, tp=tp)

    def set_stops(self, pos: Position, *, sl: float, tp: float) -> None:
        """New SL/TP of a position: its old trigger levels go stale, volume and price (and so
        the running sums) do not change."""
        pos.sl, pos.tp = sl, tp
        pos.version += 1
        triggers = self.books[pos.symbol].triggers
        triggers.stale += 1
        triggers.add_position(pos.ticket, pos.version, buy=pos.buy, sl=sl, tp=tp)

    def remove_position(self, pos: Position) -> None:
        del self.positions[pos.ticket]
        self.closed.add(pos.ticket)
        self.identifiers.pop(pos.identifier, None)
        book = self.books[pos.symbol]
        del book.positions[pos.ticket]
        book.side(pos.buy).remove(pos.volume, pos.price_open)
        book.margin = -1.0
        pos.version += 1
        book.triggers.stale += 1

    # --- pending orders -------------------------------------------------------------------

    def add_pending(self, order: Pending) -> None:
        self.pending[order.ticket] = order
        book = self.book(order.symbol)
        self._pending_volume(book, order, order.volume)
        self.arm(order)
        if order.expires_at_ms:
            heapq.heappush(self.expiries, (order.expires_at_ms, order.ticket, order.version))
        refs = self._client_refs(order.comment)
        if refs is not None:
            refs.pending.append(order.ticket)

    def arm(self, order: Pending) -> None:
        """Put the order's current trigger level in its symbol's book."""
        self.books[order.symbol].triggers.add_order(
            order.ticket,
            order.version,
            buy=order.type.is_buy,
            limit=order.type.is_limit,
            price=order.price,
        )

    def touch_pending(self, order: Pending) -> None:
        """The order changed: old trigger and expiry entries go stale, new ones are added."""
        order.version += 1
        self.books[order.symbol].triggers.stale += 1
        self.arm(order)
        if order.expires_at_ms:
            heapq.heappush(self.expiries, (order.expires_at_ms, order.ticket, order.version))

    def remove_pending(self, order: Pending) -> None:
        del self.pending[order.ticket]
        book = self.books[order.symbol]
        self._pending_volume(book, order, -order.volume)
        order.version += 1
        book.triggers.stale += 1

    @staticmethod
    def _pending_volume(book: SymbolBook, order: Pending, delta: float) -> None:
        if order.type.is_buy:
            book.pending_buy_volume = round(book.pending_buy_volume + delta, VOLUME_DECIMALS)
        else:
            book.pending_sell_volume = round(book.pending_sell_volume + delta, VOLUME_DECIMALS)

    # --- history --------------------------------------------------------------------------

    def record_order(self, report: OrderReport) -> None:
        """Append a history order; its time is ``time_done_ms`` (clock order)."""
        index = len(self.history_orders)
        self.history_orders.append(report)
        self._history_times.append(report.time_done_ms)
        self._refs(report.ticket).history.append(index)
        if report.position_id and report.position_id != report.ticket:
            self._refs(report.position_id).history.append(index)
        refs = self._client_refs(report.comment)
        if refs is not None:
            refs.history.append(index)

    def record_deal(self, deal: DealReport) -> None:
        index = len(self.deals)
        self.deals.append(deal)
        self._deal_times.append(deal.time_ms)
        self._refs(deal.order).deals.append(index)
        if deal.position_id and deal.position_id != deal.order:
            self._refs(deal.position_id).deals.append(index)
        refs = self._client_refs(deal.comment)
        if refs is not None:
            refs.deals.append(index)

    def history_position(self, since_ms: int) -> tuple[int, int]:
        """How many deals and history orders come before ``since_ms`` (the list positions
        where history from ``since_ms`` starts)."""
        return (
            bisect.bisect_left(self._deal_times, since_ms),
            bisect.bisect_left(self._history_times, since_ms),
        )

    def history(self, since_ms: int, until_ms: int) -> tuple[list[OrderReport], list[DealReport]]:
        """History orders and deals with a time in ``[since_ms, until_ms]``."""
        lo = bisect.bisect_left(self._history_times, since_ms)
        hi = bisect.bisect_right(self._history_times, until_ms)
        dlo = bisect.bisect_left(self._deal_times, since_ms)
        dhi = bisect.bisect_right(self._deal_times, until_ms)
        return self.history_orders[lo:hi], self.deals[dlo:dhi]

    # --- lookups --------------------------------------------------------------------------

    def find_by_ticket(
        self, ticket: int
    ) -> tuple[list[Pending], list[Position], list[OrderReport], list[DealReport]]:
        """Everything that belongs to ``ticket``: the pending order with it, the position whose
        ticket or identifier it is, history orders with it as ticket or position id, deals
        with it as order or position id. Deal tickets are not matched (a separate MT5 counter:
        the same number may be an unrelated order)."""
        pending = [self.pending[ticket]] if ticket in self.pending else []
        positions: list[Position] = []
        pos_ticket = self.identifiers.get(ticket, ticket)
        if pos_ticket in self.positions:
            positions.append(self.positions[pos_ticket])
        refs = self.by_ticket.get(ticket)
        if refs is None:
            return pending, positions, [], []
        return (
            pending,
            positions,
            [self.history_orders[i] for i in refs.history],
            [self.deals[i] for i in refs.deals],
        )

    def find_by_client(
        self, client_id: str, *, mt4: bool
    ) -> tuple[list[Pending], list[Position], list[OrderReport], list[DealReport]]:
        """What an EA's ``order_get(client_id=...)`` finds (docs/protocol.md §9): the live
        pending orders and positions whose *current* comment carries ``client_id``, the
        history orders whose comment carries it, and the deals of those orders.

        MT4 (§9, §10): the EA scans the pool and the history for such tickets and synthesises
        the deals of those tickets only, so a ticket whose comment was rewritten (``to #N`` /
        ``from #T`` after a partial close) takes its deals with it, even the IN deal booked
        while the comment still carried the id. MT5 (§9): also every deal whose own comment
        carries it, and every position opened by a matching order (its identifier), whatever
        their comments say now."""
        refs = self.by_client.get(client_id)
        if refs is None:
            return [], [], [], []
        pending = [
            self.pending[t] for t in dict.fromkeys(refs.pending) if self._live_pending(t, client_id)
        ]
        positions = [
            self.positions[t]
            for t in dict.fromkeys(refs.positions)
            if self._live_position(t, client_id)
        ]
        history = [self.history_orders[i] for i in refs.history]
        orders = [o.ticket for o in pending] + [h.ticket for h in history]
        deals: set[int] = set()
        if mt4:
            orders += [p.ticket for p in positions]
        else:
            deals.update(refs.deals)
            positions += self._opened_by(orders, positions)
        for ticket in dict.fromkeys(orders):
            ticket_refs = self.by_ticket.get(ticket)
            if ticket_refs is not None:
                deals.update(i for i in ticket_refs.deals if self.deals[i].order == ticket)
        return pending, positions, history, [self.deals[i] for i in sorted(deals)]

    def _opened_by(self, orders: list[int], found: list[Position]) -> list[Position]:
        """MT5: the open positions whose identifier is one of ``orders`` and not yet found."""
        tickets = (self.identifiers.get(t) for t in dict.fromkeys(orders))
        seen = {p.ticket for p in found}
        return [self.positions[t] for t in tickets if t is not None and t not in seen]

    def _live_pending(self, ticket: int, client_id: str) -> bool:
        order = self.pending.get(ticket)
        return order is not None and _client_id(order.comment) == client_id

    def _live_position(self, ticket: int, client_id: str) -> bool:
        pos = self.positions.get(ticket)
        return pos is not None and _client_id(pos.comment) == client_id
