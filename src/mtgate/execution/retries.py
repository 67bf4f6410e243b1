"""One order's retries: new attempts, each proven necessary, each journalled before it leaves.

The decisions are pure (:mod:`mtgate.domain.retry`); this module carries them out for one
order the :class:`~mtgate.execution.submit.Submitter` is sending:

- an attempt refused with a code whose strategy retries it is *not* ended REJECTED: the
  submitter asks :meth:`OrderRetries.on_rejected`, which keeps the refusal pending;
- an attempt whose outcome is unknown is resolved as always, but the resolution hands a proof
  of absence over to this order's waiter (``OrderBook.absence_waiters``) instead of ending it
  NOT_FOUND (:meth:`OrderRetries.on_unknown`);
- :meth:`OrderRetries.next_attempt` then waits the strategy's delay, chooses the terminal,
  builds the attempt's frame (comment ``mg:<id>.<n>``, fresh price with what is left of the
  deviation, reduced or rounded volume, next filling), journals it durably
  (``Journal.record_attempt``) and hands it back to be sent. When no attempt follows, it
  ends the order with the last attempt's outcome, as if no retry had been considered.

Only orders that open positions or place pending orders are retried; closes are not (yet):
a close refused is reported to its caller, who knows whether the position still needs it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from mtgate import logs
from mtgate.domain import retry as rules
from mtgate.domain.orders import ATTEMPT_MAX, OrderStatus, Trigger, comment_for
from mtgate.domain.records import OrderRecord
from mtgate.domain.retry import Decision, RetryOptions, RetryPolicy, Step, Strategy
from mtgate.domain.symbols import SymbolSpec
from mtgate.execution.answers import REJECTION_NAME_MAX, REJECTION_REASON_MAX
from mtgate.execution.attempts import (
    AttemptFields,
    attempt_report,
    strategy_changes,
)
from mtgate.execution.book import OrderBook, result_of
from mtgate.execution.requests import AttemptReport, OrderError, OrderResult
from mtgate.protocol import messages as m
from mtgate.sessions.errors import NotRoutable, TerminalRejected
from mtgate.sessions.session import AccountKey, SessionState, TerminalSession

log = logs.get("mtgate.retries")
_DEFAULT_OPTIONS = RetryOptions()

Route = Callable[..., Awaitable[TerminalSession | NotRoutable]]
"""The route of a new order of the account, ``route(account, ignoring=<client order id>)``
(waits while other orders of the account are in doubt on another terminal)."""
Alternative = Callable[[AccountKey, str], TerminalSession | None]


@dataclass(slots=True)
class _Pending:
    """What the next attempt follows: a refusal (``rejected``) or a lost answer."""

    decision: Decision
    rejected: TerminalRejected | None = None
    error: OrderError | None = None
    waiter: asyncio.Future[TerminalSession | None] | None = None


class OrderRetries:
    """The retries of one order (made by :class:`RetryRunner` for each new order)."""

    def __init__(
        self,
        runner: RetryRunner,
        options: RetryOptions,
        record: OrderRecord,
    ) -> None:
        self.runner = runner
        self.policy = runner.policy
        self.options = options
        self.pending: _Pending | None = None
        self.attempts: list[AttemptReport] = []
        self.fresh_price_retries = 0
        self.deadline_ns = 0
        """The deadline of the attempt journalled last (monotonic ns), for its frame."""
        self._ending = False
        self.reference_price = record.requested_price
        self.deviation_points = record.deviation_points or 0
        self._placed_ns = runner.book.clock.monotonic_ns()

    # --- what the submitter asks ---------------------------------------------------------------

    def on_rejected(
        self, record: OrderRecord, session: TerminalSession, exc: TerminalRejected
    ) -> bool:
        """Whether a refusal with ``exc.code`` is followed by another attempt (then the order
        stays SUBMITTED, the refusal pending, and :meth:`next_attempt` must be called)."""
        decision = rules.decide(
            self.policy,
            self.options,
            session.platform,
            exc.code,
            attempt=record.retry_count + 1,
            fresh_price_retries=self.fresh_price_retries,
            age_s=self._age_s(),
            jitter=self.runner.rng.random(),
        )
        if decision.step is Step.STOP:
            return False
        if decision.strategy is Strategy.FRESH_PRICE and record.order_type.is_pending:
            return False  # a pending order's price is the caller's level, not a quote
        self.pending = _Pending(decision, rejected=exc)
        self.runner.book.retrying.add(record.client_order_id)
        return True

    def on_unknown(self, record: OrderRecord, error: OrderError) -> bool:
        """An attempt's outcome is unknown: register for the resolution's proof of absence
        (True), unless retries after absence are off or the order is too old to retry."""
        policy = self.policy
        if not (policy.enabled and self.options.enabled and policy.after_absence):
            return False
        if record.retry_count + 1 >= min(policy.max_attempts, ATTEMPT_MAX):
            return False
        if self._age_s() >= policy.max_age_s:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[TerminalSession | None] = loop.create_future()
        self.runner.book.absence_waiters[record.client_order_id] = waiter
        decision = Decision(Step.RESEND, Strategy.BACKOFF, 0.0, "proven absent")
        self.pending = _Pending(decision, error=error, waiter=waiter)
        self.runner.book.retrying.add(record.client_order_id)
        return True

    # --- the next attempt ----------------------------------------------------------------------

    async def next_attempt(
        self, record: OrderRecord, session: TerminalSession, msg: m.Request, result: OrderResult
    ) -> tuple[TerminalSession, m.Request] | OrderResult:
        """The next attempt's session and frame, journalled; or the order's final result
        when none follows (the pending outcome applied)."""
        pending, self.pending = self.pending, None
        assert pending is not None
        try:
            return await self._next(record, session, msg, result, pending)
        finally:
            if not self._ending:
                self.runner.book.retrying.discard(record.client_order_id)

    async def _next(
        self,
        record: OrderRecord,
        session: TerminalSession,
        msg: m.Request,
        result: OrderResult,
        pending: _Pending,
    ) -> tuple[TerminalSession, m.Request] | OrderResult:
        if pending.waiter is not None:
            proven = await self._await_absence(record, pending, result)
            if isinstance(proven, OrderResult):
                return proven
            previous = attempt_report(record, "absent", result.error)
        else:
            assert pending.rejected is not None
            previous = attempt_report(record, "rejected", result.error)
        try:
            if pending.decision.delay_s > 0:
                await asyncio.sleep(pending.decision.delay_s)
            built = await self._build(record, session, msg, pending)
        except asyncio.CancelledError:
            self._ending = True  # still between attempts until the spawned end has run
            self.runner.spawn(self._end_later(record, pending, "the caller was cancelled"), record)
            raise
        except Exception as exc:  # a read that failed: no attempt, the last outcome stands
            built = f"the next attempt could not be prepared: {exc}"
        if isinstance(built, str):
            return await self._end(record, pending, built)
        target, frame, strategy = built
        self.attempts.append(msgspec.structs.replace(previous, next=strategy.value))
        book = self.runner.book
        key = (f"{record.account_login}@{record.account_server}", strategy.value)
        book.retries[key] = book.retries.get(key, 0) + 1
        return target, frame

    async def _await_absence(
        self, record: OrderRecord, pending: _Pending, result: OrderResult
    ) -> TerminalSession | OrderResult:
        """Wait (bounded) for the resolution: a session that proved the attempt absent, or
        the order's result when it was settled otherwise or not in time."""
        waiter = pending.waiter
        assert waiter is not None
        cid = record.client_order_id
        try:
            await asyncio.wait([waiter], timeout=self.policy.absence_wait_s)
        except asyncio.CancelledError:
            self._drop_waiter(cid, waiter)
            if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                self._ending = True  # handed over: end it absent, still between attempts
                self.runner.spawn(self._end_later(record, None, "the caller was cancelled"), record)
            else:
                waiter.cancel()  # not handed over: the resolution ends it itself
            raise
        self._drop_waiter(cid, waiter)
        if not waiter.done():
            waiter.cancel()  # the resolution goes on without a waiter and ends it itself
            return self.final(record, result.error)
        session = waiter.result()
        if session is None:  # settled by the resolution (found) or by a human
            return self.final(
                record, None if record.status != OrderStatus.UNKNOWN else result.error
            )
        if self._age_s() >= self.policy.max_age_s:
            return await self._not_found(record, f"older than {self.policy.max_age_s:g} s")
        return session

    def _drop_waiter(self, cid: str, waiter: asyncio.Future[Any]) -> None:
        if self.runner.book.absence_waiters.get(cid) is waiter:
            del self.runner.book.absence_waiters[cid]

    async def _build(
        self, record: OrderRecord, session: TerminalSession, msg: m.Request, pending: _Pending
    ) -> tuple[TerminalSession, m.Request, Strategy] | str:
        """Choose the terminal, make the frame, journal the attempt; or why not."""
        strategy = pending.decision.strategy
        account = AccountKey(record.account_login, record.account_server)
        target: TerminalSession | NotRoutable | None
        if strategy is Strategy.ALTERNATIVE:
            other = self.runner.alternative(account, record.terminal_id)
            if other is None:
                return "no other ready terminal of the account"
            # Through the failover gate: orders of the account in doubt there come first.
            target = await self.runner.route(account, other, ignoring=record.client_order_id)
            if isinstance(target, NotRoutable):
                return f"not routable: {target}"
        else:
            target = await self.runner.route(account, ignoring=record.client_order_id)
            if isinstance(target, NotRoutable):
                return f"not routable: {target}"
        if target.state != SessionState.READY:
            return f"terminal {target.terminal_id} is {target.state.value}"
        saved = AttemptFields.of(record)
        changes = await self._changes(record, target, msg, strategy)
        if isinstance(changes, str):
            saved.restore(record)  # the last attempt's outcome stands, as it was sent
            return changes
        attempt = record.retry_count + 2
        frame = msgspec.structs.replace(
            msg, id=0, comment=comment_for(record.client_order_id, attempt), **changes
        )
        try:
            await self._journal(record, target, frame, attempt, strategy, pending)
        except Exception as exc:  # not journalled, so not sent: the last outcome stands
            saved.restore(record)
            log.error(
                "journal could not record an attempt; not sent",
                client_order_id=record.client_order_id,
                error=repr(exc),
            )
            return f"the journal could not record attempt {attempt}: {exc}"
        if strategy is Strategy.FRESH_PRICE:
            self.fresh_price_retries += 1
        return target, frame, strategy

    async def _changes(
        self, record: OrderRecord, session: TerminalSession, msg: m.Request, strategy: Strategy
    ) -> dict[str, Any] | str:
        """The frame's fields the strategy changes, or why it cannot. Every retry of a market
        order is priced afresh within the band the caller allowed (not only after a price
        refusal: a market that reopened, or a terminal that came back, may be far away)."""
        spec = session.view.symbols.get(record.symbol)
        changes: dict[str, Any] = {}
        if not record.order_type.is_pending:
            band = await self._price_band(record, session, spec)
            if isinstance(band, str):
                return band
            changes.update(band)
        other = strategy_changes(record, msg, strategy, spec, self.options)
        if isinstance(other, str):
            return other
        changes.update(other)
        return changes

    async def _price_band(
        self, record: OrderRecord, session: TerminalSession, spec: SymbolSpec | None
    ) -> dict[str, Any] | str:
        if spec is None:
            return f"{record.symbol}: the symbol's point is not known"
        tick: m.Tick = await session.request(
            m.GetTick(id=0, symbol=record.symbol), session.settings.read_timeout_s
        )
        fresh = tick.ask if record.order_type.is_buy else tick.bid
        if self.reference_price is None:  # no price was known at placement: from now on
            self.reference_price = fresh
        terms = rules.fresh_price_terms(
            self.reference_price, fresh, self.deviation_points, spec.point
        )
        if terms is None:
            return (
                f"the price moved to {fresh} beyond the {self.deviation_points} points "
                f"allowed from {self.reference_price}"
            )
        record.deviation_points = terms.deviation_points
        return {"price": terms.price, "deviation": terms.deviation_points}

    async def _journal(
        self,
        record: OrderRecord,
        session: TerminalSession,
        frame: m.Request,
        attempt: int,
        strategy: Strategy,
        pending: _Pending,
    ) -> None:
        """Journal the attempt before it leaves: the record now describes it."""
        book = self.runner.book
        record.retry_count = attempt - 1
        record.comment = comment_for(record.client_order_id, attempt)
        record.terminal_id = session.terminal_id
        record.sent_server_ms = session.server_time_ms or None
        self.deadline_ns = self.runner.deadline(record, session)  # sets deadline_at_ms
        after: dict[str, Any]
        if pending.rejected is not None:
            after = {"code": pending.rejected.code, "name": pending.rejected.name}
        else:
            after = {"absent": True}
        detail = json.dumps(
            {
                "attempt": attempt,
                "comment": record.comment,
                "after": after,
                "strategy": strategy.value,
                "terminal": session.terminal_id,
                "volume": record.volume,
                "price": getattr(frame, "price", None),
                "deviation": getattr(frame, "deviation", None),
                "filling": getattr(frame, "filling", None),
            }
        )
        await book.attempt(record, detail)

    # --- ending without a further attempt ------------------------------------------------------

    async def _end_later(self, record: OrderRecord, pending: _Pending | None, why: str) -> None:
        """:meth:`_end` in the background (its caller is gone), then the order is no longer
        between attempts."""
        try:
            if pending is None:
                await self._not_found(record, why)
            else:
                await self._end(record, pending, why)
        finally:
            self.runner.book.retrying.discard(record.client_order_id)

    async def _end(self, record: OrderRecord, pending: _Pending, why: str) -> OrderResult:
        """No further attempt: the pending outcome becomes the order's."""
        if pending.rejected is None:
            return await self._not_found(record, why)
        exc = pending.rejected
        book = self.runner.book
        if book.can(record, Trigger.REJECT):
            record.rejection_code = exc.code
            record.rejection_name = exc.name[:REJECTION_NAME_MAX]
            record.rejection_reason = exc.message[:REJECTION_REASON_MAX]
            await book.move(record, Trigger.REJECT, f"{exc.code} {exc.name}: {exc.message}; {why}")
        book.forget_finished(record)
        log.info(
            "order rejected; no further attempt",
            client_order_id=record.client_order_id,
            retcode=exc.code,
            attempts=record.retry_count + 1,
            reason=why,
        )
        return self.final(record, pending.error)

    async def _not_found(self, record: OrderRecord, why: str) -> OrderResult:
        book = self.runner.book
        if record.status is OrderStatus.SUBMITTED:  # journalled, then never sent
            await book.move(record, Trigger.LOSE, f"attempt {record.retry_count + 1} not sent")
        if book.can(record, Trigger.PROVE_ABSENT):
            await book.move(record, Trigger.PROVE_ABSENT, f"proven absent; not retried: {why}")
        book.forget_finished(record)
        return self.final(record, None)

    def final(self, record: OrderRecord, error: OrderError | None) -> OrderResult:
        """The caller's one result: the order as it ended, with every attempt."""
        return self.with_attempts(record, result_of(record, error))

    def with_attempts(self, record: OrderRecord, result: OrderResult) -> OrderResult:
        if not self.attempts:
            return result
        code = result.error.code if result.error is not None else None
        last = AttemptReport(
            attempt=record.retry_count + 1,
            terminal_id=record.terminal_id,
            comment=record.comment,
            volume=record.volume,
            outcome=record.status.value,
            code=code,
            name=result.error.name if result.error is not None else None,
        )
        return msgspec.structs.replace(result, attempts=(*self.attempts, last))

    def _age_s(self) -> float:
        return (self.runner.book.clock.monotonic_ns() - self._placed_ns) / 1e9


class RetryRunner:
    """The bridge's retry settings and what carrying out a retry needs."""

    def __init__(
        self,
        policy: RetryPolicy,
        book: OrderBook,
        route: Route,
        alternative: Alternative,
        deadline: Callable[[OrderRecord, TerminalSession], int],
        spawn: Callable[[Any, str], None],
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.book = book
        self.route = route
        self.alternative = alternative
        self.deadline = deadline
        self._spawn = spawn
        self.rng = rng or random.Random()

    def for_order(self, record: OrderRecord, options: RetryOptions | None) -> OrderRetries | None:
        if not self.policy.enabled or (options is not None and not options.enabled):
            return None
        return OrderRetries(self, options or _DEFAULT_OPTIONS, record)

    def spawn(self, coro: Any, record: OrderRecord) -> None:
        self._spawn(coro, f"retry-end:{record.client_order_id}")
