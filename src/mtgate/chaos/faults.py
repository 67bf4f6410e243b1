"""Fault injection behind one small interface.

:class:`FaultInjector` has one method per fault kind; each returns whether the fault was
armed. :class:`SimFaultInjector` arms the simulator's trade faults through the chosen
terminal's :class:`mtsim.faults.FaultPlan` (docs/simulator.md, "Faults"): a fault is scripted
for that terminal's next trade it applies to, and the plan counts it only when a trade really
met it. :meth:`SimFaultInjector.faults_by_kind` reports those counters (a ``no_connection``
or ``market_closed`` window counts each trade it refused), plus its own for the kinds the
fault plan does not know (trade disabled, the EA's wrong answers, a frozen EA), counted once
they took effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from mtgate.chaos.plan import Fault, FaultKind
from mtgate.domain.enums import OrderType, Platform
from mtgate.protocol import messages as m
from mtsim import faults as sim
from mtsim.errors import TradeError
from mtsim.server import TradeServer
from mtsim.terminal import SimTerminal, TerminalFaults


class FaultInjector(Protocol):
    """One method per fault kind; True when the fault was armed. ``terminal`` is a terminal
    id; windowed faults end by themselves after ``duration_s``."""

    def requote(self, terminal: str) -> bool: ...
    def price_changed(self, terminal: str) -> bool: ...
    def off_quotes(self, terminal: str) -> bool: ...
    def context_busy(self, terminal: str) -> bool: ...
    def too_many_requests(self, terminal: str) -> bool: ...
    def no_connection(self, terminal: str, duration_s: float) -> bool: ...
    def market_closed(self, terminal: str, duration_s: float) -> bool: ...
    def trade_disabled(self, terminal: str, duration_s: float) -> bool: ...
    def algo_trading_off(self, terminal: str, duration_s: float) -> bool: ...
    def slow_responses(self, terminal: str, duration_s: float) -> bool: ...
    def timeout_executed(self, terminal: str) -> bool: ...
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
        """End every fault now (the settle phase): terminals return, markets reopen."""
        ...

    def faults_by_kind(self) -> dict[str, int]:
        """What really took effect so far, by the suite's kind names."""
        ...


