"""The order pipeline: route, pre-validate, journal, send, apply the answer.

Outcomes are results, not exceptions: a refusal, a server rejection and a lost answer all come
back as an :class:`OrderResult` whose status and ``error`` say what happened. Only a request
that does not parse raises (:class:`InvalidRequest`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from mtgate import logs
from mtgate.domain.codes import Classification, lookup
from mtgate.domain.enums import OrderType
from mtgate.domain.orders import (
    CLIENT_ID_MAX,
    OrderStatus,
    Trigger,
    comment_for,
    new_client_id,
    valid_client_id,
)
from mtgate.domain.records import OrderRecord
from mtgate.execution.book import OrderBook, result_of
from mtgate.execution.requests import (
    PENDING_TYPES,
    CancelOrderRequest,
    InvalidRequest,
    MarketOrderRequest,
    ModifyOrderRequest,
    OrderError,
    OrderResult,
    PendingOrderRequest,
    Side,
)
from mtgate.execution.tracker import Tracker
from mtgate.execution.validation import Market, OrderIntent, Refusal, prevalidate
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.sessions.errors import NotRoutable, RequestTimeout, SessionClosed, TerminalRejected
from mtgate.sessions.registry import TerminalRegistry
from mtgate.sessions.session import AccountKey, TerminalSession

log = logs.get("mtgate.execution")


def _account(text: str) -> AccountKey:
    try:
        return AccountKey.parse(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="account") from None


def _client_id(given: str | None, clock_ns: int) -> str:
    if given is None:
        return new_client_id(clock_ns)
    if not valid_client_id(given):  # typed requests skip msgspec's checks: check again
        raise InvalidRequest(
            f"client_order_id must be 1-{CLIENT_ID_MAX} characters of [A-Za-z0-9._-]",
            field="client_order_id",
        )
    return given


def rejection(session: TerminalSession, exc: TerminalRejected) -> OrderError | None:
    """The terminal's refusal of a change as an error; None for a no-op answered as an error
    (MT4 1, MT5 10025: nothing changed, which is what was asked)."""
    entry = lookup(session.platform, exc.code)
    if entry.classification == Classification.OK:
        return None
    return OrderError(
        source="terminal",
        message=exc.message,
        code=exc.code,
        name=exc.name,
        classification=entry.classification,
    )


def link_lost(session: TerminalSession, exc: Exception) -> OrderError:
    """A change sent without an answer. A trade timeout also ends the session: a terminal that
    does not answer a trade in time is not healthy."""
    if isinstance(exc, RequestTimeout):
        session.close(f"trade request timed out ({exc})", code="trade_timeout")
    return OrderError(source="link", message=str(exc), classification=Classification.UNKNOWN)


class ExecutionService:
    """Places and manages orders on the terminals of a :class:`TerminalRegistry`."""

    def __init__(self, book: OrderBook, registry: TerminalRegistry, tracker: Tracker) -> None:
        self.book = book
        self.registry = registry
        self.tracker = tracker
        self.clock = book.clock

    # --- new orders --------------------------------------------------------------------------

    async def place_market_order(self, req: MarketOrderRequest) -> OrderResult:
        t0 = time.perf_counter_ns()
        order_type = OrderType.BUY if req.side == Side.BUY else OrderType.SELL
        record, session = await self.new_record(
            req.account,
            req.client_order_id,
            req.signal_id,
            req.symbol,
            order_type,
            req.volume,
            req.magic,
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
        refused = await self._refuse_if_invalid(record, session, intent, t0)
        if refused is not None:
            return refused
        assert isinstance(session, TerminalSession)
        msg = m.MarketOrder(
            id=0,
            symbol=req.symbol,
            order_type=order_type,
            volume=req.volume,
            magic=req.magic,
            comment=record.comment,
            price=req.price or 0.0,
            deviation=req.deviation_points,
            sl=req.sl or 0.0,
            tp=req.tp or 0.0,
        )
        return await self.submit(record, session, msg, t0, new_id=req.client_order_id is None)

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
            req.magic,
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
        refused = await self._refuse_if_invalid(record, session, intent, t0)
        if refused is not None:
            return refused
        assert isinstance(session, TerminalSession)
        msg = m.PendingOrder(
            id=0,
            symbol=req.symbol,
            order_type=order_type,
            volume=req.volume,
            price=req.price,
            magic=req.magic,
            comment=record.comment,
            stoplimit=req.stoplimit or 0.0,
            sl=req.sl or 0.0,
            tp=req.tp or 0.0,
            expiration_ms=req.expiration_ms or 0,
            time_type=2 if req.expiration_ms else 0,
        )
        return await self.submit(record, session, msg, t0, new_id=req.client_order_id is None)

    async def new_record(
        self,
        account_text: str,
        client_id: str | None,
        signal_id: str | None,
        symbol: str,
        order_type: OrderType,
        volume: float,
        magic: int,
    ) -> tuple[OrderRecord, TerminalSession | NotRoutable]:
        account = _account(account_text)
        cid = _client_id(client_id, time.time_ns())
        if self.book.get(cid) is not None:  # the journal's unique key catches older ones
            raise InvalidRequest(
                f"client_order_id {cid!r} was already used", field="client_order_id"
            )
        session: TerminalSession | NotRoutable
        try:
            session = self.registry.route(account)
        except NotRoutable as exc:
            session = exc  # refused below, after the record exists to be journalled
        identity = session.identity if isinstance(session, TerminalSession) else None
        record = OrderRecord(
            order_id=str(uuid.uuid4()),
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
        return record, session

    async def _refuse_if_invalid(
        self,
        record: OrderRecord,
        session: TerminalSession | NotRoutable,
        intent: OrderIntent,
        t0: int,
    ) -> OrderResult | None:
        if isinstance(session, NotRoutable):
            return await self.refuse(record, Refusal("account", "not_routable", str(session)), t0)
        assert session.identity is not None
        tick = session.view.ticks.get(intent.symbol)
        market = Market(
            platform=session.identity.platform,
            margin_mode=session.identity.margin_mode,
            spec=session.view.symbols.get(intent.symbol),
            tick=tick,
            account=session.view.account,
            # Expirations are in trade-server time; the last tick's time is the bridge's best view of it.
            now_ms=tick.time_ms if tick is not None else self.clock.now_ms(),
        )
        found = prevalidate(intent, market)
        if found is None:
            return None
        return await self.refuse(record, found, t0)

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
            classification=Classification.REJECTED,
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
    ) -> OrderResult:
        """Journal, send, await the answer, apply it. The frame leaves only after the journal
        write returned; a lost answer makes the order UNKNOWN and starts its resolution."""
        cid = record.client_order_id
        await self.book.submitted(record, new_id=new_id)
        self.book.deferred[cid] = []
        self.book.carrier[cid] = session
        error: OrderError | None = None
        try:
            try:
                future = session.request(msg)
            except SessionClosed as exc:
                error = await self._never_sent(record, exc)
                return result_of(record, error)
            try:
                result = await future
            except TerminalRejected as exc:
                record.execution_time_ms = (time.perf_counter_ns() - t0) / 1e6
                error = await self._rejected(record, exc, session)
            except (RequestTimeout, SessionClosed, codec.ProtocolError) as exc:
                record.execution_time_ms = (time.perf_counter_ns() - t0) / 1e6
                error = await self._lost(record, session, exc)
            else:
                record.execution_time_ms = (time.perf_counter_ns() - t0) / 1e6
                await self.tracker.apply_trade_result(record, result)
        finally:
            # Whatever happened above, the events that arrived meanwhile are applied and the
            # order stops being "awaiting its answer".
            await self.tracker.replay_deferred(record)
        if error is not None and error.source == "link" and record.status != OrderStatus.UNKNOWN:
            error = None  # the terminal's own events proved the outcome the lost answer would have
        self.book.forget_finished(record)
        return result_of(record, error)

    async def _never_sent(self, record: OrderRecord, exc: SessionClosed) -> OrderError:
        """The session closed between routing and sending: the frame never left, which is a
        proof of absence in itself."""
        await self.book.move(record, Trigger.LOSE, f"session closed before sending: {exc}")
        await self.book.move(record, Trigger.PROVE_ABSENT, "the frame was never written")
        return OrderError(
            source="bridge",
            message=f"not sent: {exc}",
            field="account",
            rule="not_routable",
            classification=Classification.RETRYABLE,
        )

    async def _rejected(
        self, record: OrderRecord, exc: TerminalRejected, session: TerminalSession
    ) -> OrderError:
        entry = lookup(session.platform, exc.code)
        error = OrderError(
            source="terminal",
            message=exc.message,
            code=exc.code,
            name=exc.name,
            classification=entry.classification,
        )
        unknown = entry.classification == Classification.UNKNOWN
        trigger = Trigger.LOSE if unknown else Trigger.REJECT
        if not self.book.can(record, trigger):
            # Its events already proved an outcome (a lookup after a sequence gap, say): the
            # answer adds nothing to trust over that proof.
            log.warning(
                "answer after the outcome was proven",
                client_order_id=record.client_order_id,
                status=record.status.value,
                retcode=exc.code,
            )
            return error
        record.rejection_code, record.rejection_name, record.rejection_reason = (
            exc.code,
            exc.name,
            exc.message,
        )
        if unknown:
            await self.book.move(record, trigger, f"{exc.code} {exc.name}: outcome unknown")
            # The terminal's link to its trade server is in doubt: end the session so that,
            # once the EA is back, a lookup can prove the order absent instead of guessing.
            session.close(f"outcome-unknown answer {exc.code} {exc.name}", code="outcome_unknown")
            self.tracker.resolve_later(record)
        else:
            await self.book.move(record, trigger, f"{exc.code} {exc.name}: {exc.message}")
            log.info(
                "order rejected",
                client_order_id=record.client_order_id,
                retcode=exc.code,
                name=exc.name,
            )
        return error

    async def _lost(
        self, record: OrderRecord, session: TerminalSession, exc: Exception
    ) -> OrderError:
        error = OrderError(source="link", message=str(exc), classification=Classification.UNKNOWN)
        if not self.book.can(record, Trigger.LOSE):
            return error  # already settled by its events
        await self.book.move(record, Trigger.LOSE, f"answer lost: {exc}")
        log.warning(
            "order outcome unknown", client_order_id=record.client_order_id, reason=str(exc)
        )
        if isinstance(exc, RequestTimeout):
            # A terminal that does not answer a trade in time is not healthy. Closing the
            # session also makes the EA drop its queued trades, which is what allows the
            # resolution to prove an order absent instead of guessing.
            session.close(f"trade request timed out ({exc})", code="trade_timeout")
        self.tracker.resolve_later(record)
        return error

    # --- placed orders -----------------------------------------------------------------------

    async def modify_order(self, req: ModifyOrderRequest) -> OrderResult:
        record, session, problem = await self._placed_order(
            req.account, req.client_order_id, req.ticket
        )
        if problem is not None:
            return problem
        assert record is not None and session is not None and record.mt_order_id is not None
        price = req.price if req.price is not None else (record.requested_price or 0.0)
        stoplimit = req.stoplimit if req.stoplimit is not None else (record.stoplimit_price or 0.0)
        sl = req.sl if req.sl is not None else (record.stop_loss or 0.0)
        tp = req.tp if req.tp is not None else (record.take_profit or 0.0)
        expiration = (
            req.expiration_ms if req.expiration_ms is not None else (record.expiration_ms or 0)
        )
        intent = OrderIntent(
            record.symbol, record.order_type, record.volume, price, sl, tp, stoplimit, expiration
        )
        refusal = self.tracker.check_modify(session, record, intent)
        if refusal is not None:
            return result_of(
                record,
                OrderError(
                    source="bridge",
                    message=refusal.message,
                    field=refusal.field,
                    rule=refusal.rule,
                    classification=Classification.REJECTED,
                ),
            )
        msg = m.ModifyOrder(
            id=0,
            ticket=record.mt_order_id,
            price=price,
            sl=sl,
            tp=tp,
            stoplimit=stoplimit,
            expiration_ms=expiration,
            time_type=2 if expiration else 0,
        )
        await self.book.note(
            record,
            f"modify requested: price={price} sl={sl} tp={tp} stoplimit={stoplimit} "
            f"expiration_ms={expiration}",
        )
        error = await self._placed_request(record, session, msg)
        if error is None:
            record.requested_price, record.stoplimit_price = price, stoplimit or None
            record.stop_loss, record.take_profit, record.expiration_ms = (
                sl or None,
                tp or None,
                expiration or None,
            )
            await self.book.note(record, "modified")
        return result_of(record, error)

    async def cancel_order(self, req: CancelOrderRequest) -> OrderResult:
        record, session, problem = await self._placed_order(
            req.account, req.client_order_id, req.ticket
        )
        if problem is not None:
            return problem
        assert record is not None and session is not None and record.mt_order_id is not None
        await self.book.note(record, "cancel requested")
        error = await self._placed_request(
            record, session, m.CancelOrder(id=0, ticket=record.mt_order_id)
        )
        if error is None and self.book.can(record, Trigger.CANCEL):
            await self.book.move(record, Trigger.CANCEL, "cancelled on request")
        return result_of(record, error)

    async def _placed_order(
        self, account_text: str, client_id: str | None, ticket: int | None
    ) -> tuple[OrderRecord | None, TerminalSession | None, OrderResult | None]:
        if (client_id is None) == (ticket is None):
            raise InvalidRequest(
                "name the order by exactly one of client_order_id or ticket",
                field="client_order_id",
            )
        account = _account(account_text)
        record = await self.book.load(client_id, account, ticket)
        if record is None:
            raise InvalidRequest(
                f"no order {client_id or ticket} of the bridge on account {account}",
                field="client_order_id" if client_id else "ticket",
            )
        if record.status != OrderStatus.PLACED:
            return (
                record,
                None,
                result_of(
                    record,
                    OrderError(
                        source="bridge",
                        message=f"the order is {record.status.value}, not placed",
                        field="client_order_id",
                        rule="status",
                        classification=Classification.REJECTED,
                    ),
                ),
            )
        try:
            session = self.registry.route(account)
        except NotRoutable as exc:
            return (
                record,
                None,
                result_of(
                    record,
                    OrderError(
                        source="bridge",
                        message=str(exc),
                        field="account",
                        rule="not_routable",
                        classification=Classification.RETRYABLE,
                    ),
                ),
            )
        return record, session, None

    async def _placed_request(
        self, record: OrderRecord, session: TerminalSession, msg: m.Request
    ) -> OrderError | None:
        self.book.carrier[record.client_order_id] = session
        try:
            await session.request(msg)
        except TerminalRejected as exc:
            error = rejection(session, exc)
            if error is None:
                return None  # a no-op sent as an error by a lenient EA: nothing changed
            await self.book.note(
                record, f"{type(msg).__name__} refused: {exc.code} {exc.name}: {exc.message}"
            )
            self.tracker.refresh_later(record)
            return error
        except (RequestTimeout, SessionClosed, codec.ProtocolError) as exc:
            await self.book.note(record, f"{type(msg).__name__} outcome unknown: {exc}")
            self.tracker.refresh_later(record)
            return link_lost(session, exc)
        return None

    # --- queries -----------------------------------------------------------------------------

    async def get_order(
        self, account: str, *, client_order_id: str | None = None, ticket: int | None = None
    ) -> OrderResult | None:
        if (client_order_id is None) == (ticket is None):
            raise InvalidRequest(
                "name the order by exactly one of client_order_id or ticket",
                field="client_order_id",
            )
        record = await self.book.load(client_order_id, _account(account), ticket)
        return None if record is None else result_of(record)

    async def list_orders(
        self,
        account: str | None = None,
        statuses: set[OrderStatus] | None = None,
        limit: int = 1000,
    ) -> list[OrderResult]:
        login = _account(account).login if account else None
        records = await self.book.journal.list_orders(
            account_login=login, statuses=statuses, limit=limit
        )
        return [result_of(self.book.get(r.client_order_id) or r) for r in records]

    async def read(self, account: str, msg: m.Request) -> Any:
        """Send a read to the account's terminal and return its typed result."""
        session = self.registry.route(_account(account))
        return await session.request(msg, session.settings.read_timeout_s)
