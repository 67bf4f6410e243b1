"""Manual overrides of one order: what a human decided, journalled with who and why.

The bridge never guesses an outcome it cannot prove (DESIGN §4), so some orders stay in doubt
until a human looks: an UNKNOWN order whose carrier never came back, a SUBMITTED intent of a
terminal that is gone. An override ends such an order in the status the human gives, through
the :class:`~mtgate.execution.book.OrderBook` like any other change (memory, doubt tracking
and journal stay one), with a trigger of its own (``override_*``, mtgate.domain.orders) and an
audit document as the event's detail::

    {"override": "mark_resolved", "operator": "alice", "reason": "...",
     "evidence": "ticket 123 seen in the terminal's history", "previous": "unknown"}

A later override (``force_attempt``, for the retry engine) writes the same document with its
own ``override`` value. Refusals change nothing and say why (:class:`OverrideRefused`); input
that cannot be kept as written is refused naming the field (:class:`InvalidRequest`).
"""

from __future__ import annotations

import asyncio
import enum
import json
from dataclasses import dataclass
from typing import Any, Final

from mtgate import logs
from mtgate.domain.orders import (
    OVERRIDE_TRIGGERS,
    TERMINAL,
    InvalidTransition,
    OrderStatus,
    Trigger,
)
from mtgate.domain.records import OrderRecord
from mtgate.execution.book import IN_DOUBT, OrderBook
from mtgate.execution.requests import InvalidRequest
from mtgate.execution.resolution import Resolver
from mtgate.sessions.session import SessionState

log = logs.get("mtgate.overrides")

OPERATOR_MAX: Final = 64
REASON_MAX: Final = 2000
EVIDENCE_MAX: Final = 4000
"""Characters, after surrounding whitespace is stripped. Longer text is refused, not cut: an
audit record says what its author wrote or nothing."""

OVERRIDE_TRIGGER_VALUES: Final = frozenset(t.value for t in OVERRIDE_TRIGGERS.values())


class OverrideAction(enum.StrEnum):
    MARK_RESOLVED = "mark_resolved"
    """An order in doubt ended as a human decided, on evidence."""
    CANCEL_INTENT = "cancel_intent"
    """A journalled intent withdrawn: CANCELLED, never to be tried again."""


RESOLVED_STATUSES: Final = frozenset(OVERRIDE_TRIGGERS)
"""What ``mark_resolved`` may make of an order: FILLED, REJECTED, NOT_FOUND, CANCELLED."""


class OverrideRefused(Exception):
    """The override was not applied (nothing changed or was written); the message says why."""

    def __init__(self, client_order_id: str, status: OrderStatus | None, why: str) -> None:
        state = "" if status is None else f" is {status.value!r}"
        super().__init__(f"order {client_order_id!r}{state}: {why}")
        self.client_order_id = client_order_id
        self.status = status