def inject(injector: FaultInjector, fault: Fault, terminal: str) -> bool:
    """Arm ``fault`` through ``injector`` (a bridge restart is the driver's, not this)."""
    d = fault.duration_ms / 1000
    k = FaultKind
    calls: dict[FaultKind, Callable[[], bool]] = {
        k.REQUOTE: lambda: injector.requote(terminal),
        k.PRICE_CHANGED: lambda: injector.price_changed(terminal),
        k.OFF_QUOTES: lambda: injector.off_quotes(terminal),
        k.CONTEXT_BUSY: lambda: injector.context_busy(terminal),
        k.TOO_MANY_REQUESTS: lambda: injector.too_many_requests(terminal),
        k.NO_CONNECTION: lambda: injector.no_connection(terminal, d),
        k.MARKET_CLOSED: lambda: injector.market_closed(terminal, d),
        k.TRADE_DISABLED: lambda: injector.trade_disabled(terminal, d),
        k.ALGO_TRADING_OFF: lambda: injector.algo_trading_off(terminal, d),
        k.SLOW_RESPONSES: lambda: injector.slow_responses(terminal, d),
        k.TIMEOUT_EXECUTED: lambda: injector.timeout_executed(terminal),
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

SIM_KINDS: dict[sim.FaultKind, FaultKind] = {
    sim.FaultKind.REQUOTE: FaultKind.REQUOTE,
    sim.FaultKind.PRICE_CHANGED: FaultKind.PRICE_CHANGED,
    sim.FaultKind.OFF_QUOTES: FaultKind.OFF_QUOTES,
    sim.FaultKind.CONTEXT_BUSY: FaultKind.CONTEXT_BUSY,
    sim.FaultKind.TOO_MANY_REQUESTS: FaultKind.TOO_MANY_REQUESTS,
    sim.FaultKind.NO_CONNECTION: FaultKind.NO_CONNECTION,
    sim.FaultKind.MARKET_CLOSED: FaultKind.MARKET_CLOSED,
    sim.FaultKind.SLOW: FaultKind.SLOW_RESPONSES,
    sim.FaultKind.LATE_ANSWER: FaultKind.TIMEOUT_EXECUTED,
    sim.FaultKind.HANG: FaultKind.TIMEOUT_NOT_EXECUTED,
    sim.FaultKind.DROP_BEFORE: FaultKind.DROP_BEFORE_EXECUTION,
    sim.FaultKind.DROP_AFTER: FaultKind.DROP_AFTER_EXECUTION,
    sim.FaultKind.ANSWER_LOST: FaultKind.ANSWER_LOST,
    sim.FaultKind.PARTIAL_FILL: FaultKind.PARTIAL_FILL,
    sim.FaultKind.RESTART: FaultKind.TERMINAL_RESTART,
}
"""The simulator's fault kinds (counted by each terminal's FaultPlan) as the suite names them."""

MAX_QUEUED = 20
"""Scripted faults waiting on one terminal at most: a terminal that no longer trades (its
account failed over) does not pile up a run's worth of them."""

_FLAGS: dict[FaultKind, str] = {
    FaultKind.EA_SUCCESS_AS_ERROR: "success_as_error_next_trade",
    FaultKind.EA_FAILURE_AS_SUCCESS: "failure_as_success_next_trade",
}
"""The EA's wrong answers: :class:`TerminalFaults` flags the next trade consumes."""


class SimFaultInjector:
    """:class:`FaultInjector` over the simulator.

    Trade faults are scripted on the terminal's :class:`mtsim.faults.FaultPlan` and hit the
    next trade they apply to (a price fault: the next market order or close; a partial fill:
    the next MT5 market order, filled IOC since the run's MT5 symbols allow only IOC).
    ``timeout_delay_ms``: how long a ``timeout_executed`` answer is held (beyond the bridge's
    request timeout, within its longest trade call); ``slow_delay_ms``: the extra delay of a
    slow answer, well within the timeout. A restart goes through
    :meth:`mtsim.terminal.SimTerminal.restart`: while the terminal is away the trade server
    goes on (the price may run through a position's SL, the holder may trade by hand), and
    some restarts reboot the machine (the EA's clock starts again)."""

    def __init__(
        self,
        terminals: dict[str, SimTerminal],
        servers: dict[str, TradeServer],
        *,
        timeout_delay_ms: float,
        slow_delay_ms: tuple[float, float] = (30.0, 250.0),
        seed: int = 0,
        on_return: ReturnHook | None = None,
    ) -> None:
        self._terminals = terminals
        self._servers = servers
        self._timeout_delay_ms = int(timeout_delay_ms)
        self._slow_delay_ms = slow_delay_ms
        self._on_return = on_return
        self._rngs = {tid: random.Random(f"{seed}:{tid}") for tid in terminals}
        """One generator per terminal: its faults come in its account's plan order."""
        self._windows: Counter[tuple[str, str]] = Counter()
        """(kind, terminal) → windows open."""
        self._timers: set[asyncio.TimerHandle] = set()
        self._restarts: dict[str, asyncio.Task[None]] = {}
        self._own: Counter[FaultKind] = Counter()
        """Kinds the fault plan does not know, counted here once in effect."""
        self._armed: Counter[FaultKind] = Counter()
        """EA wrong answers armed; those still unconsumed at :meth:`clear` are taken off."""
        self.while_down_changes: Counter[str] = Counter()
        """What the trade servers did while a terminal was away: ``sl_hit``, ``manual``."""

    # --- counters ----------------------------------------------------------------------------

    def faults_by_kind(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for t in self._terminals.values():
            for name, n in t.plan.faults_by_kind().items():
                out[SIM_KINDS[sim.FaultKind(name)].value] += n
        for kind, n in self._own.items():
            out[kind.value] += n
        for kind, field_name in _FLAGS.items():
            pending = sum(1 for t in self._terminals.values() if getattr(t.faults, field_name))
            out[kind.value] += self._armed[kind] - pending
        return {k: n for k, n in sorted(out.items()) if n}

    # --- the fault plan ----------------------------------------------------------------------

    def _script(self, terminal: str, *faults: sim.Fault) -> bool:
        plan = self._terminals[terminal].plan
        if plan.scripted + len(faults) > MAX_QUEUED:
            return False
        plan.script(*faults)
        return True

    def requote(self, terminal: str) -> bool:
        return self._script(terminal, sim.Fault(sim.FaultKind.REQUOTE))

    def price_changed(self, terminal: str) -> bool:
        return self._script(terminal, sim.Fault(sim.FaultKind.PRICE_CHANGED))

    def off_quotes(self, terminal: str) -> bool:
        return self._script(terminal, sim.Fault(sim.FaultKind.OFF_QUOTES))

    def context_busy(self, terminal: str) -> bool:
        return self._script(terminal, sim.Fault(sim.FaultKind.CONTEXT_BUSY))

    def too_many_requests(self, terminal: str) -> bool:
        return self._script(terminal, sim.Fault(sim.FaultKind.TOO_MANY_REQUESTS))

    def no_connection(self, terminal: str, duration_s: float) -> bool:
        ms = max(1, int(duration_s * 1000))
        return self._script(terminal, sim.Fault(sim.FaultKind.NO_CONNECTION, duration_ms=ms))

    def market_closed(self, terminal: str, duration_s: float) -> bool:
        """The next market or pending order's symbol closes on the trade server (for every
        account there) for ``duration_s`` of server time, as a session table would."""
        ms = max(1, int(duration_s * 1000))
        return self._script(terminal, sim.Fault(sim.FaultKind.MARKET_CLOSED, duration_ms=ms))

    def slow_responses(self, terminal: str, duration_s: float) -> bool:
        """The next trades (one per 300 ms of ``duration_s``, at most 4) answer late, within
        the bridge's timeout; executed."""
        rng = self._rngs[terminal]
        lo, hi = self._slow_delay_ms
        n = max(1, min(4, round(duration_s / 0.3)))
        faults = [
            sim.Fault(sim.FaultKind.SLOW, delay_ms=int(rng.uniform(lo, hi))) for _ in range(n)
        ]
        return self._script(terminal, *faults)

    def timeout_executed(self, terminal: str) -> bool:
        """The next trade executes at once; its answer comes after the bridge's timeout."""
        fault = sim.Fault(sim.FaultKind.LATE_ANSWER, delay_ms=self._timeout_delay_ms)
        return self._script(terminal, fault)

    def timeout_not_executed(self, terminal: str) -> bool:
        """The next trade hangs unexecuted and is never answered."""
        return self._script(terminal, sim.Fault(sim.FaultKind.HANG))

    def drop_before_execution(self, terminal: str) -> bool:
        return self._script(terminal, sim.Fault(sim.FaultKind.DROP_BEFORE))

    def drop_after_execution(self, terminal: str) -> bool:
        return self._script(terminal, sim.Fault(sim.FaultKind.DROP_AFTER))

    def answer_lost(self, terminal: str) -> bool:
        return self._script(terminal, sim.Fault(sim.FaultKind.ANSWER_LOST))

    def partial_fill(self, terminal: str) -> bool:
        """The next MT5 market order finds liquidity for part of its volume (MT4 has no
        partial fills of market orders: False there)."""
        if self._terminals[terminal].server.platform != Platform.MT5:
            return False
        ratio = round(self._rngs[terminal].uniform(0.2, 0.8), 3)
        return self._script(terminal, sim.Fault(sim.FaultKind.PARTIAL_FILL, ratio=ratio))

    # --- the terminal's own faults -----------------------------------------------------------

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

    def _apply_terminal(self, terminal: str) -> None:
        t = self._terminals[terminal]
        t.faults.frozen = self._active("frozen", terminal)
        t.faults.reject_trades_after = 0 if self._active("disabled", terminal) else None
        t.faults.algo_trading_off = self._active("algo_off", terminal)

    def trade_disabled(self, terminal: str, duration_s: float) -> bool:
        self._own[FaultKind.TRADE_DISABLED] += 1
        return self._open("disabled", terminal, duration_s, lambda: self._apply_terminal(terminal))

    def algo_trading_off(self, terminal: str, duration_s: float) -> bool:
        """The terminal's own Algo Trading button off for a while (10027 / 4109): the
        bridge retries through another terminal of the account, where there is one."""
        self._own[FaultKind.ALGO_TRADING_OFF] += 1
        return self._open("algo_off", terminal, duration_s, lambda: self._apply_terminal(terminal))

    def terminal_frozen(self, terminal: str, duration_s: float) -> bool:
        self._own[FaultKind.TERMINAL_FROZEN] += 1
        return self._open("frozen", terminal, duration_s, lambda: self._apply_terminal(terminal))

    def _arm(self, terminal: str, kind: FaultKind) -> bool:
        faults = self._terminals[terminal].faults
        if getattr(faults, _FLAGS[kind]):
            return False  # armed already: the next trade meets it once
        setattr(faults, _FLAGS[kind], True)
        self._armed[kind] += 1
        return True

    def ea_success_as_error(self, terminal: str) -> bool:
        return self._arm(terminal, FaultKind.EA_SUCCESS_AS_ERROR)

    def ea_failure_as_success(self, terminal: str) -> bool:
        return self._arm(terminal, FaultKind.EA_FAILURE_AS_SUCCESS)

    # --- restarts ----------------------------------------------------------------------------

    def terminal_restart(self, terminal: str, down_s: float) -> bool:
        """The terminal's process (sometimes its machine) goes down now and comes back after
        ``down_s``. A terminal already down is left alone (False)."""
        t = self._terminals[terminal]
        if t.faults.stay_down or terminal in self._restarts:
            return False
        rng = self._rngs[terminal]
        reboot = rng.random() < 0.3
        change = self._while_down(terminal, rng.random(), rng.random(), rng.randrange(1 << 30))
        task = asyncio.get_running_loop().create_task(
            self._restart(terminal, down_s, change, reboot), name=f"chaos:restart:{terminal}"
        )
        self._restarts[terminal] = task
        task.add_done_callback(lambda _: self._restarts.pop(terminal, None))
        return True

    async def _restart(
        self, terminal: str, down_s: float, change: Callable[[TradeServer], None], reboot: bool
    ) -> None:
        t = self._terminals[terminal]
        await t.restart(down_s, while_down=change, reboot=reboot)
        # Back (stay_down is off); its run loop dials within 10 ms, after this returns.
        t.faults.stay_down = True
        self._return(terminal)

    def _while_down(
        self, terminal: str, u_sl: float, u_manual: float, pick: int
    ) -> Callable[[TradeServer], None]:
        login = self._terminals[terminal].config.login

        def change(server: TradeServer) -> None:
            if u_sl < 0.5:
                self._run_through_sl(server, login, pick)
            if u_manual < 0.5:
                symbol = ("EURUSD", "GBPUSD", "USDJPY")[pick % 3]
                side = OrderType.BUY if pick % 2 else OrderType.SELL
                volume = (pick % 10 + 1) / 100
                with contextlib.suppress(TradeError):
                    done = server.manual_market_order(login, symbol, side, volume)
                    if isinstance(done, m.TradeResult) and done.order:
                        self.while_down_changes["manual"] += 1

        return change

    def _run_through_sl(self, server: TradeServer, login: int, pick: int) -> None:
        """Move one position's symbol through its SL: the server closes it (and whatever
        else that price reaches) while the terminal is away."""
        with_sl = [p for p in server.positions(login) if p.sl > 0]
        if not with_sl:
            return
        p = with_sl[pick % len(with_sl)]
        spec = server.symbols[p.symbol]
        bid, ask, _ = server.feed.quote(p.symbol)
        spread = ask - bid
        if p.type == 0:  # a buy closes at the bid
            new_bid = p.sl - 3 * spec.point
            server.set_quote(
                p.symbol, round(new_bid, spec.digits), round(new_bid + spread, spec.digits)
            )
        else:
            new_ask = p.sl + 3 * spec.point
            server.set_quote(
                p.symbol, round(new_ask - spread, spec.digits), round(new_ask, spec.digits)
            )
        if all(q.ticket != p.ticket for q in server.positions(login)):
            self.while_down_changes["sl_hit"] += 1

    def _return(self, terminal: str) -> None:
        t = self._terminals[terminal]
        if not t.faults.stay_down:
            return
        before = t.connection
        t.faults.stay_down = False
        if self._on_return is not None:
            self._on_return(terminal, before)

    # --- settle ------------------------------------------------------------------------------

    def clear(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._windows.clear()
        for task in list(self._restarts.values()):
            task.cancel()
        self._restarts.clear()
        for kind, field_name in _FLAGS.items():
            pending = sum(1 for t in self._terminals.values() if getattr(t.faults, field_name))
            self._armed[kind] -= pending  # never met a trade: not injected
        for server in self._servers.values():
            now = server.clock.now_ms()
            for symbol in server.symbols:
                server.close_market(symbol, now)  # at or before now: open again
        for tid, t in self._terminals.items():
            t.plan.clear()
            down = t.faults.stay_down
            t.faults = TerminalFaults(stay_down=down)
            self._apply_terminal(tid)
            self._return(tid)
