"""Which terminal of an account gets its orders: priorities, failover, failback, drain.

An account may be logged in on several terminals (a primary and standbys, DESIGN §4). Orders
go to one of them at a time, the *active* terminal:

- **Priority.** Each terminal has a configured priority, 1 the highest. With nothing else to
  go by, the ready terminal of the best priority is chosen (ties: the one ready longest).
- **Failover.** When the active terminal stops being usable (its session ended, or it was
  drained), the best other ready terminal becomes active at once. Orders the dead one carried
  that are still unknown hold new orders back (the execution layer's failover gate) until the
  standby has resolved them (docs/protocol.md §4.4).
- **Failback, with hysteresis.** After a failover, a better terminal that comes back takes
  over only once it has been ready (handshake, sync and reconciliation done) for
  ``failback_after_s`` without a break. A terminal that flaps (ready, gone, ready) restarts
  its count each time, so traffic never follows it back and forth. Before any failover (the
  bridge starting, terminals connecting one by one) the best ready terminal is taken at once.
- **Drain.** A drained terminal gets no new orders nor position changes; what it has in
  flight finishes there. Enabling it makes it eligible again at once (it never stopped being
  healthy). Lookups of orders in doubt may still use it: it sees the same trade server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from mtgate import logs
from mtgate.domain.clock import Clock
from mtgate.sessions.errors import NotRoutable
from mtgate.sessions.session import AccountKey, SessionState

log = logs.get("mtgate.routing")

DEFAULT_PRIORITY = 1


class Routable(Protocol):
    """What routing reads of a session."""

    @property
    def terminal_id(self) -> str: ...
    @property
    def state(self) -> SessionState: ...
    @property
    def ready_since_ns(self) -> int: ...


S = TypeVar("S", bound=Routable)


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    failback_after_s: float = 30.0
    """How long a better terminal must stay ready after a failover before orders go back."""


@dataclass(frozen=True, slots=True)
class Switch:
    """The active terminal of an account changed."""

    account: AccountKey
    from_terminal: str | None
    to_terminal: str
    reason: str
    """``initial``, ``failover``, ``failback``, ``priority`` or ``drained``."""


class Router:
    """Keeps each account's active terminal; :meth:`choose` is called for every routing."""

    def __init__(
        self,
        priorities: Mapping[str, int],
        policy: RoutingPolicy,
        clock: Clock,
        on_switch: Callable[[Switch], None] | None = None,
    ) -> None:
        self._priorities = dict(priorities)
        self.policy = policy
        self._clock = clock
        self._on_switch = on_switch
        self.drained: set[str] = set()
        self._active: dict[AccountKey, str] = {}
        self._failed_over: set[AccountKey] = set()
        self.switches = 0
        """Changes of an account's active terminal since start (failovers and failbacks)."""

    def priority(self, terminal_id: str) -> int:
        return self._priorities.get(terminal_id, DEFAULT_PRIORITY)

    def active(self, account: AccountKey) -> str | None:
        return self._active.get(account)

    def choose(self, account: AccountKey, sessions: Sequence[S]) -> S:
        """The terminal the account's next order goes to, or :class:`NotRoutable`."""
        if len(sessions) == 1:  # the usual account: one terminal, already routed to
            only = sessions[0]
            if (
                only.state == SessionState.READY
                and self._active.get(account) == only.terminal_id
                and only.terminal_id not in self.drained
            ):
                return only
        ready = [s for s in sessions if s.state == SessionState.READY]
        usable = [s for s in ready if s.terminal_id not in self.drained]
        if not usable:
            raise NotRoutable(self._why_none(account, sessions))
        best = min(usable, key=lambda s: (self.priority(s.terminal_id), s.ready_since_ns))
        current_id = self._active.get(account)
        current = next((s for s in usable if s.terminal_id == current_id), None)
        if current is None:
            reason = "initial" if current_id is None else self._lost_reason(current_id, ready)
            chosen = best
        elif best is current or self.priority(best.terminal_id) >= self.priority(current_id or ""):
            return current
        elif account not in self._failed_over:
            chosen, reason = best, "priority"
        elif self._clock.monotonic_ns() - best.ready_since_ns >= self._hold_ns:
            chosen, reason = best, "failback"
        else:
            return current
        self._switch(account, current_id, chosen.terminal_id, reason)
        return chosen

    def lookup_session(self, account: AccountKey, sessions: Sequence[S]) -> S | None:
        """A ready terminal to look an order up on: the active one if ready, else any (a
        drained terminal still sees the account's trade server)."""
        ready = [s for s in sessions if s.state == SessionState.READY]
        active = self._active.get(account)
        return next((s for s in ready if s.terminal_id == active), ready[0] if ready else None)

    @property
    def _hold_ns(self) -> int:
        return int(self.policy.failback_after_s * 1e9)

    def _lost_reason(self, current_id: str, ready: Sequence[Routable]) -> str:
        if current_id in self.drained and any(s.terminal_id == current_id for s in ready):
            return "drained"
        return "failover"

    def _switch(self, account: AccountKey, old: str | None, new: str, reason: str) -> None:
        self._active[account] = new
        if reason == "failover":
            self._failed_over.add(account)
        elif reason == "failback":
            self._failed_over.discard(account)
        if reason != "initial":
            self.switches += 1
        log.info(
            "orders routed to another terminal" if old else "orders routed",
            account=str(account),
            from_terminal=old,
            to_terminal=new,
            reason=reason,
        )
        if self._on_switch is not None:
            try:
                self._on_switch(Switch(account, old, new, reason))
            except Exception as exc:  # an observer's bug must not stop routing
                log.error("routing observer failed", error=repr(exc))

    def _why_none(self, account: AccountKey, sessions: Sequence[Routable]) -> str:
        if not sessions:
            return f"no terminal is connected for account {account}"
        states = ", ".join(
            f"{s.terminal_id}: {'drained' if s.terminal_id in self.drained else s.state.value}"
            for s in sessions
        )
        return f"no ready terminal for account {account} ({states})"
