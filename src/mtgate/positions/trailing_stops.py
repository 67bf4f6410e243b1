"""Trailing stops managed by the bridge: driven by the terminal's price updates.

Each trailing stop is a :class:`~mtgate.positions.rules.TrailingStop` (the pure rule) plus
what the bridge needs around it: at most one SL change in flight per position, the stored row
(so a restart or a reconnect resumes it), and following the position through MT4
renumbering. The rule itself decides when to move (activation, step, stops and freeze levels,
rate limit); the terminal's acceptance is what counts as a move.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict, deque
from dataclasses import dataclass

from mtgate import logs
from mtgate.domain.clock import Clock
from mtgate.execution.service import account_key
from mtgate.positions.errors import PositionError
from mtgate.positions.requests import ModifyPositionRequest, PositionResult, TrailingStopRequest
from mtgate.positions.service import PositionService
from mtgate.positions.trailing import HoldReason, TrailingSpec, TrailingStop
from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey, TerminalSession
from mtgate.store.sync_store import PositionEvent, SyncStore, TrailingState
from mtgate.sync.diff import ChangeKind
from mtgate.sync.synchronizer import SyncEvent, Synchronizer

log = logs.get("mtgate.trailing")

MOVES_KEPT = 1000


@dataclass(slots=True)
class _Entry:
    state: TrailingState
    spec: TrailingSpec
    rule: TrailingStop | None
    """None until the position's open price is known (a trailing stop reloaded at start-up
    learns it from the first snapshot)."""
    in_flight: bool = False
    last_attempt_ms: int | None = None
    """A refused or rejected move counts against the rate limit too."""
    recheck: bool = False
    """A price arrived while a move was in flight: look again once it is done."""
    retry: asyncio.TimerHandle | None = None
    """A price that came too soon is looked at again when the rate limit allows."""


class TrailingManager:
    """All active trailing stops of the bridge."""

    def __init__(
        self, positions: PositionService, sync: Synchronizer, store: SyncStore, clock: Clock
    ) -> None:
        self.positions = positions
        self.sync = sync
        self.store = store
        self.clock = clock
        self._entries: dict[tuple[AccountKey, int], _Entry] = {}
        self._by_symbol: dict[tuple[AccountKey, str], set[int]] = defaultdict(set)
        self._tasks: set[asyncio.Task[None]] = set()
        self.moves: deque[tuple[AccountKey, int, float, int]] = deque(maxlen=MOVES_KEPT)
        """The latest accepted moves (account, ticket, new SL, time ms), for inspection; the
        store's position events keep them all."""
        self._errors = logs.Throttle(per_s=1.0)

    async def load(self) -> int:
        """Resume the trailing stops a previous run left active."""
        for state in await self.store.trailing():
            self._add(state, price_open=None)
        return len(self._entries)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    # --- API ---------------------------------------------------------------------------------

    async def start(self, req: TrailingStopRequest) -> TrailingState:
        """Trail ``req.ticket``; replaces a trailing stop already on it. Raises
        :class:`PositionError` when the position is unknown."""
        account = account_key(req.account)
        spec = TrailingSpec(
            req.distance_points, req.step_points, req.activation_points, req.min_interval_ms
        )
        pos = await self.positions.position(account, req.ticket)
        self._finish(account, req.ticket, "replaced")
        now = self.clock.now_ms()
        state = TrailingState(
            account=account,
            ticket=pos.ticket,
            symbol=pos.symbol,
            buy=pos.buy,
            distance_points=spec.distance_points,
            step_points=spec.step_points,
            activation_points=spec.activation_points,
            min_interval_ms=spec.min_interval_ms,
            active=True,
            stop_loss=pos.sl or None,
            moves=0,
            last_moved_at_ms=None,
            finished_reason=None,
            created_at_ms=now,
            updated_at_ms=now,
        )
        self._add(state, price_open=pos.price_open)
        self.store.put_trailing(state)
        self._evaluate_now(account, pos.ticket)
        return state

    def cancel(self, account: AccountKey, ticket: int) -> bool:
        return self._finish(account, ticket, "cancelled")

    def active(self, account: AccountKey | None = None) -> list[TrailingState]:
        return [e.state for (a, _), e in self._entries.items() if account is None or a == account]

    # --- bookkeeping -------------------------------------------------------------------------

    def _add(self, state: TrailingState, *, price_open: float | None) -> _Entry:
        spec = TrailingSpec(
            state.distance_points,
            state.step_points,
            state.activation_points,
            state.min_interval_ms,
        )
        entry = _Entry(state, spec, None)
        if price_open:
            entry.rule = _rule(entry, price_open)
        self._entries[(state.account, state.ticket)] = entry
        self._by_symbol[(state.account, state.symbol)].add(state.ticket)
        return entry

    def _finish(self, account: AccountKey, ticket: int, reason: str) -> bool:
        entry = self._entries.pop((account, ticket), None)
        if entry is None:
            return False
        if entry.retry is not None:
            entry.retry.cancel()
        self._by_symbol[(account, entry.state.symbol)].discard(ticket)
        now = self.clock.now_ms()
        entry.state = dataclasses.replace(
            entry.state, active=False, finished_reason=reason, updated_at_ms=now
        )
        self.store.put_trailing(entry.state)
        log.info("trailing stop finished", account=str(account), ticket=ticket, reason=reason)
        return True

    def on_sync(self, event: SyncEvent) -> None:
        """Follow the positions: closed ones end their trailing stop, MT4 renumbering moves
        it to the new ticket."""
        change = event.change
        if change is None or (event.account, change.ticket) not in self._entries:
            return
        if change.kind == ChangeKind.POSITION_CLOSED:
            self._finish(event.account, change.ticket, f"position closed ({change.reason})")
        elif change.new_ticket:
            entry = self._entries[(event.account, change.ticket)]
            self._finish(event.account, change.ticket, f"renumbered as #{change.new_ticket}")
            now = self.clock.now_ms()
            follow = dataclasses.replace(
                entry.state,
                ticket=change.new_ticket,
                active=True,
                finished_reason=None,
                created_at_ms=now,
                updated_at_ms=now,
            )
            self._add(follow, price_open=entry.rule.price_open if entry.rule else None)
            self.store.put_trailing(follow)

    # --- prices ------------------------------------------------------------------------------

    def on_tick(self, session: TerminalSession, tick: m.Tick) -> None:
        if session.identity is None:
            return
        account = session.identity.account
        for ticket in list(self._by_symbol.get((account, tick.symbol), ())):
            self._evaluate(session, account, ticket, tick)

    def _evaluate_now(self, account: AccountKey, ticket: int) -> None:
        entry = self._entries.get((account, ticket))
        if entry is None:
            return
        try:
            session = self.positions.execution.registry.route(account)
        except Exception:  # not routable now: the next tick after a reconnect evaluates it
            return
        tick = session.view.ticks.get(entry.state.symbol)
        if tick is not None:
            self._evaluate(session, account, ticket, tick)

    def _evaluate(
        self, session: TerminalSession, account: AccountKey, ticket: int, tick: m.Tick
    ) -> None:
        """Look at one trailing stop with ``tick``. Whatever the terminal's data holds (a
        symbol with a zero tick size, an impossible open price), a failure stays here: it is
        logged and the other positions and the session go on."""
        try:
            self._evaluate_one(session, account, ticket, tick)
        except Exception as exc:
            suppressed = self._errors.allow()
            if suppressed is not None:
                log.error(
                    "trailing stop not evaluated",
                    account=str(account),
                    ticket=ticket,
                    error=repr(exc),
                    suppressed=suppressed,
                )

    def _evaluate_one(
        self, session: TerminalSession, account: AccountKey, ticket: int, tick: m.Tick
    ) -> None:
        entry = self._entries.get((account, ticket))
        view = self.sync.views.get(account)
        pos = view.positions.get(ticket) if view else None
        spec = session.view.symbols.get(tick.symbol)
        if entry is not None and entry.in_flight:
            entry.recheck = True
            return
        if entry is None or pos is None or spec is None:
            return
        if entry.rule is None:
            entry.rule = _rule(entry, pos.price_open)  # reloaded at start-up
        now = self.clock.now_ms()
        last = entry.last_attempt_ms
        if last is not None and now - last < entry.spec.min_interval_ms:
            self._retry_later(entry, account, ticket, last + entry.spec.min_interval_ms - now)
            return
        decision = entry.rule.decide(tick.bid, tick.ask, spec, now, pos.sl, pos.tp)
        if decision.reason == HoldReason.TOO_SOON and entry.rule.last_moved_ms is not None:
            wait_ms = entry.rule.last_moved_ms + entry.spec.min_interval_ms - now
            self._retry_later(entry, account, ticket, wait_ms)
        if decision.move_to is None:
            return
        entry.in_flight = True
        task = asyncio.get_running_loop().create_task(
            self._move(entry, decision.move_to), name=f"trail:{account}:{ticket}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _retry_later(self, entry: _Entry, account: AccountKey, ticket: int, wait_ms: int) -> None:
        """Look at the latest price again once the rate limit allows (the market may be
        quiet then: no new price would ask)."""
        if entry.retry is not None:
            return
        loop = asyncio.get_running_loop()

        def again() -> None:
            entry.retry = None
            self._evaluate_now(account, ticket)

        entry.retry = loop.call_later(max(wait_ms, 1) / 1000, again)

    async def _move(self, entry: _Entry, sl: float) -> None:
        state = entry.state
        try:
            result = await self.positions.modify_position(
                ModifyPositionRequest(account=str(state.account), ticket=state.ticket, sl=sl)
            )
        except PositionError as exc:
            result = PositionResult(
                account=str(state.account), ticket=state.ticket, status="refused"
            )
            log.warning("trailing move refused", ticket=state.ticket, reason=str(exc))
        finally:
            entry.in_flight = False
        now = self.clock.now_ms()
        if result.status != "done":
            # Refused or rejected: the rule is asked again on a later price; the rate limit
            # applies to attempts too, so a refusing terminal is not hammered.
            entry.last_attempt_ms = now
            log.info(
                "trailing move not applied",
                ticket=state.ticket,
                sl=sl,
                status=result.status,
                error=result.error.message if result.error else "",
            )
            if entry.recheck and (state.account, state.ticket) in self._entries:
                entry.recheck = False
                self._retry_later(entry, state.account, state.ticket, state.min_interval_ms)
            return
        if entry.rule is not None:
            entry.rule.moved(sl, now)
        entry.state = dataclasses.replace(
            state, stop_loss=sl, moves=state.moves + 1, last_moved_at_ms=now, updated_at_ms=now
        )
        self.moves.append((state.account, state.ticket, sl, now))
        self.store.put_event(
            PositionEvent(state.account, state.ticket, "trailing_moved", None, f"sl -> {sl}", now)
        )
        if (state.account, state.ticket) in self._entries:
            self.store.put_trailing(entry.state)
            if entry.recheck:
                entry.recheck = False
                self._evaluate_now(state.account, state.ticket)


def _rule(entry: _Entry, price_open: float) -> TrailingStop:
    state = entry.state
    return TrailingStop(
        entry.spec,
        buy=state.buy,
        price_open=price_open,
        stop=(state.stop_loss or 0.0) if state.moves else 0.0,
        last_moved_ms=state.last_moved_at_ms,
    )