@dataclass(frozen=True, slots=True)
class OverrideAudit:
    """Who overrode an order, why, on what evidence, and from which status."""

    action: str
    operator: str
    reason: str
    previous: OrderStatus
    evidence: str | None = None

    def detail(self) -> str:
        """The event's detail: one JSON object, readable in a SQL shell."""
        document: dict[str, Any] = {
            "override": self.action,
            "operator": self.operator,
            "reason": self.reason,
            "evidence": self.evidence,
            "previous": self.previous.value,
        }
        return json.dumps(document, ensure_ascii=False)

    @classmethod
    def parse(cls, detail: str) -> OverrideAudit | None:
        """The audit in an event's detail, or None for any other event's."""
        if not detail.startswith('{"override"'):
            return None
        try:
            doc = json.loads(detail)
            return cls(
                doc["override"],
                doc["operator"],
                doc["reason"],
                OrderStatus(doc["previous"]),
                doc.get("evidence"),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class OverrideResult:
    client_order_id: str
    previous: OrderStatus
    status: OrderStatus
    audit: OverrideAudit


def checked_text(value: object, field: str, max_chars: int, *, lines: bool) -> str:
    """``value`` stripped, if it is text a human can read back as written: not empty, at most
    ``max_chars``, no control or invisible format characters (``lines``: newlines and tabs
    allowed). Raises :class:`InvalidRequest` naming ``field``."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be text", field=field)
    text = value.strip()
    if not text:
        raise InvalidRequest(f"{field} is required", field=field)
    if len(text) > max_chars:
        raise InvalidRequest(
            f"{field} has {len(text)} characters, at most {max_chars} are kept", field=field
        )
    visible = text.replace("\n", "").replace("\t", " ") if lines else text
    if not visible.isprintable():  # controls, lone surrogates, bidi overrides, separators
        bad = next(c for c in visible if not c.isprintable())
        raise InvalidRequest(
            f"{field} contains the unprintable character U+{ord(bad):04X}", field=field
        )
    return text


class Overrides:
    """Applies humans' overrides through the book, one order at a time."""

    def __init__(self, book: OrderBook, resolver: Resolver) -> None:
        self.book = book
        self.resolver = resolver
        self.busy: set[str] = set()
        """Orders an override is being applied to (one at a time per order)."""

    async def mark_resolved(
        self,
        client_order_id: str,
        status: OrderStatus | str,
        *,
        evidence: str,
        operator: str,
        reason: str,
    ) -> OverrideResult:
        """End an order in doubt (UNKNOWN, or SUBMITTED once nothing carries its request) as
        ``status`` (filled, rejected, not_found or cancelled), keeping ``evidence``.

        A resolution running for the order is stopped first, so its lookups cannot land
        after the human's decision; the account's in-doubt gate opens at once.

        Raises:
            InvalidRequest: a bad status, operator, reason or evidence (naming the field).
            OverrideRefused: the order is unknown, final already, placed, or still carried.
        """
        target = _target(status)
        audit_fields = (
            checked_text(operator, "operator", OPERATOR_MAX, lines=False),
            checked_text(reason, "reason", REASON_MAX, lines=True),
            checked_text(evidence, "evidence", EVIDENCE_MAX, lines=True),
        )
        return await self._override(
            client_order_id, OverrideAction.MARK_RESOLVED, target, *audit_fields
        )

    async def cancel_intent(
        self, client_order_id: str, *, operator: str, reason: str
    ) -> OverrideResult:
        """Withdraw a journalled intent that nothing carries (SUBMITTED: never sent, or its
        terminal is gone): CANCELLED, so nothing ever tries its client order id again.

        CANCELLED and not NOT_FOUND: NOT_FOUND says a lookup proved the order absent, which
        may one day allow a new attempt; here a human withdrew it. An UNKNOWN order was sent
        and may have executed: it is refused here, ``mark_resolved`` takes it with evidence.

        Raises:
            InvalidRequest: a bad operator or reason (naming the field).
            OverrideRefused: the order is unknown, not SUBMITTED, or still carried.
        """
        operator = checked_text(operator, "operator", OPERATOR_MAX, lines=False)
        reason = checked_text(reason, "reason", REASON_MAX, lines=True)
        return await self._override(
            client_order_id, OverrideAction.CANCEL_INTENT, OrderStatus.CANCELLED, operator, reason
        )

    async def _override(
        self,
        client_order_id: str,
        action: OverrideAction,
        target: OrderStatus,
        operator: str,
        reason: str,
        evidence: str | None = None,
    ) -> OverrideResult:
        if client_order_id in self.busy:
            raise OverrideRefused(client_order_id, None, "another override of it is under way")
        self.busy.add(client_order_id)
        try:
            record = await self._load(client_order_id)
            self._check(record, action)
            await self.resolver.stop(client_order_id)
            self._check(record, action)  # what the stopped resolution left
            audit = OverrideAudit(action.value, operator, reason, record.status, evidence)
            try:
                await self.book.move(record, OVERRIDE_TRIGGERS[target], audit.detail())
            except InvalidTransition as exc:  # cannot happen after the checks: say so anyway
                raise OverrideRefused(client_order_id, record.status, str(exc)) from None
            except BaseException:
                if record.status in IN_DOUBT:  # not applied: the order needs its resolution
                    self.resolver.resolve_later(record)
                raise
        finally:
            self.busy.discard(client_order_id)
        log.info(
            "order overridden by hand",
            client_order_id=client_order_id,
            action=action.value,
            previous=audit.previous.value,
            status=record.status.value,
            operator=operator,
            reason=reason,
        )
        return OverrideResult(client_order_id, audit.previous, record.status, audit)

    async def _load(self, client_order_id: str) -> OrderRecord:
        """The book's record (the one a running resolution holds), else the journal's, then
        tracked so that the book's doubt bookkeeping covers it."""
        record = self.book.get(client_order_id)
        if record is not None:
            return record
        stored = await self.book.journal.get(client_order_id)
        if stored is None:
            raise OverrideRefused(client_order_id, None, "it is not in the journal")
        # An intent committed just now is tracked by its sender when the sender resumes, in
        # the loop's next turn: let it, so that the book's record (then also awaiting its
        # answer, so refused) is the one looked at, never a second copy.
        await asyncio.sleep(0)
        record = self.book.get(client_order_id)
        if record is not None:
            return record
        if stored.status in IN_DOUBT:
            self.book.track(stored)
        return stored

    def _check(self, record: OrderRecord, action: OverrideAction) -> None:
        cid, status = record.client_order_id, record.status
        if status in TERMINAL:
            raise OverrideRefused(
                cid, status, "a final status is never changed (a forced attempt may send it again)"
            )
        if status not in IN_DOUBT:
            raise OverrideRefused(
                cid,
                status,
                "it is live on its terminal, which decides what becomes of it "
                "(cancel it with cancel_order, or on the terminal)",
            )
        if action is OverrideAction.CANCEL_INTENT and status is not OrderStatus.SUBMITTED:
            raise OverrideRefused(
                cid,
                status,
                "its request was sent and may have executed: mark it resolved with evidence "
                "of what the terminal shows instead",
            )
        if cid in self.book.deferred:
            raise OverrideRefused(cid, status, "its answer is awaited or being applied right now")
        if cid in self.book.retrying:
            raise OverrideRefused(cid, status, "its next attempt is being prepared right now")
        carrier = self.book.carrier.get(cid)
        live = carrier is not None and carrier.state is not SessionState.CLOSED
        if status is OrderStatus.SUBMITTED and carrier is not None and live:
            raise OverrideRefused(
                cid,
                status,
                f"its request is still carried by terminal {carrier.terminal_id}, "
                "which may answer it",
            )


def _target(status: OrderStatus | str) -> OrderStatus:
    try:
        target = OrderStatus(status)
    except ValueError:
        target = None
    if target not in RESOLVED_STATUSES:
        allowed = ", ".join(sorted(s.value for s in RESOLVED_STATUSES))
        shown = str(status)[:32]
        raise InvalidRequest(f"status {shown!r}: expected one of {allowed}", field="status")
    assert target is not None
    return target


def is_override(trigger: Trigger | None) -> bool:
    """Whether an event's trigger is a manual override's."""
    return trigger is not None and trigger.value in OVERRIDE_TRIGGER_VALUES
