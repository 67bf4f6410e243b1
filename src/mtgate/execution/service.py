"""The order pipeline: route, pre-validate, journal, send, apply the answer.

Outcomes are results, not exceptions: a refusal, a server rejection and a lost answer all come
back as an :class:`OrderResult` whose status and ``error`` say what happened. Only a request
that does not parse raises (:class:`InvalidRequest`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mtgate import logs
from mtgate.domain.codes import Classification
from mtgate.domain.enums import OrderType
from mtgate.domain.orders import (
    CLIENT_ID_MAX,
    comment_for,
    new_client_id,
    new_order_id,
    valid_client_id,
)
from mtgate.domain.records import OrderRecord
from mtgate.domain.retry import RetryOptions, RetryPolicy
from mtgate.execution.book import OrderBook, result_of
from mtgate.execution.placed import PlacedOrders
from mtgate.execution.requests import (
    FILLING_MODES,
    PENDING_TYPES,
    CancelOrderRequest,
    InvalidRequest,
    MarketOrderRequest,
    ModifyOrderRequest,
    OrderError,
    OrderQuery,
    OrderResult,
    OrdersQuery,
    PendingOrderRequest,
    RetryRequest,
    Side,
)
from mtgate.execution.retries import OrderRetries, RetryRunner
from mtgate.execution.submit import Submitter
from mtgate.execution.tracker import Tracker
from mtgate.execution.validation import Market, OrderIntent, Refusal, prevalidate
from mtgate.protocol import messages as m
from mtgate.sessions.errors import NotRoutable
from mtgate.sessions.registry import TerminalRegistry
from mtgate.sessions.session import AccountKey, SessionState, TerminalSession

log = logs.get("mtgate.execution")

_SIDE_TYPES = {Side.BUY: OrderType.BUY, Side.SELL: OrderType.SELL}


def busy_refusal(session: TerminalSession) -> Refusal | None:
    """Admission: a trade that would wait for its terminal beyond the queue's bound
    (``trade_queue_wait_s``, or ``trade_queue_max`` trades) at the recent service time, or
    could not then finish within its deadline, is refused now rather than left to time out
    (an unknown outcome)."""
    settings = session.settings
    queued = session.trades_queued()
    wait_ns = session.trade_wait_ns(high=True)
    if queued < settings.trade_queue_max and (
        wait_ns == 0
        or (
            wait_ns <= settings.trade_queue_wait_s * 1e9
            and wait_ns + session.trade_service_high_ns <= settings.request_timeout_s * 1e9
        )
    ):
        return None
    return Refusal(
        "account",
        "terminal_busy",
        f"terminal {session.terminal_id} is busy: {queued} trade(s) queued, expected wait "
        f"{wait_ns / 1e6:.0f} ms at {session.trade_service_ns / 1e6:.1f} ms each, beyond the "
        f"{settings.trade_queue_wait_s:g} s bound or the {settings.request_timeout_s:g} s "
        "deadline; nothing was sent",
    )


def account_key(text: str) -> AccountKey:
    """``<login>@<server>``, or :class:`InvalidRequest` naming the field ``account``.

    Parsed once per text: an engine sends the same few accounts on every order."""
    key = _ACCOUNTS.get(text)
    if key is not None:
        return key
    try:
        key = AccountKey.parse(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="account") from None
    if len(_ACCOUNTS) >= _ACCOUNTS_KEPT:
        _ACCOUNTS.clear()
    _ACCOUNTS[text] = key
    return key


_ACCOUNTS: dict[str, AccountKey] = {}
_ACCOUNTS_KEPT = 4096
"""Valid account texts parsed (a bound: callers may send any number of distinct texts)."""


def _client_id(given: str | None, clock_ns: int) -> str:
    if given is None:
        return new_client_id(clock_ns)
    if not valid_client_id(given):  # typed requests skip msgspec's checks: check again
        raise InvalidRequest(
            f"client_order_id must be 1-{CLIENT_ID_MAX} characters of [A-Za-z0-9._-], "
            "not ending in '.' and one or two digits (an attempt's suffix)",
            field="client_order_id",
        )
    return given


class ExecutionService:
    """Places and manages orders on the terminals of a :class:`TerminalRegistry`.

    Args:
        magic: the magic number of orders the caller gives none (non-zero: MT4 EAs report a
            magic-0 order's deals like a manual trade's, docs/protocol.md §10).
        failover_wait_s: how long a new order waits while orders of its account carried by
            another terminal are still unknown (DESIGN §4), before it is refused.
    """

    def __init__(
        self,
        book: OrderBook,
        registry: TerminalRegistry,
        tracker: Tracker,
        *,
        magic: int = 20250101,
        failover_wait_s: float = 5.0,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.book = book
        self.registry = registry
        self.tracker = tracker
        self.clock = book.clock
        self.magic = magic
        self.failover_wait_s = failover_wait_s
        self._submitter = Submitter(book, tracker)
        self.retries = RetryRunner(
            retry_policy or RetryPolicy(),
            book,
            self.route_new,
            registry.alternative,
            self._submitter.deadline,
            tracker.spawn,
        )
        self._placed = PlacedOrders(book, registry, tracker, account_key)

    @property
    def submitter(self) -> Submitter:
        return self._submitter

    # --- new orders --------------------------------------------------------------------------

    async def place_market_order(self, req: MarketOrderRequest) -> OrderResult:
        t0 = time.perf_counter_ns()
        order_type = _SIDE_TYPES[req.side]
        record, session = await self.new_record(
            req.account,
            req.client_order_id,
            req.signal_id,
            req.symbol,
            order_type,
            req.volume,
            self.magic if req.magic is None else req.magic,
        )
        record.stop_loss, record.take_profit = req.sl, req.tp
        record.deviation_points = req.deviation_points
        tick = session.view.ticks.get(req.symbol) if isinstance(session, TerminalSession) else None
        if req.price is not None:
            record.requested_price = req.price
        elif tick is not None:
            record.requested_price = tick.ask if order_type.is_buy else tick.bid
        intent = OrderIntent(
            req.symbol, order_type, req.volume, req.price or 0.0, req.sl or 0.0, req.tp or 0.0
        )
        refusal = self._refusal(session, intent)
        if refusal is not None:
            return await self.refuse(record, refusal, t0)
        assert isinstance(session, TerminalSession)
        msg = m.MarketOrder(
            id=0,
            symbol=req.symbol,
            order_type=order_type,
            volume=req.volume,
            magic=record.magic,
            comment=record.comment,
            price=req.price or 0.0,
            deviation=req.deviation_points,
            sl=req.sl or 0.0,
            tp=req.tp or 0.0,
            filling=-1 if req.filling is None else FILLING_MODES[req.filling],
        )
        retries = self._retries(record, req.retry)
        return await self._submitter.submit(
            record, session, msg, t0, new_id=req.client_order_id is None, retries=retries
        )

    def _retries(self, record: OrderRecord, req: RetryRequest | None) -> OrderRetries | None:
        if req is None:
            return self.retries.for_order(record, None)
        options = RetryOptions(
            enabled=req.enabled,
            market_closed_wait_s=req.market_closed_wait_s,
            min_volume=req.min_volume,
            round_volume=req.round_volume,
            next_filling=req.next_filling,
        )
        return self.retries.for_order(record, options)

    async def place_pending_order(self, req: PendingOrderRequest) -> OrderResult:
        t0 = time.perf_counter_ns()
        order_type = PENDING_TYPES[req.kind]
        if order_type.is_stop_limit and req.stoplimit is None:
            raise InvalidRequest("a stop-limit order needs stoplimit", field="stoplimit")
        if not order_type.is_stop_limit and req.stoplimit is not None:
            raise InvalidRequest("stoplimit applies to stop-limit orders only", field="stoplimit")
        record, session = await self.new_record(
            req.account,
            req.client_order_id,
            req.signal_id,
            req.symbol,
            order_type,
            req.volume,
            self.magic if req.magic is None else req.magic,
        )
        record.requested_price, record.stoplimit_price = req.price, req.stoplimit
        record.stop_loss, record.take_profit, record.expiration_ms = (
            req.sl,
            req.tp,
            req.expiration_ms,
        )
        intent = OrderIntent(
            req.symbol,
            order_type,
            req.volume,
            req.price,
            req.sl or 0.0,
            req.tp or 0.0,
            req.stoplimit or 0.0,
            req.expiration_ms or 0,
        )
        refusal = self._refusal(session, intent)
        if refusal is not None:
            return await self.refuse(record, refusal, t0)
        assert isinstance(session, TerminalSession)
        msg = m.PendingOrder(
            id=0,
            symbol=req.symbol,
            order_type=order_type,
            volume=req.volume,
            price=req.price,
            magic=record.magic,
            comment=record.comment,
            stoplimit=req.stoplimit or 0.0,
            sl=req.sl or 0.0,
            tp=req.tp or 0.0,
            expiration_ms=req.expiration_ms or 0,
            time_type=2 if req.expiration_ms else 0,
        )
        retries = self._retries(record, req.retry)
        return await self._submitter.submit(
            record, session, msg, t0, new_id=req.client_order_id is None, retries=retries
        )

    async def new_record(
        self,
        account_text: str,
        client_id: str | None,
        signal_id: str | None,
        symbol: str,
        order_type: OrderType,
        volume: float,
        magic: int,
        *,
        session: TerminalSession | None = None,
    ) -> tuple[OrderRecord, TerminalSession | NotRoutable]:
        """The record of a new order and the session it goes to: ``session`` when the caller
        already chose (and checked) it, else the account's route."""
        account = account_key(account_text)
        cid = _client_id(client_id, time.time_ns())
        if self.book.get(cid) is not None:  # the journal's unique key catches older ones
            raise InvalidRequest(
                f"client_order_id {cid!r} was already used", field="client_order_id"
            )
        routed = self._route_at_once(account, session)
        if routed is None:
            routed = await self.route_new(account, session)
        identity = routed.identity if isinstance(routed, TerminalSession) else None
        record = OrderRecord(
            order_id=new_order_id(),
            client_order_id=cid,
            account_login=account.login,
            account_server=account.server,
            terminal_id=identity.terminal_id if identity else "",
            platform=identity.platform if identity else self.registry.platform_of(account),
            symbol=symbol,
            order_type=order_type,
            volume=volume,
            magic=magic,
            comment=comment_for(cid),
            placed_at_ms=self.clock.now_ms(),
            signal_id=signal_id,
        )
        return record, routed

    def _route_at_once(
        self, account: AccountKey, chosen: TerminalSession | None
    ) -> TerminalSession | NotRoutable | None:
        """The route when nothing of the account is in doubt elsewhere (the usual case, no
        suspension); None when :meth:`route_new` must wait."""
        try:
            session = chosen if chosen is not None else self.registry.route(account)
        except NotRoutable as exc:
            return exc
        if session.state != SessionState.READY:
            return NotRoutable(f"terminal {session.terminal_id} is {session.state.value}")
        return (
            None if self.book.doubt_elsewhere(account, other_than=session.terminal_id) else session
        )

    async def route_new(
        self,
        account: AccountKey,
        chosen: TerminalSession | None = None,
        *,
        ignoring: str | None = None,
    ) -> TerminalSession | NotRoutable:
        """The ready session for a new order of ``account``, or why there is none.

        While orders of the account that another terminal carried are in doubt (the carrier
        died with them unanswered), a new order waits, up to ``failover_wait_s``, for them to
        be resolved (DESIGN §4): otherwise an engine that replaces an unknown order could get
        both filled, the dead carrier having still been inside the trade call."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            try:
                session = chosen if chosen is not None else self.registry.route(account)
            except NotRoutable as exc:
                return exc
            if session.state != SessionState.READY:
                return NotRoutable(f"terminal {session.terminal_id} is {session.state.value}")
            doubt = self.book.in_doubt(account, other_than=session.terminal_id)
            if ignoring is not None:  # a retry's own order is in doubt until its next attempt
                doubt.pop(ignoring, None)
            if not doubt:
                return session
            now = loop.time()
            deadline = now + self.failover_wait_s if deadline is None else deadline
            if now >= deadline:
                carriers = ", ".join(sorted(set(doubt.values())))
                return NotRoutable(
                    f"{len(doubt)} order(s) of account {account} carried by terminal(s) "
                    f"{carriers} are still unknown; new orders wait until they are resolved "
                    f"(waited {self.failover_wait_s:g} s)",
                    rule="failover_pending",
                )
            await self.book.doubt_changed(account, deadline - now)

    def _refusal(
        self, session: TerminalSession | NotRoutable, intent: OrderIntent
    ) -> Refusal | None:
        """Why the order must not be sent (its route, or pre-validation), or None."""
        if isinstance(session, NotRoutable):
            return Refusal("account", session.rule, str(session))
        busy = busy_refusal(session)
        if busy is not None:
            return busy
        session.reserve_trade()  # the next order's admission counts this one
        assert session.identity is not None
        tick = session.view.ticks.get(intent.symbol)
        market = Market(
            platform=session.identity.platform,
            margin_mode=session.identity.margin_mode,
            spec=session.view.symbols.get(intent.symbol),
            tick=tick,
            account=session.view.account,
            now_ms=session.server_now_ms(),  # expirations are in the trade server's time
        )
        return prevalidate(intent, market)

    async def refuse(self, record: OrderRecord, refusal: Refusal, t0: int) -> OrderResult:
        record.rejection_name = f"bridge:{refusal.rule}"
        record.rejection_reason = f"{refusal.field}: {refusal.message}"
        record.execution_time_ms = (time.perf_counter_ns() - t0) / 1e6
        await self.book.refused(record)
        log.info(
            "order refused by pre-validation",
            client_order_id=record.client_order_id,
            field=refusal.field,
            rule=refusal.rule,
            reason=refusal.message,
        )
        error = OrderError(
            source="bridge",
            message=refusal.message,
            field=refusal.field,
            rule=refusal.rule,
            classification=(
                Classification.RETRYABLE
                if refusal.rule == "terminal_busy"
                else Classification.REJECTED
            ),
        )
        return result_of(record, error)

    async def submit(
        self,
        record: OrderRecord,
        session: TerminalSession,
        msg: m.Request,
        t0: int,
        *,
        new_id: bool,
        retries: OrderRetries | None = None,
    ) -> OrderResult:
        """Journal, send, await the answer, apply it (:class:`Submitter`), with ``retries``
        (None: one attempt)."""
        return await self._submitter.submit(
            record, session, msg, t0, new_id=new_id, retries=retries
        )

    # --- placed orders -----------------------------------------------------------------------

    async def modify_order(self, req: ModifyOrderRequest) -> OrderResult:
        return await self._placed.modify_order(req)

    async def cancel_order(self, req: CancelOrderRequest) -> OrderResult:
        return await self._placed.cancel_order(req)

    # --- queries -----------------------------------------------------------------------------

    async def get_order(self, query: OrderQuery) -> OrderResult | None:
        if (query.client_order_id is None) == (query.ticket is None):
            raise InvalidRequest(
                "name the order by exactly one of client_order_id or ticket",
                field="client_order_id",
            )
        record = await self.book.load(
            query.client_order_id, account_key(query.account), query.ticket
        )
        return None if record is None else result_of(record)

    async def list_orders(self, query: OrdersQuery) -> list[OrderResult]:
        account = account_key(query.account) if query.account else None
        records = await self.book.journal.list_orders(
            account_login=account.login if account else None,
            account_server=account.server if account else None,
            statuses=query.statuses,
            limit=query.limit,
        )
        return [result_of(self.book.get(r.client_order_id) or r) for r in records]

    async def read(self, account: str, msg: m.Request) -> Any:
        """Send a read to the account's terminal and return its typed result."""
        session = self.registry.route(account_key(account))
        return await session.request(msg, session.settings.read_timeout_s)
