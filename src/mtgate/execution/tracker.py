"""Keeping orders true to the terminal: answers, events, resolution, onboarding.

- A trade's answer is applied by :meth:`Tracker.apply_trade_result`; events about an order
  whose answer is still awaited are deferred and replayed after it, so the first proof of an
  outcome wins and later ones only add detail.
- An order whose outcome is unknown is resolved by looking it up on the account by client
  order id. Finding it proves the outcome. Not finding it proves absence only when the
  session that carried the request is gone (the EA drops unstarted trades with a dead
  connection) and the lookup ran on a later session; otherwise the order stays UNKNOWN.
- A session becomes ready only after its account, symbols and ticks are cached and every
  unfinished order of its account in the journal has been reconciled (DESIGN §4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from mtgate import logs
from mtgate.domain.backoff import Backoff
from mtgate.domain.enums import DealEntry, DealReason, OrderState, Platform
from mtgate.domain.orders import TERMINAL as FINAL_STATUSES
from mtgate.domain.orders import OrderAction, OrderStatus, Trigger, client_id_from_comment
from mtgate.domain.records import OrderRecord
from mtgate.domain.symbols import margin_required, pending_frozen
from mtgate.execution.book import OrderBook
from mtgate.execution.validation import Market, OrderIntent, Refusal, prevalidate
from mtgate.protocol import messages as m
from mtgate.sessions.errors import NotRoutable, SessionError
from mtgate.sessions.registry import TerminalRegistry
from mtgate.sessions.session import AccountKey, SessionState, TerminalSession

if TYPE_CHECKING:
    from mtgate.sync.synchronizer import Synchronizer

log = logs.get("mtgate.tracker")

ACCOUNT_REFRESH_DELAY_S = 0.2
_UNFINISHED = (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN, OrderStatus.PLACED)


class Tracker:
    """The registry's :class:`SessionObserver`; applies what terminals report to the book."""

    def __init__(self, book: OrderBook, *, resolve_backoff_cap_s: float = 5.0) -> None:
        self.book = book
        self.registry: TerminalRegistry | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._resolving: set[str] = set()
        self._events: asyncio.Queue[tuple[TerminalSession, str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._backoff_cap_s = resolve_backoff_cap_s
        self._refreshing: set[str] = set()
        self.sync: Synchronizer | None = None
        self.tick_listeners: list[Callable[[TerminalSession, m.Tick], None]] = []

    def attach(self, registry: TerminalRegistry) -> None:
        self.registry = registry
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
        self._fill_fields(
            record,
            result.price,
            result.volume,
            result.position,
            result.deal,
            self.book.carrier.get(record.client_order_id),
        )
        await self.book.move(record, Trigger.FILL, f"filled at {result.price} as #{result.order}")

    def _fill_fields(
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
        if spec is not None and record.requested_price is not None:
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
        try:
            need = margin_required(spec, record.volume, price, account.leverage, account.currency)
        except ValueError:
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
            session.view.account = report
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
                listener(session, payload)
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
            await self._apply_deal(record, payload, session)
        elif isinstance(payload, m.OrderReport):
            await self._apply_order_report(record, payload)

    async def _apply_deal(
        self, record: OrderRecord, deal: m.DealReport, session: TerminalSession
    ) -> None:
        """A deal made by the order's own ticket fills it (netting: whatever its entry)."""
        if deal.order != (record.mt_order_id or deal.order):
            return
        record.mt_order_id = record.mt_order_id or deal.order
        if self.book.can(record, Trigger.FILL):
            self._fill_fields(
                record, deal.price, deal.volume, deal.position_id, deal.ticket, session
            )
            await self.book.move(record, Trigger.FILL, f"deal #{deal.ticket} at {deal.price}")

    async def _apply_order_report(self, record: OrderRecord, order: m.OrderReport) -> None:
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
            await self._refresh_fields(record, order)
        elif (
            state == OrderState.FILLED
            and record.status == OrderStatus.UNKNOWN
            and record.order_type.is_pending
        ):
            await self.book.move(
                record, Trigger.PLACE, f"order #{order.ticket} was placed and has filled"
            )

    async def _refresh_fields(self, record: OrderRecord, order: m.OrderReport) -> None:
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
        """Events were missed: re-read every unfinished order of the account."""
        assert session.identity is not None
        for record in self.book.active(session.identity.account):
            if record.client_order_id not in self.book.deferred:  # its own answer settles it
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
        if record is None or client_order_id in self.book.deferred:
            return
        if (record.account_login, record.account_server) != (account.login, account.server):
            return
        if record.status in (OrderStatus.UNKNOWN, OrderStatus.PLACED):
            self.resolve_later(record)

    # --- resolution --------------------------------------------------------------------------

    def resolve_later(self, record: OrderRecord) -> None:
        if record.client_order_id not in self._resolving:
            self._resolving.add(record.client_order_id)
            self._spawn(self._resolve(record), f"resolve:{record.client_order_id}")

    def refresh_later(self, record: OrderRecord) -> None:
        self.resolve_later(record)

    async def _resolve(self, record: OrderRecord) -> None:
        backoff = Backoff(base_s=0.05, cap_s=self._backoff_cap_s)
        account = AccountKey(record.account_login, record.account_server)
        try:
            while record.status in _UNFINISHED:
                session = await self._ready_session(account, record.terminal_id, backoff)
                try:
                    lookup = await session.request(
                        lookup_request(record), session.settings.read_timeout_s
                    )
                except SessionError as exc:
                    log.warning(
                        "resolution lookup failed",
                        client_order_id=record.client_order_id,
                        error=str(exc),
                    )
                    await asyncio.sleep(backoff.next_delay_s())
                    continue
                if (
                    await self.apply_lookup(record, lookup, session)
                    or record.status == OrderStatus.PLACED
                ):
                    return
                await asyncio.sleep(backoff.next_delay_s())
        finally:
            self._resolving.discard(record.client_order_id)

    async def _ready_session(
        self, account: AccountKey, terminal_id: str, backoff: Backoff
    ) -> TerminalSession:
        """The carrying terminal's session when it is ready (only it can prove absence),
        else any ready session of the account (which can still find the order)."""
        assert self.registry is not None
        while True:
            own = self.registry.ready_session(terminal_id)
            if own is not None:
                return own
            try:
                return self.registry.route(account)
            except NotRoutable:
                await asyncio.sleep(backoff.next_delay_s())

    async def apply_lookup(
        self, record: OrderRecord, found: m.Lookup, session: TerminalSession
    ) -> bool:
        """Apply what an ``order_get`` found. True when the order's outcome is settled."""
        if record.action != OrderAction.OPEN:
            return await self._apply_close_lookup(record, found, session)
        entries = [d for d in found.deals if d.entry in (DealEntry.IN, DealEntry.INOUT)]
        if entries:
            await self._apply_deal(record, entries[0], session)
        elif found.positions and self.book.can(record, Trigger.FILL):
            p = found.positions[0]
            record.mt_order_id = record.mt_order_id or p.ticket
            self._fill_fields(record, p.price_open, p.volume, p.identifier, 0, session)
            await self.book.move(record, Trigger.FILL, f"found open position #{p.ticket}")
        for order in [*found.orders, *found.history_orders]:
            await self._apply_order_report(record, order)
        if record.status in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN) and not (
            found.orders or found.history_orders or found.positions or found.deals
        ):
            if self._absence_provable(record, session):
                if record.status == OrderStatus.SUBMITTED:
                    await self.book.move(record, Trigger.LOSE, "its session ended before an answer")
                # Another lookup of the same order may have settled it while the journal wrote.
                if self.book.can(record, Trigger.PROVE_ABSENT):
                    await self.book.move(
                        record,
                        Trigger.PROVE_ABSENT,
                        f"not on account (looked up on {session.terminal_id})",
                    )
                return True
            return False
        return record.status not in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN)

    async def _apply_close_lookup(
        self, record: OrderRecord, found: m.Lookup, session: TerminalSession
    ) -> bool:
        """A close order: its exit deal proves it. MT4 closes carry no comment, so they are
        looked up by the position's ticket: an exit made by an expert closed it; an exit for
        another reason (SL, TP, stop-out, by hand) means the position was gone before our
        close could act, which proves our close absent."""
        exits = [
            d
            for d in found.deals
            if d.entry in (DealEntry.OUT, DealEntry.OUT_BY, DealEntry.INOUT)
            and (record.platform != Platform.MT4 or d.position_id == record.position_ticket)
        ]
        ours = [d for d in exits if d.reason == DealReason.EXPERT]
        if ours and self.book.can(record, Trigger.FILL):
            deal = ours[-1]
            record.mt_order_id = record.mt_order_id or deal.order
            self._fill_fields(
                record, deal.price, deal.volume, deal.position_id, deal.ticket, session
            )
            await self.book.move(record, Trigger.FILL, f"exit deal #{deal.ticket} at {deal.price}")
            return True
        if record.status not in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN):
            return True
        gone_otherwise = bool(exits) and not ours
        if gone_otherwise or self._absence_provable(record, session):
            if record.status == OrderStatus.SUBMITTED:
                await self.book.move(record, Trigger.LOSE, "its session ended before an answer")
            if self.book.can(record, Trigger.PROVE_ABSENT):
                why = "the position was closed otherwise" if gone_otherwise else "no exit deal"
                await self.book.move(
                    record, Trigger.PROVE_ABSENT, f"{why} (looked up on {session.terminal_id})"
                )
            return True
        return False

    def _absence_provable(self, record: OrderRecord, session: TerminalSession) -> bool:
        """Only the terminal that carried the request can testify to its absence, and only from
        a later session: the EA finishes the trade in progress before it reconnects and drops
        the ones it had not started. Another terminal of the account (a standby) can find the
        order, but not finding it proves nothing: the carrier may still be executing it."""
        if session.terminal_id != record.terminal_id:
            return False
        carrier = self.book.carrier.get(record.client_order_id)
        if carrier is None:
            return True  # journalled by an earlier run of the bridge: its sessions are gone
        return carrier is not session and carrier.state == SessionState.CLOSED

    # --- onboarding --------------------------------------------------------------------------

    async def onboard(self, session: TerminalSession) -> None:
        assert session.identity is not None
        timeout = session.settings.read_timeout_s
        session.view.account = await session.request(m.AccountInfo(id=0), timeout)
        specs: list[Any] = await session.request(m.Symbols(id=0), timeout)
        session.view.symbols = {s.name: s for s in specs}
        await session.request(m.Subscribe(id=0, ticks=list(session.view.symbols)), timeout)
        ticks = await asyncio.gather(
            *(session.request(m.GetTick(id=0, symbol=s), timeout) for s in session.view.symbols),
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
        try:
            await self.sync.attach(session)
        except SessionError as exc:  # staleness shows it
            log.error("sync subscription failed", terminal=session.terminal_id, error=str(exc))

    async def _reconcile(self, session: TerminalSession) -> None:
        assert session.identity is not None
        account = session.identity.account
        journalled = await self.book.journal.list_orders(
            account_login=account.login, statuses=set(_UNFINISHED)
        )
        for stored in journalled:
            if stored.account_server != account.server:
                continue
            record = self.book.get(stored.client_order_id) or stored
            self.book.track(record)
            if (
                record.client_order_id in self.book.deferred
                or record.client_order_id in self._resolving
            ):
                continue  # its own answer, or the resolution already running, settles it
            try:
                found = await session.request(
                    lookup_request(record), session.settings.read_timeout_s
                )
            except SessionError as exc:
                log.warning(
                    "reconciliation lookup failed",
                    client_order_id=record.client_order_id,
                    error=str(exc),
                )
                self.resolve_later(record)
                continue
            settled = await self.apply_lookup(record, found, session)
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
            self.book.clock.now_ms(),
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

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("tracker task failed", task=task.get_name(), error=repr(task.exception()))


def lookup_request(record: OrderRecord) -> m.OrderGet:
    """How an unfinished order is looked up: by client order id, except MT4 closes (OrderClose
    takes no comment), which are looked up by the closed position's ticket."""
    if record.action != OrderAction.OPEN and record.platform == Platform.MT4:
        assert record.position_ticket is not None
        return m.OrderGet(id=0, ticket=record.position_ticket)
    return m.OrderGet(id=0, client_id=record.client_order_id)


def _with_margin_used(account: m.AccountReport, need: float) -> m.AccountReport:
    import msgspec

    margin = account.margin + need
    free = account.margin_free - need
    level = account.equity / margin * 100 if margin else 0.0
    return msgspec.structs.replace(account, margin=margin, margin_free=free, margin_level=level)
