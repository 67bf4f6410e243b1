"""Sending a new order: journal the intent, send it, apply the answer (DESIGN §4).

The frame leaves only after the intent is durable; a lost answer makes the order UNKNOWN and
starts its resolution, never a resend. A caller cancelled meanwhile cancels only its own wait.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mtgate import logs
from mtgate.domain.codes import Classification, lookup
from mtgate.domain.orders import OrderAction, OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.execution.answers import (
    REJECTION_NAME_MAX,
    REJECTION_REASON_MAX,
    contradicts_code,
    not_sent,
    position_gone,
    unsent,
)
from mtgate.execution.book import OrderBook, result_of
from mtgate.execution.requests import InvalidRequest, OrderError, OrderResult
from mtgate.execution.retries import OrderRetries
from mtgate.execution.tracker import Tracker
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.sessions.errors import (
    RequestTimeout,
    SessionClosed,
    TerminalRejected,
    TradeWithdrawn,
)
from mtgate.sessions.session import TerminalSession

log = logs.get("mtgate.execution")


class Submitter:
    """Journals, sends and concludes new orders (opening orders and closes alike)."""

    def __init__(self, book: OrderBook, tracker: Tracker) -> None:
        self.book = book
        self.tracker = tracker

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
        """Journal, send, await the answer, apply it. The frame leaves only after the journal
        write returned; a lost answer makes the order UNKNOWN and starts its resolution.

        With ``retries``, an attempt refused with a retryable code, or proven absent after
        an unknown outcome, is followed by another (:mod:`mtgate.execution.retries`), each
        journalled before it leaves; the result is the last attempt's, with every attempt.

        A caller cancelled meanwhile (``asyncio.timeout`` around the call, a failing task
        group) cancels only its own wait: an order journalled but not sent is proven absent,
        one sent has its answer applied in the background, as if the caller were there."""
        record.sent_server_ms = session.server_time_ms or None
        deadline_ns = self._deadline(record, session)
        refused = await self._journal_intent(record, new_id, t0)
        if refused is not None:
            return refused
        while True:
            result = await self._send(record, session, msg, t0, deadline_ns, retries)
            if retries is None:
                return result
            if retries.pending is None:
                return retries.with_attempts(record, result)
            following = await retries.next_attempt(record, session, msg, result)
            if isinstance(following, OrderResult):
                return following
            session, msg = following
            deadline_ns = retries.deadline_ns

    async def send_attempt(
        self,
        record: OrderRecord,
        session: TerminalSession,
        msg: m.Request,
        t0: int,
        deadline_ns: int,
    ) -> OrderResult:
        """Send one attempt journalled by the caller (a forced attempt), without retries."""
        return await self._send(record, session, msg, t0, deadline_ns, None)

    async def _send(
        self,
        record: OrderRecord,
        session: TerminalSession,
        msg: m.Request,
        t0: int,
        deadline_ns: int,
        retries: OrderRetries | None,
    ) -> OrderResult:
        """Send one attempt (journalled already) and conclude it."""
        cid = record.client_order_id
        self.book.deferred[cid] = []
        self.book.carrier[cid] = session
        try:
            future = session.request(msg, deadline_ns=deadline_ns)
        except (SessionClosed, TradeWithdrawn) as exc:
            error: OrderError | None = await self._never_sent(record, exc)
            await self.tracker.replay_deferred(record)
            self.book.forget_finished(record)
            return result_of(record, error)
        return await self._conclude(record, session, future, msg.id, t0, retries)

    def deadline(self, record: OrderRecord, session: TerminalSession) -> int:
        """:meth:`_deadline`, for a retry's next attempt."""
        return self._deadline(record, session)

    def _deadline(self, record: OrderRecord, session: TerminalSession) -> int:
        """The trade's deadline (monotonic ns): the bridge waits until then, and a terminal
        with the feature ``deadline`` never starts the trade after it. Journalled with the
        intent, in wall-clock time (a restarted bridge has no monotonic clock to compare), one
        millisecond late rather than early, so that a proof of absence from it never comes
        too soon (docs/protocol.md §4.4)."""
        clock = self.book.clock
        timeout_ms = session.settings.request_timeout_s * 1000
        deadline_ns = clock.monotonic_ns() + int(timeout_ms * 1_000_000)
        if session.tells_deadlines:  # then request() converts it for the EA
            record.deadline_at_ms = clock.now_ms() + int(timeout_ms) + 1
        else:  # not told to this terminal: an earlier attempt's deadline proves nothing now
            record.deadline_at_ms = None
        return deadline_ns

    async def _conclude_later(
        self,
        record: OrderRecord,
        session: TerminalSession,
        future: asyncio.Future[Any],
        req_id: int,
        t0: int,
    ) -> None:
        await self._conclude(record, session, future, req_id, t0)

    async def _journal_intent(
        self, record: OrderRecord, new_id: bool, t0: int
    ) -> OrderResult | None:
        """Journal the intent durably; a refusal result when the journal cannot, None when
        it is journalled. A reused client order id raises :class:`InvalidRequest`."""
        try:
            await self.book.submitted(record, new_id=new_id)
        except InvalidRequest:
            raise
        except asyncio.CancelledError:
            # The intent may still commit (group commit, or the database's worker thread):
            # once it has, it is settled as never sent.
            self.tracker.spawn(self._abandon(record), f"abandon:{record.client_order_id}")
            raise
        except Exception as exc:
            record.execution_time_ms = (time.perf_counter_ns() - t0) / 1e6
            log.error(
                "journal write failed; order not sent",
                client_order_id=record.client_order_id,
                error=repr(exc),
            )
            record.status = OrderStatus.REJECTED
            return result_of(
                record,
                OrderError(
                    source="bridge",
                    message=f"the journal could not record the order, so it was not sent: {exc}",
                    field="account",
                    rule="journal_unavailable",
                    classification=Classification.RETRYABLE,
                ),
            )
        return None

    async def _abandon(self, record: OrderRecord) -> None:
        """A caller cancelled while its intent was being journalled: nothing was sent, so the
        journalled intent (if it landed) is proven absent."""
        stored = await self.book.journal.get(record.client_order_id)
        if stored is None or stored.order_id != record.order_id:
            return
        if stored.status != OrderStatus.SUBMITTED:
            return
        self.book.track(record)
        await self.book.move(record, Trigger.LOSE, "the caller was cancelled before sending")
        await self.book.move(record, Trigger.PROVE_ABSENT, "the frame was never written")
        self.book.forget_finished(record)

    async def _conclude(
        self,
        record: OrderRecord,
        session: TerminalSession,
        future: asyncio.Future[Any],
        req_id: int,
        t0: int,
        retries: OrderRetries | None = None,
    ) -> OrderResult:
        """Await the answer ``future`` holds (or will), apply it, then the events that arrived
        meanwhile. A caller cancelled while it waits cancels only its wait: the answer is
        applied in the background, as if the caller were there (and no retry follows)."""
        try:
            outcome: Any = await future
        except asyncio.CancelledError:
            answer = future if future.done() and not future.cancelled() else None
            answer = answer or session.answer_after_cancel(req_id)
            if answer is not None:
                self.tracker.spawn(
                    self._conclude_later(record, session, answer, req_id, t0),
                    f"answer:{record.client_order_id}",
                )
            raise
        except Exception as exc:  # the answer's error: applied below like a result
            outcome = exc
        return await self._apply(record, session, outcome, t0, retries)

    async def _apply(
        self,
        record: OrderRecord,
        session: TerminalSession,
        outcome: Any,
        t0: int,
        retries: OrderRetries | None = None,
    ) -> OrderResult:
        error: OrderError | None = None
        record.execution_time_ms = (time.perf_counter_ns() - t0) / 1e6
        try:
            if isinstance(outcome, TerminalRejected):
                error = await self._rejected(record, outcome, session, retries)
            elif isinstance(outcome, SessionClosed | TradeWithdrawn) and unsent(outcome):
                error = await self._never_sent(record, outcome)
            elif isinstance(outcome, RequestTimeout | SessionClosed | codec.ProtocolError):
                error = await self._lost(record, session, outcome, retries)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                error = contradicts_code(session, outcome)
                if error is None:
                    await self.tracker.apply_trade_result(record, outcome)
                else:
                    error = await self._lost(record, session, Exception(error.message), retries)
        finally:
            # Whatever happened above, the events that arrived meanwhile are applied and the
            # order stops being "awaiting its answer".
            await self.tracker.replay_deferred(record)
        if error is not None and error.source == "link" and record.status != OrderStatus.UNKNOWN:
            error = None  # the terminal's own events proved the outcome the lost answer would have
        self.book.forget_finished(record)
        return result_of(record, error)

    async def _never_sent(
        self, record: OrderRecord, exc: SessionClosed | TradeWithdrawn
    ) -> OrderError:
        """The frame never left: the session closed before it was written, or the trade
        waited in the bridge's queue for the terminal until it could no longer finish in
        time (``terminal_busy``). Either is a proof of absence in itself."""
        busy = isinstance(exc, TradeWithdrawn)
        why = "withdrawn from the terminal's queue" if busy else "session closed before sending"
        await self.book.move(record, Trigger.LOSE, f"{why}: {exc}")
        await self.book.move(record, Trigger.PROVE_ABSENT, "the frame was never written")
        return not_sent(exc)

    async def _rejected(
        self,
        record: OrderRecord,
        exc: TerminalRejected,
        session: TerminalSession,
        retries: OrderRetries | None = None,
    ) -> OrderError | None:
        entry = lookup(session.platform, exc.code)
        error = OrderError(
            source="terminal",
            message=exc.message,
            code=exc.code,
            name=exc.name,
            classification=entry.classification,
        )
        if record.action != OrderAction.OPEN and position_gone(session, exc.code):
            return await self._already_closed(record, exc)
        # A success code sent as an error (an EA testing ``retcode != DONE`` refuses 10010
        # DONE_PARTIAL) may well have executed: never REJECTED, resolved like a lost answer.
        unknown = entry.classification in (Classification.UNKNOWN, Classification.OK)
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
        if not unknown and retries is not None and retries.on_rejected(record, session, exc):
            log.info(
                "attempt rejected; another follows",
                client_order_id=record.client_order_id,
                retcode=exc.code,
                attempt=record.retry_count + 1,
            )
            return error  # stays SUBMITTED: the next attempt (or its end) decides
        record.rejection_code = exc.code
        record.rejection_name = exc.name[:REJECTION_NAME_MAX]
        record.rejection_reason = exc.message[:REJECTION_REASON_MAX]
        if unknown:
            await self.book.move(record, trigger, f"{exc.code} {exc.name}: outcome unknown")
            # The terminal's link to its trade server is in doubt: end the session so that,
            # once the EA is back, a lookup can prove the order absent instead of guessing.
            session.close(f"outcome-unknown answer {exc.code} {exc.name}", code="outcome_unknown")
            self.tracker.resolve_later(record)
            lost = OrderError(
                source="link",
                message=f"{exc.code} {exc.name}: outcome unknown, being resolved",
                code=exc.code,
                name=exc.name,
                classification=Classification.UNKNOWN,
            )
            # No retry after absence here: the trade call returned, and the server or its
            # dealer may still execute it (reference §2: 128, 142, 143 verify first, then
            # wait); only a lost answer's attempt is retried once proven absent.
            return lost
        await self.book.move(record, trigger, f"{exc.code} {exc.name}: {exc.message}")
        log.info(
            "order rejected",
            client_order_id=record.client_order_id,
            retcode=exc.code,
            name=exc.name,
        )
        return error

    async def _already_closed(
        self, record: OrderRecord, exc: TerminalRejected
    ) -> OrderError | None:
        """A close answered "position already closed" (MT5 10036): the close intent is done
        (docs/protocol.md §11, reference §3.7), though this order traded nothing: FILLED with
        no fill price nor volume, the journal saying why."""
        if not self.book.can(record, Trigger.FILL):
            return None
        await self.book.move(
            record,
            Trigger.FILL,
            f"{exc.code} {exc.name}: the position was already closed; this close traded nothing",
        )
        return None

    async def _lost(
        self,
        record: OrderRecord,
        session: TerminalSession,
        exc: Exception,
        retries: OrderRetries | None = None,
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
        if retries is not None and isinstance(exc, RequestTimeout | SessionClosed):
            # The answer never came: once the carrier's later session (or the deadline)
            # proves the trade absent, it never ran. An answer that came but could not be
            # trusted (malformed, or contradicting its code) ended a trade call whose server
            # side may still execute it: resolved, not retried.
            retries.on_unknown(record, error)
        return error
