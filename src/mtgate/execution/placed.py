"""Changing and deleting placed pending orders (``modify_order``, ``cancel_order``).

The order's journal record carries the change as a note; an unknown outcome re-reads the
order from the terminal instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable

from mtgate.domain.codes import Classification
from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.execution.answers import contradicts_code, link_lost, not_sent, rejection
from mtgate.execution.book import OrderBook, result_of
from mtgate.execution.requests import (
    CancelOrderRequest,
    InvalidRequest,
    ModifyOrderRequest,
    OrderError,
    OrderResult,
)
from mtgate.execution.tracker import Tracker
from mtgate.execution.validation import OrderIntent
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.sessions.errors import (
    NotRoutable,
    RequestTimeout,
    SessionClosed,
    TerminalRejected,
    TradeWithdrawn,
)
from mtgate.sessions.registry import TerminalRegistry
from mtgate.sessions.session import AccountKey, TerminalSession


class PlacedOrders:
    def __init__(
        self,
        book: OrderBook,
        registry: TerminalRegistry,
        tracker: Tracker,
        account_key: Callable[[str], AccountKey],
    ) -> None:
        self.book = book
        self.registry = registry
        self.tracker = tracker
        self._account = account_key

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
        account = self._account(account_text)
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
            result = await session.request(msg)
        except TerminalRejected as exc:
            error = rejection(session, exc)
            if error is None:
                return None  # a no-op sent as an error by a lenient EA: nothing changed
            await self.book.note(
                record, f"{type(msg).__name__} refused: {exc.code} {exc.name}: {exc.message}"
            )
            self.tracker.refresh_later(record)
            return error
        except TradeWithdrawn as exc:
            await self.book.note(record, f"{type(msg).__name__} not sent: {exc}")
            return not_sent(exc)
        except (RequestTimeout, SessionClosed, codec.ProtocolError) as exc:
            if isinstance(exc, SessionClosed) and not exc.sent:
                await self.book.note(record, f"{type(msg).__name__} not sent: {exc}")
                return not_sent(exc)
            await self.book.note(record, f"{type(msg).__name__} outcome unknown: {exc}")
            self.tracker.refresh_later(record)
            return link_lost(session, exc)
        error = contradicts_code(session, result)
        if error is not None:
            await self.book.note(record, f"{type(msg).__name__} outcome unknown: {error.message}")
            self.tracker.refresh_later(record)
        return error
