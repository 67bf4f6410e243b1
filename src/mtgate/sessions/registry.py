"""The listener and the registry of terminal sessions; routing an account to a ready terminal."""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mtgate import logs
from mtgate.domain.clock import Clock
from mtgate.domain.enums import Platform
from mtgate.health.meter import TerminalMeter
from mtgate.health.settings import HealthSettings
from mtgate.protocol import messages as m
from mtgate.protocol.link import FramedLink
from mtgate.sessions.routing import Router, RoutingPolicy, Switch
from mtgate.sessions.session import (
    AccountKey,
    SessionSettings,
    SessionState,
    TerminalGrant,
    TerminalSession,
)

log = logs.get("mtgate.registry")


class SessionObserver(Protocol):
    """The execution layer's side of the registry."""

    async def onboard(self, session: TerminalSession) -> None:
        """Sync and reconcile a freshly authenticated session; it becomes ready afterwards."""
        ...

    def on_event(self, session: TerminalSession, name: str, payload: Any) -> None: ...
    def on_gap(self, session: TerminalSession) -> None: ...
    def on_late_response(
        self, session: TerminalSession, op: type[m.Request], response: m.Response
    ) -> None: ...
    def on_closed(self, session: TerminalSession, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class HandshakeLimits:
    """Bounds on what unauthenticated peers may cost: connections in the handshake at once,
    and a token bucket of new connections per address (``burst`` at once, ``per_s`` after)."""

    max_pending: int = 256
    per_s: float = 50.0
    burst: int = 200
    addresses_kept: int = 4096
    """Addresses whose bucket is remembered (the least recently seen are forgotten)."""


class _Buckets:
    """Per-address token buckets, bounded in the number of addresses they remember."""

    def __init__(self, limits: HandshakeLimits, clock: Clock) -> None:
        self._limits = limits
        self._clock = clock
        self._by_address: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def take(self, address: str) -> bool:
        limits = self._limits
        now_ns = self._clock.monotonic_ns()
        tokens, last_ns = self._by_address.pop(address, (float(limits.burst), now_ns))
        tokens = min(float(limits.burst), tokens + (now_ns - last_ns) / 1e9 * limits.per_s)
        allowed = tokens >= 1.0
        self._by_address[address] = (tokens - 1.0 if allowed else tokens, now_ns)
        if len(self._by_address) > limits.addresses_kept:
            self._by_address.popitem(last=False)
        return allowed


@dataclass(frozen=True, slots=True)
class TerminalStatus:
    terminal_id: str
    accounts: list[str]
    state: str
    """A session state (``ready``, ``syncing``, ...) or ``disconnected``."""
    priority: int
    drained: bool
    active_for: list[str]
    """The accounts whose orders go to this terminal now."""


class TerminalRegistry:
    """Accepts terminal connections, authenticates them and routes accounts to them.

    A terminal id has at most one live session; an account may be served by several
    terminals (a standby), and orders go to one ready terminal at a time.
    """

    def __init__(
        self,
        grants: Mapping[str, TerminalGrant],
        observer: SessionObserver,
        *,
        clock: Clock,
        settings: SessionSettings | None = None,
        limits: HandshakeLimits | None = None,
        routing: RoutingPolicy | None = None,
        health: HealthSettings | None = None,
    ) -> None:
        self._grants = dict(grants)
        health = health or HealthSettings()
        self.meters = {tid: TerminalMeter(health) for tid in self._grants}
        """Each configured terminal's measurements (mtgate.health): they outlive its sessions."""
        self.router = Router(
            {tid: g.priority for tid, g in self._grants.items()},
            routing or RoutingPolicy(),
            clock,
            self._on_switch,
        )
        self.switch_listeners: list[Callable[[Switch], None]] = []
        self.terminal_listeners: list[Callable[[bool, TerminalSession, str], None]] = []
        """Called with (True, session, "") when a session becomes ready, and with (False,
        session, reason) when a session that was ready closes."""
        self._announced: set[TerminalSession] = set()
        self._observer = observer
        self._clock = clock
        self.settings = settings or SessionSettings()
        self.limits = limits or HandshakeLimits()
        self._buckets = _Buckets(self.limits, clock)
        self._handshaking: set[TerminalSession] = set()
        self.refused_connections = 0
        """Connections closed at once by :meth:`admit` since start."""
        self._by_terminal: dict[str, TerminalSession] = {}
        self._by_account: dict[AccountKey, list[TerminalSession]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()
        self._platforms: dict[AccountKey, Platform] = {}

    # --- listening ---------------------------------------------------------------------------

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: FramedLink(self._new_session), host, port)
        sock = self._server.sockets[0].getsockname()
        log.info("listening for terminals", host=sock[0], port=sock[1])
        return sock[0], sock[1]

    def _new_session(self) -> TerminalSession:
        return TerminalSession(self, self.settings, self._clock, f"s{next(self._ids)}")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._by_terminal.values()):
            session.close("bridge shutting down", code="shutdown")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    # --- SessionHost -------------------------------------------------------------------------

    def admit(self, session: TerminalSession) -> bool:
        address = session.peer.rpartition(":")[0] or session.peer
        if len(self._handshaking) >= self.limits.max_pending or not self._buckets.take(address):
            self.refused_connections += 1
            return False
        self._handshaking.add(session)
        return True

    def handshake_over(self, session: TerminalSession) -> None:
        self._handshaking.discard(session)

    def grant_for(self, terminal_id: str) -> TerminalGrant | None:
        return self._grants.get(terminal_id)

    def handshakes_in_progress(self) -> int:
        return len(self._handshaking)

    def claim(self, session: TerminalSession) -> str | None:
        assert session.identity is not None
        tid = session.identity.terminal_id
        current = self._by_terminal.get(tid)
        if current is not None and current.state != SessionState.CLOSED:
            # Said only to a peer that proved the key: it is that terminal, reconnecting
            # before the bridge noticed its previous connection died.
            return f"terminal {tid!r} already has a live session"
        self._by_terminal[tid] = session
        meter = self.meters[tid]
        meter.platform, meter.account = session.identity.platform, session.identity.account
        meter.ready_sessions += 1
        session.meter = meter
        self._by_account.setdefault(session.identity.account, []).append(session)
        self._platforms[session.identity.account] = session.identity.platform
        return None

    def session_authenticated(self, session: TerminalSession) -> None:
        self._spawn(self._onboard(session), f"onboard:{session.terminal_id}")

    async def _onboard(self, session: TerminalSession) -> None:
        try:
            await self._observer.onboard(session)
        except Exception as exc:  # a failed sync must not leave a half-ready session around
            log.error("terminal sync failed", terminal=session.terminal_id, error=repr(exc))
            session.close(f"initial sync failed: {exc}", code="sync_failed")
            return
        session.mark_ready()
        log.info(
            "terminal ready",
            terminal=session.terminal_id,
            account=str(session.identity and session.identity.account),
        )
        self._announced.add(session)
        self._tell_terminal(True, session, "")
        await self._notify()

    def session_event(self, session: TerminalSession, name: str, payload: Any) -> None:
        self._observer.on_event(session, name, payload)

    def session_gap(self, session: TerminalSession, expected: int, got: int) -> None:
        self._observer.on_gap(session)

    def session_late_response(
        self, session: TerminalSession, op: type[m.Request], response: m.Response
    ) -> None:
        self._observer.on_late_response(session, op, response)

    def session_closed(self, session: TerminalSession, reason: str) -> None:
        assert session.identity is not None
        if self._by_terminal.get(session.identity.terminal_id) is session:
            del self._by_terminal[session.identity.terminal_id]
        peers = self._by_account.get(session.identity.account, [])
        if session in peers:
            peers.remove(session)
        meter = self.meters.get(session.identity.terminal_id)
        if meter is not None:
            meter.disconnected(self._clock.monotonic_ns())
        log.info("terminal disconnected", terminal=session.terminal_id, reason=reason)
        if session in self._announced:
            self._announced.discard(session)
            self._tell_terminal(False, session, reason)
        self._observer.on_closed(session, reason)
        self._spawn(self._notify(), "notify")

    # --- routing -----------------------------------------------------------------------------

    def route(self, account: AccountKey) -> TerminalSession:
        """The ready terminal that trades ``account`` now (:class:`Router`), or
        :class:`NotRoutable`."""
        return self.router.choose(account, self._by_account.get(account, []))

    def lookup_session(self, account: AccountKey) -> TerminalSession | None:
        """A ready terminal of ``account`` to look orders up on (drained ones included)."""
        return self.router.lookup_session(account, self._by_account.get(account, []))

    def alternative(self, account: AccountKey, other_than: str) -> TerminalSession | None:
        """The best ready, undrained terminal of ``account`` other than ``other_than`` (a
        retry through another terminal), or None. Does not change the account's route."""
        usable = [
            s
            for s in self._by_account.get(account, [])
            if s.state == SessionState.READY
            and s.terminal_id != other_than
            and s.terminal_id not in self.router.drained
        ]
        if not usable:
            return None
        return min(usable, key=lambda s: (self.router.priority(s.terminal_id), s.ready_since_ns))

    def drain(self, terminal_id: str) -> None:
        """No new orders nor position changes go to ``terminal_id``; what it has in flight
        finishes there. KeyError for a terminal the configuration does not know."""
        if terminal_id not in self._grants:
            raise KeyError(terminal_id)
        self.router.drained.add(terminal_id)
        log.info("terminal drained", terminal=terminal_id)

    def enable(self, terminal_id: str) -> None:
        """Undo :meth:`drain`. KeyError for a terminal the configuration does not know."""
        if terminal_id not in self._grants:
            raise KeyError(terminal_id)
        self.router.drained.discard(terminal_id)
        log.info("terminal enabled", terminal=terminal_id)

    def status(self) -> list[TerminalStatus]:
        """Every configured terminal: its state, priority, drain flag and where it is active."""
        out = []
        for tid, grant in sorted(self._grants.items()):
            session = self._by_terminal.get(tid)
            out.append(
                TerminalStatus(
                    terminal_id=tid,
                    accounts=sorted(str(a) for a in grant.accounts),
                    state=session.state.value if session is not None else "disconnected",
                    priority=grant.priority,
                    drained=tid in self.router.drained,
                    active_for=sorted(
                        str(a) for a in grant.accounts if self.router.active(a) == tid
                    ),
                )
            )
        return out

    def _tell_terminal(self, up: bool, session: TerminalSession, reason: str) -> None:
        for listener in list(self.terminal_listeners):
            try:
                listener(up, session, reason)
            except Exception as exc:  # one listener's bug must not stop the others
                log.error("terminal listener failed", error=repr(exc))

    def _on_switch(self, switch: Switch) -> None:
        for listener in list(self.switch_listeners):
            try:
                listener(switch)
            except Exception as exc:  # one listener's bug must not stop the others
                log.error("switch listener failed", error=repr(exc))

    def session(self, terminal_id: str) -> TerminalSession | None:
        """The terminal's live session (in any state), if it has one."""
        return self._by_terminal.get(terminal_id)

    def grants(self) -> Mapping[str, TerminalGrant]:
        """Every configured terminal's grant, by id."""
        return self._grants

    def ready_session(self, terminal_id: str) -> TerminalSession | None:
        session = self._by_terminal.get(terminal_id)
        return session if session is not None and session.state == SessionState.READY else None

    def platform_of(self, account: AccountKey) -> Platform | None:
        """The platform of the account's terminals, once one has connected."""
        return self._platforms.get(account)

    def sessions(self) -> list[TerminalSession]:
        return list(self._by_terminal.values())

    def accounts(self) -> list[AccountKey]:
        """Accounts with a connected terminal."""
        return [a for a, s in self._by_account.items() if s]

    def configured_accounts(self) -> frozenset[AccountKey]:
        """Every account a configured terminal may serve, connected or not."""
        return frozenset().union(*(g.accounts for g in self._grants.values()))

    async def wait_ready(self, terminal_ids: set[str], timeout_s: float) -> None:
        """Wait until every named terminal has a ready session (demo, tests, start-up)."""

        def all_ready() -> bool:
            return all(
                (s := self._by_terminal.get(t)) is not None and s.state == SessionState.READY
                for t in terminal_ids
            )

        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(all_ready)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", task=task.get_name(), error=repr(task.exception()))
