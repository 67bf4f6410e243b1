"""Keeping orders true to the terminal: answers, events, onboarding.

- A trade's answer is applied by :meth:`Tracker.apply_trade_result`; events about an order
  whose answer is still awaited are deferred and replayed after it, so the first proof of an
  outcome wins and later ones only add detail.
- An order whose outcome is unknown is resolved by :class:`~mtgate.execution.resolution.
  Resolver`, which applies what it finds through this tracker's ``fill_fields`` /
  ``apply_deal`` / ``apply_order_report``.
- A session becomes ready only after its account (the one its key is bound to), symbols and
  ticks are cached and every unfinished order of its account in the journal has been
  reconciled (DESIGN §4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from mtgate import logs
from mtgate.domain.backoff import Backoff
from mtgate.domain.enums import OrderState
from mtgate.domain.orders import TERMINAL as FINAL_STATUSES
from mtgate.domain.orders import OrderAction, OrderStatus, Trigger, client_id_from_comment
from mtgate.domain.records import OrderRecord
from mtgate.domain.symbols import margin_required, pending_frozen
from mtgate.execution.book import OrderBook, unfilled_volume
from mtgate.execution.matching import lookup_request
from mtgate.execution.resolution import Resolver
from mtgate.execution.validation import Market, OrderIntent, Refusal, prevalidate
from mtgate.protocol import messages as m
from mtgate.sessions.errors import IdentityMismatch, SessionError, TerminalRejected
from mtgate.sessions.registry import TerminalRegistry
from mtgate.sessions.session import AccountKey, TerminalSession

if TYPE_CHECKING:
    from mtgate.sync.synchronizer import Synchronizer

log = logs.get("mtgate.tracker")
NOT_READY = -3
"""The EA cannot serve the request yet: its terminal's data is not synchronised (§4.2)."""


async def startup_read(session: TerminalSession, msg: m.Request) -> Any:
    """One read of a session's start-up (docs/protocol.md §3.3). A terminal that has just
    started answers -3 ``not_ready`` until its data is synchronised: the read is asked again
    in the same session, with backoff (0.25 s doubling to 2 s, full jitter), for up to
    ``settings.not_ready_wait_s``; only then does its error stand (and the session end,
    ``sync_failed``). Ending the session at the first -3 made a reconnect storm of a terminal
    that was merely starting (protocol review D6)."""
    loop = asyncio.get_running_loop()
    settings = session.settings
    give_up = loop.time() + settings.not_ready_wait_s
    backoff = Backoff(base_s=0.25, cap_s=2.0)
    while True:
        try:
            return await session.request(msg, settings.read_timeout_s)
        except TerminalRejected as exc:
            left = give_up - loop.time()
            if exc.code != NOT_READY or left <= 0:
                raise
            delay = min(backoff.next_delay_s(), left)
            if backoff.attempt == 1:
                log.info(
                    "terminal not ready; asking again",
                    terminal=session.terminal_id,
                    op=type(msg).__name__,
                    reason=exc.message[:200],
                )
        await asyncio.sleep(delay)


ACCOUNT_REFRESH_DELAY_S = 0.2
_UNFINISHED = (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN, OrderStatus.PLACED)


