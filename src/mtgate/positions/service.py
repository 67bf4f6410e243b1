"""Position operations: change SL/TP, close (all or part), close by, reverse, bulk changes.

Closes are orders: each is journalled under its own client order id before its frame leaves,
and an unknown outcome is resolved, never resent (DESIGN §4), exactly like an opening order.
A change of SL/TP sets absolute levels, so it is not journalled as an order; its outcome, when
the answer is lost, is what the next snapshot shows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict

from mtgate import logs
from mtgate.domain.codes import Classification
from mtgate.domain.enums import MarginMode, OrderType
from mtgate.domain.orders import OrderAction, OrderStatus
from mtgate.domain.records import OrderRecord
from mtgate.domain.symbols import SymbolSpec, position_frozen
from mtgate.execution.answers import contradicts_code, link_lost, not_sent, rejection
from mtgate.execution.requests import OrderError, OrderResult
from mtgate.execution.service import ExecutionService, account_key, busy_refusal
from mtgate.execution.validation import Refusal, volume_refusal
from mtgate.positions import bulk, reversal
from mtgate.positions.errors import PositionError
from mtgate.positions.levels import check_position_levels
from mtgate.positions.requests import (
    BulkCloseRequest,
    BulkItem,
    BulkModifyRequest,
    CloseByRequest,
    ClosePositionRequest,
    ModifyPositionRequest,
    PositionFilter,
    PositionResult,
    ReversalResult,
    ReversePositionRequest,
)
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.sessions.errors import (
    NotRoutable,
    RequestTimeout,
    SessionClosed,
    SessionError,
    TerminalRejected,
    TradeWithdrawn,
)
from mtgate.sessions.session import AccountKey, TerminalSession
from mtgate.store.sync_store import PositionEvent, PositionState
from mtgate.sync.synchronizer import Synchronizer
from mtgate.sync.view import state_of

log = logs.get("mtgate.positions")

_UNSURE_KEPT = 4096
"""Positions whose last SL/TP change has an unknown outcome (their next change reads the
position live); the oldest are forgotten beyond this many."""
PositionKey = tuple[AccountKey, int]


def _refused(account: str, ticket: int, refusal: Refusal) -> PositionResult:
    return PositionResult(
        account=account,
        ticket=ticket,
        status="refused",
        error=OrderError(
            source="bridge",
            message=refusal.message,
            field=refusal.field,
            rule=refusal.rule,
            classification=Classification.REJECTED,
        ),
    )


class PositionService:
    """Acts on open positions through the terminals of an :class:`ExecutionService`."""

    def __init__(self, execution: ExecutionService, sync: Synchronizer | None) -> None:
        self.execution = execution
        self.sync = sync
        self.clock = execution.clock
        self._sltp_locks: dict[PositionKey, tuple[asyncio.Lock, int]] = {}
        """One SL/TP change in flight per position (trailing moves included): each change
        sends the position's full state, built from what the previous one left."""
        self._unsure: OrderedDict[PositionKey, None] = OrderedDict()
        self._tasks: set[asyncio.Task[PositionResult]] = set()

    # --- lookups -----------------------------------------------------------------------------

    def route(self, account: AccountKey) -> TerminalSession:
        try:
            session = self.execution.registry.route(account)
        except NotRoutable as exc:
            raise PositionError(Refusal("account", "not_routable", str(exc))) from None
        assert session.identity is not None
        if m.POSITIONS_FEATURE not in session.identity.features:
            raise PositionError(
                Refusal(
                    "account",
                    "feature_missing",
                    f"terminal {session.terminal_id} does not offer position operations "
                    f"(feature {m.POSITIONS_FEATURE!r})",
                )
            )
        return session

    async def position(
        self, account: AccountKey, ticket: int, *, live: bool = False
    ) -> PositionState:
        """The position as the synchronizer last saw it, else (or with ``live``) as the
        terminal reports it now; the client order id the bridge knows is kept."""
        view = self.sync.views.get(account) if self.sync else None
        known = view.positions.get(ticket) if view else None
        if known is not None and not live:
            return known
        session = self.route(account)
        try:
            found: m.Lookup = await session.request(
                m.OrderGet(id=0, ticket=ticket), session.settings.read_timeout_s
            )
        except SessionError as exc:
            raise PositionError(Refusal("ticket", "lookup_failed", str(exc))) from None
        for report in found.positions:
            if report.ticket == ticket:
                return state_of(
                    account,
                    report,
                    self.clock.now_ms(),
                    client_order_id=known.client_order_id if known else None,
                    origin_ticket=known.origin_ticket if known else None,
                )
        raise PositionError(Refusal("ticket", "no_position", f"no open position #{ticket}"))

    def market(self, session: TerminalSession, symbol: str) -> tuple[SymbolSpec, m.Tick]:
        spec = session.view.symbols.get(symbol)
        tick = session.view.ticks.get(symbol)
        if spec is None or tick is None:
            raise PositionError(Refusal("symbol", "no_quote", f"no spec or quote for {symbol}"))
        return spec, tick

    # --- SL / TP -----------------------------------------------------------------------------

    async def modify_position(self, req: ModifyPositionRequest) -> PositionResult:
        """Set a position's SL and/or TP. Changes of one position are made one at a time,
        in call order, and a caller cancelled meanwhile does not cut a change short: its
        answer still updates the view the next change is built from."""
        try:
            account = account_key(req.account)
        except ValueError as exc:
            return _refused(req.account, req.ticket, Refusal("account", "account", str(exc)))
        task = asyncio.get_running_loop().create_task(
            self._modify_in_turn((account, req.ticket), req),
            name=f"modify:{account}:{req.ticket}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._modify_done)
        return await asyncio.shield(task)

    def _modify_done(self, task: asyncio.Task[PositionResult]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("position modify failed", task=task.get_name(), error=repr(task.exception()))

    async def _modify_in_turn(self, key: PositionKey, req: ModifyPositionRequest) -> PositionResult:
        lock, users = self._sltp_locks.get(key, (asyncio.Lock(), 0))
        self._sltp_locks[key] = (lock, users + 1)
        try:
            async with lock:
                return await self._modify(key, req)
        finally:
            lock, users = self._sltp_locks[key]
            if users <= 1:
                del self._sltp_locks[key]
            else:
                self._sltp_locks[key] = (lock, users - 1)

    async def _modify(self, key: PositionKey, req: ModifyPositionRequest) -> PositionResult:
        t0 = time.perf_counter_ns()
        account = key[0]
        try:
            session = self.route(account)
            # After a change whose outcome is unknown, the view cannot say what the untouched
            # level is: the terminal is asked.
            pos = await self.position(account, req.ticket, live=key in self._unsure)
        except PositionError as exc:
            return _refused(req.account, req.ticket, exc.refusal)
        assert session.identity is not None
        sl = pos.sl if req.sl is None else req.sl
        tp = pos.tp if req.tp is None else req.tp
        spec = session.view.symbols.get(pos.symbol)
        tick = session.view.ticks.get(pos.symbol)
        if spec is None or tick is None:
            return _refused(
                req.account, req.ticket, Refusal("symbol", "no_quote", f"no quote for {pos.symbol}")
            )
        refusal = check_position_levels(
            spec,
            buy=pos.buy,
            sl=sl,
            tp=tp,
            current_sl=pos.sl,
            current_tp=pos.tp,
            bid=tick.bid,
            ask=tick.ask,
        )
        if refusal is not None:
            return _refused(req.account, req.ticket, refusal)
        msg = m.ModifyPosition(id=0, ticket=pos.ticket, sl=sl, tp=tp)
        error = await self._trade(session, msg)
        elapsed = (time.perf_counter_ns() - t0) / 1e6
        if error is None:
            self._unsure.pop(key, None)
            self._remember(dataclasses.replace(pos, sl=sl, tp=tp), f"sl={sl} tp={tp}", "modified")
            return PositionResult(
                account=req.account,
                ticket=pos.ticket,
                status="done",
                sl=sl,
                tp=tp,
                execution_time_ms=elapsed,
            )
        if error.source == "link":
            self._unsure[key] = None
            if len(self._unsure) > _UNSURE_KEPT:
                self._unsure.popitem(last=False)
        return PositionResult(
            account=req.account,
            ticket=pos.ticket,
            status="unknown" if error.source == "link" else "rejected",
            sl=pos.sl,
            tp=pos.tp,
            execution_time_ms=elapsed,
            error=error,
        )

    async def _trade(self, session: TerminalSession, msg: m.Request) -> OrderError | None:
        try:
            result = await session.request(msg)
        except TerminalRejected as exc:
            return rejection(session, exc)
        except TradeWithdrawn as exc:
            return not_sent(exc)
        except (RequestTimeout, SessionClosed, codec.ProtocolError) as exc:
            if isinstance(exc, SessionClosed) and not exc.sent:
                return not_sent(exc)
            return link_lost(session, exc)
        return contradicts_code(session, result)

    def _remember(self, pos: PositionState, detail: str, kind: str) -> None:
        """Our own change, applied to the view at once (the next snapshot confirms it)."""
        if self.sync is None:
            return
        view = self.sync.views.get(pos.account)
        now = self.clock.now_ms()
        if pos.open:
            pos = dataclasses.replace(pos, updated_at_ms=now)
        else:
            pos = dataclasses.replace(
                pos, updated_at_ms=now, closed_at_ms=now, close_reason="expert"
            )
        if view is not None:
            if pos.open:
                view.positions[pos.ticket] = pos
            else:
                view.positions.pop(pos.ticket, None)
        self.sync.store.put_position(pos)
        self.sync.store.put_event(
            PositionEvent(
                pos.account, pos.ticket, f"bridge_{kind}", pos.client_order_id, detail, now
            )
        )

    # --- closes ------------------------------------------------------------------------------

    async def close_position(self, req: ClosePositionRequest) -> OrderResult:
        """Close all or part of a position. Refused before anything is journalled (unknown
        position, bad volume, frozen): a REJECTED result without a client order id."""
        try:
            return await self._close(req)
        except PositionError as exc:
            return refused_close(req.account, req.ticket, exc.refusal)

    async def close_by(self, req: CloseByRequest) -> OrderResult:
        try:
            return await self._close_by(req)
        except PositionError as exc:
            return refused_close(req.account, req.ticket, exc.refusal)

    async def reverse_position(self, req: ReversePositionRequest) -> ReversalResult:
        try:
            return await reversal.reverse(self, req)
        except PositionError as exc:
            return ReversalResult(
                complete=False,
                message=f"not reversed: {exc.refusal.message}; nothing was sent",
                close=refused_close(req.account, req.ticket, exc.refusal),
            )

    async def _close(self, req: ClosePositionRequest) -> OrderResult:
        account = account_key(req.account)
        session = self.route(account)
        pos = await self.position(account, req.ticket)
        if req.volume is not None and req.volume > pos.volume + 1e-9:
            # The view is up to a sync interval old: a netting position may have grown.
            pos = await self.position(account, req.ticket, live=True)
        volume = pos.volume if req.volume is None else req.volume
        spec, tick = self.market(session, pos.symbol)
        self._check_close_volume(spec, pos, volume)
        self._check_not_frozen(spec, pos, tick)
        record, routed = await self._close_record(
            req.account, req.client_order_id, pos, volume, OrderAction.CLOSE, session
        )
        record.requested_price = tick.bid if pos.buy else tick.ask
        record.deviation_points = req.deviation_points
        if isinstance(routed, NotRoutable):
            return await self.execution.refuse(
                record, Refusal("account", routed.rule, str(routed)), time.perf_counter_ns()
            )
        busy = busy_refusal(routed)  # admission, as for new orders: nothing journalled as sent
        if busy is not None:
            return await self.execution.refuse(record, busy, time.perf_counter_ns())
        routed.reserve_trade()
        msg = m.ClosePosition(
            id=0,
            ticket=pos.ticket,
            # The volume asked for, as asked: 0 ("all") only when none was given, since the
            # view's volume may be older than the position (a netting position that grew).
            volume=0.0 if req.volume is None else volume,
            deviation=req.deviation_points,
            comment=record.comment,
        )
        result = await self.execution.submit(
            record, routed, msg, time.perf_counter_ns(), new_id=req.client_order_id is None
        )
        if result.status == OrderStatus.FILLED:
            self._after_close(pos, result.fill_volume or volume, record.remainder_ticket)
        return result

    async def _close_record(
        self,
        account: str,
        client_order_id: str | None,
        pos: PositionState,
        volume: float,
        action: OrderAction,
        session: TerminalSession,
    ) -> tuple[OrderRecord, TerminalSession | NotRoutable]:
        """The journal record of a close: an order the other way, naming the position, for
        ``session`` (the one whose features were checked)."""
        record, routed = await self.execution.new_record(
            account,
            client_order_id,
            None,
            pos.symbol,
            OrderType.SELL if pos.buy else OrderType.BUY,
            volume,
            pos.magic,
            session=session,
        )
        record.action, record.position_ticket = action, pos.ticket
        return record, routed

    def _check_close_volume(self, spec: SymbolSpec, pos: PositionState, volume: float) -> None:
        if volume > pos.volume + 1e-9:
            raise PositionError(
                Refusal("volume", "volume_above_position", f"the position holds {pos.volume} lots")
            )
        refusal = volume_refusal(volume, spec)
        if refusal is not None:
            raise PositionError(refusal)
        rest = round(pos.volume - volume, 8)
        if 0 < rest < spec.volume_min - 1e-9:
            raise PositionError(
                Refusal(
                    "volume",
                    "volume_remainder",
                    f"{rest} lots would remain, below the minimum of {spec.volume_min}",
                )
            )

    def _check_not_frozen(self, spec: SymbolSpec, pos: PositionState, tick: m.Tick) -> None:
        freeze = spec.freeze_level * spec.point
        if position_frozen(pos.buy, pos.sl, pos.tp, tick.bid, tick.ask, freeze):
            raise PositionError(
                Refusal(
                    "ticket",
                    "freeze_level",
                    f"SL or TP is within the freeze level ({spec.freeze_level} points)",
                )
            )

    def _after_close(self, pos: PositionState, volume: float, remainder: int | None) -> None:
        rest = round(pos.volume - volume, 8)
        if rest <= 0 or not remainder:
            self._remember(dataclasses.replace(pos, open=False), f"closed {volume}", "closed")
            return
        if remainder != pos.ticket:  # MT4: the rest lives on under a new ticket
            self._remember(dataclasses.replace(pos, open=False), f"closed {volume}", "closed")
        moved = dataclasses.replace(pos, ticket=remainder, volume=rest)
        self._remember(moved, f"closed {volume}, {rest} left as #{remainder}", "partially_closed")

    async def _close_by(self, req: CloseByRequest) -> OrderResult:
        account = account_key(req.account)
        session = self.route(account)
        assert session.identity is not None
        if session.identity.margin_mode != MarginMode.HEDGING:
            raise PositionError(
                Refusal("account", "hedging_only", "close-by needs a hedging account")
            )
        pos = await self.position(account, req.ticket)
        by = await self.position(account, req.opposite)
        if by.symbol != pos.symbol or by.buy == pos.buy:
            raise PositionError(
                Refusal(
                    "opposite",
                    "not_opposite",
                    f"#{by.ticket} is not an opposite position on {pos.symbol}",
                )
            )
        spec, tick = self.market(session, pos.symbol)
        self._check_not_frozen(spec, pos, tick)
        self._check_not_frozen(spec, by, tick)
        volume = min(pos.volume, by.volume)
        record, routed = await self._close_record(
            req.account, req.client_order_id, pos, volume, OrderAction.CLOSE_BY, session
        )
        record.by_ticket = by.ticket
        if isinstance(routed, NotRoutable):
            return await self.execution.refuse(
                record, Refusal("account", routed.rule, str(routed)), time.perf_counter_ns()
            )
        msg = m.CloseBy(id=0, ticket=pos.ticket, opposite=by.ticket)
        result = await self.execution.submit(
            record, routed, msg, time.perf_counter_ns(), new_id=req.client_order_id is None
        )
        if result.status == OrderStatus.FILLED:
            remainder = record.remainder_ticket
            for p in (pos, by):
                self._after_close(p, volume, remainder if p.volume > volume else None)
        return result

    # --- reversal ----------------------------------------------------------------------------

    # --- bulk (mtgate.positions.bulk) ---------------------------------------------------------

    def select(self, flt: PositionFilter) -> list[PositionState]:
        """Open positions matching ``flt``, from the synchronizer's view."""
        if self.sync is None:
            raise PositionError(Refusal("select", "no_sync", "bulk operations need the sync"))
        return bulk.select(self.sync.views, flt)

    async def bulk_modify(self, req: BulkModifyRequest) -> list[BulkItem]:
        return await bulk.bulk_modify(self, req)

    async def bulk_close(self, req: BulkCloseRequest) -> list[BulkItem]:
        return await bulk.bulk_close(self, req)


def refused_close(account: str, ticket: int, refusal: Refusal) -> OrderResult:
    """A close refused before it was journalled, as an order result without an order."""
    return OrderResult(
        client_order_id="",
        account=account,
        terminal_id="",
        symbol="",
        order_type="",
        status=OrderStatus.REJECTED,
        volume=0.0,
        action=OrderAction.CLOSE.value,
        position_ticket=ticket,
        error=OrderError(
            source="bridge",
            message=refusal.message,
            field=refusal.field,
            rule=refusal.rule,
            classification=Classification.REJECTED,
        ),
    )
