"""A forced attempt: an operator sends an order again once every attempt of it is proven not
to have executed (docs/operations.md, "Overriding an order").

Only an opening order that ended ``rejected`` (refused with a code that proves nothing
executed, or by the bridge before sending) or ``not_found`` (proven absent) may be forced:
anything else may have executed, and a second execution is the one thing the bridge must
never cause. The attempt is the order's next (``mg:<id>.<n>``), journalled before it leaves
with the trigger ``override_retry`` and the audit (who, why) as its detail, then sent and
concluded like any attempt, without automatic retries: the operator sees its outcome.

It is the one exception to "a final status is final", and it is a human's: the engine that
placed the order may have replaced it already, which only its operator can know.
"""

from __future__ import annotations

import json
import time

from mtgate import logs
from mtgate.domain.orders import (
    ATTEMPT_MAX,
    OrderAction,
    OrderStatus,
    Trigger,
    comment_for,
    transition,
)
from mtgate.domain.records import OrderRecord
from mtgate.execution.attempts import AttemptFields
from mtgate.execution.overrides import (
    OPERATOR_MAX,
    REASON_MAX,
    OverrideRefused,
    Overrides,
    checked_text,
)
from mtgate.execution.requests import OrderResult
from mtgate.execution.service import ExecutionService
from mtgate.protocol import messages as m
from mtgate.sessions.errors import NotRoutable
from mtgate.sessions.session import AccountKey

log = logs.get("mtgate.overrides")

FORCEABLE = frozenset({OrderStatus.REJECTED, OrderStatus.NOT_FOUND})


def frame_of(record: OrderRecord, attempt: int) -> m.MarketOrder | m.PendingOrder:
    """The trade request of ``record``'s attempt ``attempt``, as the order was asked for: a
    market order at market (the current Ask/Bid, the order's deviation), a pending order at
    its own levels."""
    comment = comment_for(record.client_order_id, attempt)
    if record.order_type.is_pending:
        expiration = record.expiration_ms or 0
        return m.PendingOrder(
            id=0,
            symbol=record.symbol,
            order_type=record.order_type,
            volume=record.volume,
            price=record.requested_price or 0.0,
            magic=record.magic,
            comment=comment,
            stoplimit=record.stoplimit_price or 0.0,
            sl=record.stop_loss or 0.0,
            tp=record.take_profit or 0.0,
            expiration_ms=expiration,
            time_type=2 if expiration else 0,
        )
    return m.MarketOrder(
        id=0,
        symbol=record.symbol,
        order_type=record.order_type,
        volume=record.volume,
        magic=record.magic,
        comment=comment,
        deviation=record.deviation_points or 0,
        sl=record.stop_loss or 0.0,
        tp=record.take_profit or 0.0,
    )


class ForcedAttempts:
    """Forces new attempts of single orders, through the service's routing and sender."""

    def __init__(self, overrides: Overrides, service: ExecutionService) -> None:
        self.overrides = overrides
        self.service = service
        self.book = service.book

    async def force_attempt(
        self, client_order_id: str, *, operator: str, reason: str
    ) -> OrderResult:
        """Send order ``client_order_id`` again, as its next attempt; its result.

        Raises:
            InvalidRequest: a bad operator or reason (naming the field).
            OverrideRefused: the order is not in the journal, not an opening order, may
                have executed (any status but rejected / not_found), has used its 99
                attempts, or its account has no ready terminal now.
        """
        operator = checked_text(operator, "operator", OPERATOR_MAX, lines=False)
        reason = checked_text(reason, "reason", REASON_MAX, lines=True)
        busy = self.overrides.busy
        if client_order_id in busy:
            raise OverrideRefused(client_order_id, None, "another override of it is under way")
        busy.add(client_order_id)
        try:
            return await self._force(client_order_id, operator, reason)
        finally:
            busy.discard(client_order_id)

    async def _force(self, cid: str, operator: str, reason: str) -> OrderResult:
        record = self.book.get(cid) or await self.book.journal.get(cid)
        if record is None:
            raise OverrideRefused(cid, None, "it is not in the journal")
        if record.status not in FORCEABLE:
            raise OverrideRefused(
                cid,
                record.status,
                "only an order proven not to have executed (rejected or not_found) may be "
                "sent again",
            )
        if record.action != OrderAction.OPEN:
            raise OverrideRefused(cid, record.status, "a close is placed anew, not forced")
        attempt = record.retry_count + 2
        if attempt > ATTEMPT_MAX:
            raise OverrideRefused(cid, record.status, f"it has had {ATTEMPT_MAX} attempts")
        account = AccountKey(record.account_login, record.account_server)
        session = await self.service.route_new(account, ignoring=cid)
        if isinstance(session, NotRoutable):
            raise OverrideRefused(cid, record.status, f"not routable now: {session}")
        t0 = time.perf_counter_ns()
        frame = frame_of(record, attempt)
        previous = record.status
        saved = AttemptFields.of(record)
        kept = (record.rejection_code, record.rejection_name, record.rejection_reason)
        detail = json.dumps(
            {
                "override": "force_attempt",
                "operator": operator,
                "reason": reason,
                "previous": previous.value,
                "attempt": attempt,
                "comment": frame.comment,
                "terminal": session.terminal_id,
            },
            ensure_ascii=False,
        )
        record.status = transition(previous, Trigger.OVERRIDE_RETRY)
        record.retry_count = attempt - 1
        record.comment = frame.comment
        record.terminal_id = session.terminal_id
        record.sent_server_ms = session.server_time_ms or None
        record.rejection_code = record.rejection_name = record.rejection_reason = None
        record.updated_at_ms = self.book.clock.now_ms()
        submitter = self.service.submitter
        deadline_ns = submitter.deadline(record, session)
        try:
            await self.book.journal.record_attempt(record, previous, Trigger.OVERRIDE_RETRY, detail)
        except Exception:  # not journalled, so not sent: the order stays as it was
            saved.restore(record)
            record.rejection_code, record.rejection_name, record.rejection_reason = kept
            raise
        self.book.track(record)
        log.info(
            "new attempt forced by hand",
            client_order_id=cid,
            attempt=attempt,
            terminal=session.terminal_id,
            operator=operator,
            reason=reason,
        )
        return await submitter.send_attempt(record, session, frame, t0, deadline_ns)