class Tracker:
    """The registry's :class:`SessionObserver`; applies what terminals report to the book."""

    def __init__(self, book: OrderBook, *, resolve_backoff_cap_s: float = 5.0) -> None:
        self.book = book
        self.registry: TerminalRegistry | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._events: asyncio.Queue[tuple[TerminalSession, str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.resolver = Resolver(self, resolve_backoff_cap_s)
        self._refreshing: set[str] = set()
        self.sync: Synchronizer | None = None
        self.tick_listeners: list[Callable[[TerminalSession, m.Tick], None]] = []
        self._listener_errors = logs.Throttle(per_s=1.0)
        """A listener failing on every tick logs once a second, with the count it skipped."""

    def attach(self, registry: TerminalRegistry) -> None:
        self.registry = registry
        self.resolver.registry = registry
        self._worker = asyncio.get_running_loop().create_task(
            self._event_worker(), name="order-events"
        )

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._worker] if self._worker else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    # --- answers -----------------------------------------------------------------------------

    async def apply_trade_result(self, record: OrderRecord, result: m.TradeResult) -> None:
        record.mt_order_id = result.order or record.mt_order_id
        if record.order_type.is_pending:
            if record.status in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN):
                await self.book.move(record, Trigger.PLACE, f"placed as #{result.order}")
            return
        if result.remainder:
            record.remainder_ticket = result.remainder
        if not self.book.can(record, Trigger.FILL):
            return  # its deal event filled it first: the answer repeats what is known
        self.fill_fields(
            record,
            result.price,
            result.volume,
            result.position,
            result.deal,
            self.book.carrier.get(record.client_order_id),
        )
        detail = f"filled at {result.price} as #{result.order}"
        unfilled = unfilled_volume(record)
        if unfilled:
            # MT5 IOC (10010 DONE_PARTIAL): the market filled part; the rest was cancelled
            # by the server, not left working (reference §3.3). The order is done.
            detail += (
                f"; partial fill ({result.code}): {record.fill_volume} of {record.volume} "
                f"lots, {unfilled} not filled and cancelled"
            )
        await self.book.move(record, Trigger.FILL, detail)

    def fill_fields(
        self,
        record: OrderRecord,
        price: float,
        volume: float,
        position: int,
        deal: int,
        session: TerminalSession | None,
    ) -> None:
        record.fill_price = price
        record.fill_volume = volume
        record.mt_position_id = position or record.mt_position_id or record.mt_order_id
        record.mt_deal_id = deal or record.mt_deal_id
        spec = session.view.symbols.get(record.symbol) if session else None
        if spec is not None and record.requested_price is not None and spec.point > 0:
            buy = record.order_type.is_buy
            delta = price - record.requested_price if buy else record.requested_price - price
            record.slippage_points = round(delta / spec.point, 1)
        opens = record.action == OrderAction.OPEN
        if opens and session is not None and session.view.account is not None and spec is not None:
            self._reserve_margin(session, record, price)

    def _reserve_margin(self, session: TerminalSession, record: OrderRecord, price: float) -> None:
        """Lower the cached free margin by the fill's margin until the next account report
        (asked for shortly after), so pre-validation does not accept a burst of orders on a
        stale figure, nor keep refusing on one."""
        self._refresh_account_soon(session)
        account, spec = session.view.account, session.view.symbols[record.symbol]
        assert account is not None
        sent_ns = self.book.clock.monotonic_ns() - int((record.execution_time_ms or 0.0) * 1e6)
        if session.account_at_ns >= sent_ns:
            return  # the terminal reported its account after the order left: it holds the fill
        volume = record.fill_volume or record.volume  # a partial fill holds what it filled
        try:
            need = margin_required(spec, volume, price, account.leverage, account.currency)
        except (ValueError, ArithmeticError):
            return  # a calculation mode or currency the estimate does not cover: await the report
        session.view.account = _with_margin_used(account, need)

    def _refresh_account_soon(self, session: TerminalSession) -> None:
        if session.session_id in self._refreshing:
            return
        self._refreshing.add(session.session_id)
        self._spawn(self._refresh_account(session), f"account:{session.terminal_id}")

    async def _refresh_account(self, session: TerminalSession) -> None:
        """One account report a short while after fills: one read for a burst of them."""
        try:
            await asyncio.sleep(ACCOUNT_REFRESH_DELAY_S)
            report = await session.request(m.AccountInfo(id=0), session.settings.read_timeout_s)
            session.saw_account(report)
        except SessionError as exc:
            log.info("account refresh skipped", terminal=session.terminal_id, reason=str(exc))
        finally:
            self._refreshing.discard(session.session_id)

    async def replay_deferred(self, record: OrderRecord) -> None:
        """Apply the events that arrived while the order's answer was awaited."""
        events = self.book.deferred.pop(record.client_order_id, [])
        session = self.book.carrier.get(record.client_order_id)
        if session is None or not events or record.status in FINAL_STATUSES:
            return  # a final order is what its answer made it: its events can only repeat it
        for name, payload in events:
            await self._apply_event(session, name, payload)

    # --- events ------------------------------------------------------------------------------

    def on_event(self, session: TerminalSession, name: str, payload: Any) -> None:
        if name == "tick":
            for listener in self.tick_listeners:
                try:
                    listener(session, payload)
                except Exception as exc:  # one listener must not stop the others, nor the session
                    suppressed = self._listener_errors.allow()
                    if suppressed is not None:
                        log.error(
                            "tick listener failed",
                            terminal=session.terminal_id,
                            symbol=payload.symbol,
                            error=repr(exc),
                            suppressed=suppressed,
                        )
            return
        if name == "snapshot":
            if self.sync is not None:
                self.sync.on_snapshot(session, payload)
            return
        if name not in ("order", "deal"):
            return
        record = self._record_for(session, payload)
        if record is None:
            return
        deferred = self.book.deferred.get(record.client_order_id)
        if deferred is not None:
            deferred.append((name, payload))
        else:
            self._events.put_nowait((session, name, payload))

    def _record_for(
        self, session: TerminalSession, payload: m.OrderReport | m.DealReport
    ) -> OrderRecord | None:
        assert session.identity is not None
        ticket = payload.order if isinstance(payload, m.DealReport) else payload.ticket
        account = session.identity.account
        record = self.book.by_ticket(account, ticket)
        if record is None:
            cid = client_id_from_comment(payload.comment)
            record = self.book.get(cid) if cid else None
            if record is not None and (record.account_login, record.account_server) != (
                account.login,
                account.server,
            ):
                return None  # the same comment on another account (a trade copier) is not ours
        return record

    async def _event_worker(self) -> None:
        while True:
            session, name, payload = await self._events.get()
            try:
                await self._apply_event(session, name, payload)
            except Exception as exc:  # one bad event must not stop the others
                log.error("applying an event failed", event_name=name, error=repr(exc))

    async def _apply_event(self, session: TerminalSession, name: str, payload: Any) -> None:
        record = self._record_for(session, payload)
        if record is None:
            return
        if isinstance(payload, m.DealReport):
            await self.apply_deal(record, payload, session)
        elif isinstance(payload, m.OrderReport):
            await self.apply_order_report(record, payload)

    async def apply_deal(
        self, record: OrderRecord, deal: m.DealReport, session: TerminalSession
    ) -> None:
        """A deal made by the order's own ticket fills it (netting: whatever its entry)."""
        if deal.order != (record.mt_order_id or deal.order):
            return
        record.mt_order_id = record.mt_order_id or deal.order
        if self.book.can(record, Trigger.FILL):
            self.fill_fields(
                record, deal.price, deal.volume, deal.position_id, deal.ticket, session
            )
            await self.book.move(record, Trigger.FILL, f"deal #{deal.ticket} at {deal.price}")

    async def apply_order_report(self, record: OrderRecord, order: m.OrderReport) -> None:
        record.mt_order_id = record.mt_order_id or order.ticket
        try:
            state = OrderState(order.state)
        except ValueError:
            return  # ORDER_STATE_REQUEST_* and the like: transient, the next report settles it
        trigger = {
            OrderState.PLACED: Trigger.PLACE,
            OrderState.CANCELED: Trigger.CANCEL,
            OrderState.EXPIRED: Trigger.EXPIRE,
            OrderState.REJECTED: Trigger.REJECT,
        }.get(state)
        if trigger is not None and self.book.can(record, trigger):
            await self.book.move(
                record, trigger, f"terminal reports order #{order.ticket} {state.name}"
            )
        elif state == OrderState.PLACED and record.status == OrderStatus.PLACED:
            await self.refresh_fields(record, order)
        elif (
            state == OrderState.FILLED
            and record.status == OrderStatus.UNKNOWN
            and record.order_type.is_pending
        ):
            await self.book.move(
                record, Trigger.PLACE, f"order #{order.ticket} was placed and has filled"
            )

    async def refresh_fields(self, record: OrderRecord, order: m.OrderReport) -> None:
        """The terminal holds the truth about a placed order's levels (after a modify whose
        answer was lost, or a change made by hand)."""
        seen = (
            order.price_open,
            order.stoplimit or None,
            order.sl or None,
            order.tp or None,
            order.expiration_ms or None,
        )
        mine = (
            record.requested_price,
            record.stoplimit_price,
            record.stop_loss,
            record.take_profit,
            record.expiration_ms,
        )
        if seen != mine:
            (
                record.requested_price,
                record.stoplimit_price,
                record.stop_loss,
                record.take_profit,
                record.expiration_ms,
            ) = seen
            await self.book.note(record, f"levels refreshed from the terminal: {seen}")

    def on_gap(self, session: TerminalSession) -> None:
        """Events were missed (docs/protocol.md §7): re-read the account and every unfinished
        order of it; the positions and the history come with the next snapshot (``sync``)."""
        assert session.identity is not None
        self._refresh_account_soon(session)
        for record in self.book.active(session.identity.account):
            if not self.book.busy(record.client_order_id):  # its own sender settles it
                self.refresh_later(record)

    def on_late_response(
        self, session: TerminalSession, op: type[m.Request], response: m.Response
    ) -> None:
        log.warning("late response", terminal=session.terminal_id, op=op.__name__, ok=response.ok)

    def on_closed(self, session: TerminalSession, reason: str) -> None:
        if self.sync is not None:
            self.sync.on_closed(session)

    def recheck(self, account: AccountKey, client_order_id: str) -> None:
        """The terminal reported something of ``client_order_id`` (a snapshot change): if the
        journal holds it unknown or placed, look it up again (the terminal decides)."""
        record = self.book.get(client_order_id)
        if record is None or self.book.busy(client_order_id):
            return
        if (record.account_login, record.account_server) != (account.login, account.server):
            return
        if record.status in (OrderStatus.UNKNOWN, OrderStatus.PLACED):
            self.resolve_later(record)

    # --- resolution --------------------------------------------------------------------------

    def resolve_later(self, record: OrderRecord) -> None:
        """Look ``record`` up until its outcome is settled (:class:`Resolver`)."""
        self.resolver.resolve_later(record)

    def refresh_later(self, record: OrderRecord) -> None:
        self.resolver.resolve_later(record)

    # --- onboarding --------------------------------------------------------------------------

    async def onboard(self, session: TerminalSession) -> None:
        assert session.identity is not None
        report: m.AccountReport = await startup_read(session, m.AccountInfo(id=0))
        claimed = session.identity.account
        if (report.login, report.server) != (claimed.login, claimed.server):
            # The key is bound to the account in hello; the terminal itself must agree.
            raise IdentityMismatch(
                f"terminal reports account {report.login}@{report.server}, "
                f"not the {claimed} it said hello for"
            )
        session.saw_account(report)
        specs: list[Any] = await startup_read(session, m.Symbols(id=0))
        session.view.symbols = {s.name: s for s in specs}
        await startup_read(session, m.Subscribe(id=0, ticks=list(session.view.symbols)))
        ticks = await asyncio.gather(
            *(startup_read(session, m.GetTick(id=0, symbol=s)) for s in session.view.symbols),
            return_exceptions=True,
        )
        for tick in ticks:
            if isinstance(tick, m.Tick):
                session.view.ticks.setdefault(tick.symbol, tick)
            else:  # no quote for one symbol must not keep the account from trading the others
                log.warning("no first tick", terminal=session.terminal_id, error=repr(tick))
        await self._reconcile(session)
        if self.sync is not None:  # in the background: trading does not wait for sync
            self._spawn(self._attach_sync(session), f"sync:{session.terminal_id}")

    async def _attach_sync(self, session: TerminalSession) -> None:
        assert self.sync is not None
        await self.sync.attach(session)  # retries on its own while the session lives

    async def _reconcile(self, session: TerminalSession) -> None:
        """Settle every unfinished order of the account in the journal (all of them, however
        many, DESIGN §4). Placed orders still pending are confirmed from one ``orders`` read;
        the others are looked up one by one."""
        assert session.identity is not None
        account = session.identity.account
        journalled = await self.book.journal.list_orders(
            account_login=account.login,
            account_server=account.server,
            statuses=set(_UNFINISHED),
            limit=None,
        )
        pending: dict[int, m.OrderReport] = {}
        if any(r.status == OrderStatus.PLACED for r in journalled):
            reports: list[m.OrderReport] = await startup_read(session, m.Orders(id=0))
            pending = {o.ticket: o for o in reports}
        for stored in journalled:
            record = self.book.get(stored.client_order_id) or stored
            self.book.track(record)
            if (
                self.book.busy(record.client_order_id)
                or record.client_order_id in self.resolver.resolving
            ):
                continue  # its own sender, or the resolution already running, settles it
            still = pending.get(record.mt_order_id or 0)
            if record.status == OrderStatus.PLACED and still is not None:
                await self.refresh_fields(record, still)
                continue
            try:
                asked_ms = self.book.clock.now_ms()
                found = await startup_read(session, lookup_request(record))
                settled = await self.resolver.apply_lookup(record, found, session, asked_ms)
            except SessionError as exc:
                log.warning(
                    "reconciliation lookup failed",
                    client_order_id=record.client_order_id,
                    error=str(exc),
                )
                self.resolve_later(record)
                continue
            except Exception as exc:  # one order must not keep the account from onboarding
                log.error(
                    "reconciliation of an order failed; resolving it in the background",
                    client_order_id=record.client_order_id,
                    error=repr(exc),
                )
                self.resolve_later(record)
                continue
            if not settled and record.status == OrderStatus.UNKNOWN:
                self.resolve_later(record)

    # --- checks for placed orders ------------------------------------------------------------

    def check_modify(
        self, session: TerminalSession, record: OrderRecord, intent: OrderIntent
    ) -> Refusal | None:
        assert session.identity is not None
        spec = session.view.symbols.get(record.symbol)
        tick = session.view.ticks.get(record.symbol)
        market = Market(
            session.identity.platform,
            session.identity.margin_mode,
            spec,
            tick,
            None,
            session.server_now_ms(),  # expirations are in the trade server's time
        )
        if spec is not None and tick is not None and record.requested_price is not None:
            freeze = spec.freeze_level * spec.point
            if pending_frozen(
                record.order_type, record.requested_price, tick.bid, tick.ask, freeze
            ):
                return Refusal(
                    "price",
                    "freeze_level",
                    f"the order is within the freeze level ({spec.freeze_level} points) of the market",
                )
        return prevalidate(intent, market)

    # --- plumbing ----------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as a tracked task (cancelled at close, failures logged)."""
        self._spawn(coro, name)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("tracker task failed", task=task.get_name(), error=repr(task.exception()))


def _with_margin_used(account: m.AccountReport, need: float) -> m.AccountReport:
    import msgspec

    margin = account.margin + need
    free = account.margin_free - need
    level = account.equity / margin * 100 if margin else 0.0
    return msgspec.structs.replace(account, margin=margin, margin_free=free, margin_level=level)
