"""Fault injection behind one small interface, so that the simulator's coming fault model
plugs in without touching the driver.

:class:`FaultInjector` has one method per fault kind; each returns whether the fault was
injected. :class:`SimFaultInjector` is built on what the simulator offers today
(:class:`mtsim.terminal.TerminalFaults`, :class:`mtsim.server.ServerConfig` swaps, the
terminals' broker delay) and answers False for the kinds it cannot produce yet (price
changed, off quotes, context busy, too many requests, a timeout that does not execute, MT5
IOC partial fills): the run reports those as not injected.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from mtgate.chaos.plan import Fault, FaultKind
from mtsim.server import TradeServer
from mtsim.terminal import SimTerminal, TerminalFaults


class FaultInjector(Protocol):
    """One method per fault kind; True when the fault was injected. ``terminal`` is a
    terminal id, ``server`` a trade-server name; windowed faults end by themselves after
    ``duration_s``."""

    def requote(self, server: str, duration_s: float) -> bool: ...
    def price_changed(self, terminal: str) -> bool: ...
    def off_quotes(self, terminal: str) -> bool: ...
    def context_busy(self, terminal: str) -> bool: ...
    def too_many_requests(self, terminal: str) -> bool: ...
    def no_connection(self, server: str, duration_s: float) -> bool: ...
    def market_closed(self, server: str, symbol: str, duration_s: float) -> bool: ...
    def trade_disabled(self, terminal: str, duration_s: float) -> bool: ...
    def slow_responses(self, terminal: str, duration_s: float) -> bool: ...
    def timeout_executed(self, terminal: str, duration_s: float) -> bool: ...
    def timeout_not_executed(self, terminal: str) -> bool: ...
    def drop_before_execution(self, terminal: str) -> bool: ...
    def drop_after_execution(self, terminal: str) -> bool: ...
    def answer_lost(self, terminal: str) -> bool: ...
    def ea_success_as_error(self, terminal: str) -> bool: ...
    def ea_failure_as_success(self, terminal: str) -> bool: ...
    def terminal_frozen(self, terminal: str, duration_s: float) -> bool: ...
    def terminal_restart(self, terminal: str, down_s: float) -> bool: ...
    def partial_fill(self, terminal: str) -> bool: ...
    def clear(self) -> None:
        """End every fault now (the settle phase): terminals return, servers are restored."""
        ...


def inject(injector: FaultInjector, fault: Fault, terminal: str, server: str, symbol: str) -> bool:
    """Arm ``fault`` through ``injector`` (a bridge restart is the driver's, not this)."""
    d = fault.duration_ms / 1000
    k = FaultKind
    calls: dict[FaultKind, Callable[[], bool]] = {
        k.REQUOTE: lambda: injector.requote(server, d),
        k.PRICE_CHANGED: lambda: injector.price_changed(terminal),
        k.OFF_QUOTES: lambda: injector.off_quotes(terminal),
        k.CONTEXT_BUSY: lambda: injector.context_busy(terminal),
        k.TOO_MANY_REQUESTS: lambda: injector.too_many_requests(terminal),
        k.NO_CONNECTION: lambda: injector.no_connection(server, d),
        k.MARKET_CLOSED: lambda: injector.market_closed(server, symbol, d),
        k.TRADE_DISABLED: lambda: injector.trade_disabled(terminal, d),
        k.SLOW_RESPONSES: lambda: injector.slow_responses(terminal, d),
        k.TIMEOUT_EXECUTED: lambda: injector.timeout_executed(terminal, d),
        k.TIMEOUT_NOT_EXECUTED: lambda: injector.timeout_not_executed(terminal),
        k.DROP_BEFORE_EXECUTION: lambda: injector.drop_before_execution(terminal),
        k.DROP_AFTER_EXECUTION: lambda: injector.drop_after_execution(terminal),
        k.ANSWER_LOST: lambda: injector.answer_lost(terminal),
        k.EA_SUCCESS_AS_ERROR: lambda: injector.ea_success_as_error(terminal),
        k.EA_FAILURE_AS_SUCCESS: lambda: injector.ea_failure_as_success(terminal),
        k.TERMINAL_FROZEN: lambda: injector.terminal_frozen(terminal, d),
        k.TERMINAL_RESTART: lambda: injector.terminal_restart(terminal, d),
        k.PARTIAL_FILL: lambda: injector.partial_fill(terminal),
    }
    call = calls.get(fault.kind)
    return False if call is None else call()


ReturnHook = Callable[[str, object], None]
"""Called with (terminal id, its connection before the return) when a killed terminal is
allowed back: the driver measures from there how long it takes to be READY again."""


class SimFaultInjector:
    """:class:`FaultInjector` over today's simulator.

    ``timeout_delay_ms``: the broker delay that makes a trade outlive the bridge's request
    timeout (the trade still executes); ``slow_delay_ms``: a delay well within it."""

    def __init__(
        self,
        terminals: dict[str, SimTerminal],
        servers: dict[str, TradeServer],
        *,
        timeout_delay_ms: float,
        slow_delay_ms: tuple[float, float] = (30.0, 250.0),
        on_return: ReturnHook | None = None,
    ) -> None:
        self._terminals = terminals
        self._servers = servers
        self._base_configs = {name: s.config for name, s in servers.items()}
        self._base_delays = {tid: t.config.broker_delay_ms for tid, t in terminals.items()}
        self._timeout_delay_ms = timeout_delay_ms
        self._slow_delay_ms = slow_delay_ms
        self._on_return = on_return
        self._windows: Counter[tuple[str, str]] = Counter()
        """(kind, terminal or server[:symbol]) → windows open."""
        self._timers: set[asyncio.TimerHandle] = set()

    # --- windows -----------------------------------------------------------------------------

    def _open(self, kind: str, name: str, duration_s: float, apply: Callable[[], None]) -> bool:
        self._windows[(kind, name)] += 1
        apply()
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def close() -> None:
            assert handle is not None
            self._timers.discard(handle)
            self._windows[(kind, name)] -= 1
            apply()

        handle = loop.call_later(duration_s, close)
        self._timers.add(handle)
        return True

    def _active(self, kind: str, name: str) -> bool:
        return self._windows[(kind, name)] > 0

    def _apply_server(self, server: str) -> None:
        base = self._base_configs[server]
        closed = {
            name.partition(":")[2]
            for (kind, name), n in self._windows.items()
            if kind == "closed" and n > 0 and name.startswith(server + ":")
        }
        self._servers[server].config = dataclasses.replace(
            base,
            connected=base.connected and not self._active("offline", server),
            requote_probability=0.5
            if self._active("requote", server)
            else base.requote_probability,
            sessions={**base.sessions, **{symbol: () for symbol in closed}},
        )

    def _apply_terminal(self, terminal: str) -> None:
        t = self._terminals[terminal]
        delay = self._base_delays[terminal]
        if self._active("timeout", terminal):
            delay = (self._timeout_delay_ms, self._timeout_delay_ms)
        elif self._active("slow", terminal):
            delay = self._slow_delay_ms
        t.config = dataclasses.replace(t.config, broker_delay_ms=delay)
        t.faults.frozen = self._active("frozen", terminal)
        t.faults.reject_trades_after = 0 if self._active("disabled", terminal) else None

    # --- server faults -----------------------------------------------------------------------

    def requote(self, server: str, duration_s: float) -> bool:
        return self._open("requote", server, duration_s, lambda: self._apply_server(server))

    def no_connection(self, server: str, duration_s: float) -> bool:
        return self._open("offline", server, duration_s, lambda: self._apply_server(server))

    def market_closed(self, server: str, symbol: str, duration_s: float) -> bool:
        name = f"{server}:{symbol}"
        return self._open("closed", name, duration_s, lambda: self._apply_server(server))

    # --- terminal faults ---------------------------------------------------------------------

    def trade_disabled(self, terminal: str, duration_s: float) -> bool:
        return self._open("disabled", terminal, duration_s, lambda: self._apply_terminal(terminal))

    def slow_responses(self, terminal: str, duration_s: float) -> bool:
        return self._open("slow", terminal, duration_s, lambda: self._apply_terminal(terminal))

    def timeout_executed(self, terminal: str, duration_s: float) -> bool:
        return self._open("timeout", terminal, duration_s, lambda: self._apply_terminal(terminal))

    def terminal_frozen(self, terminal: str, duration_s: float) -> bool:
        return self._open("frozen", terminal, duration_s, lambda: self._apply_terminal(terminal))

    def _arm(self, terminal: str, field: str) -> bool:
        setattr(self._terminals[terminal].faults, field, True)
        return True

    def drop_before_execution(self, terminal: str) -> bool:
        return self._arm(terminal, "drop_before_next_trade")

    def drop_after_execution(self, terminal: str) -> bool:
        return self._arm(terminal, "drop_after_next_trade")

    def answer_lost(self, terminal: str) -> bool:
        return self._arm(terminal, "answer_lost_next_trade")

    def ea_success_as_error(self, terminal: str) -> bool:
        return self._arm(terminal, "success_as_error_next_trade")

    def ea_failure_as_success(self, terminal: str) -> bool:
        return self._arm(terminal, "failure_as_success_next_trade")

    def terminal_restart(self, terminal: str, down_s: float) -> bool:
        """The terminal's machine goes down now and comes back after ``down_s``. A terminal
        already down is left alone (False)."""
        t = self._terminals[terminal]
        if t.faults.stay_down:
            return False
        t.faults.stay_down = True
        t.drop()
        handle: asyncio.TimerHandle | None = None

        def back() -> None:
            assert handle is not None
            self._timers.discard(handle)
            self._return(terminal)

        handle = asyncio.get_running_loop().call_later(down_s, back)
        self._timers.add(handle)
        return True

    def _return(self, terminal: str) -> None:
        t = self._terminals[terminal]
        if not t.faults.stay_down:
            return
        before = t.connection
        t.faults.stay_down = False
        if self._on_return is not None:
            self._on_return(terminal, before)

    # --- not in the simulator yet ------------------------------------------------------------

    def price_changed(self, terminal: str) -> bool:
        return False

    def off_quotes(self, terminal: str) -> bool:
        return False

    def context_busy(self, terminal: str) -> bool:
        return False

    def too_many_requests(self, terminal: str) -> bool:
        return False

    def timeout_not_executed(self, terminal: str) -> bool:
        return False

    def partial_fill(self, terminal: str) -> bool:
        return False

    # --- settle ------------------------------------------------------------------------------

    def clear(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._windows.clear()
        for name in self._servers:
            self._apply_server(name)
        for tid, t in self._terminals.items():
            down = t.faults.stay_down
            t.faults = TerminalFaults(stay_down=down)
            self._apply_terminal(tid)
            self._return(tid)
