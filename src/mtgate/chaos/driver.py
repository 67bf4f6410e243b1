"""Runs a chaos plan: the bridge and the simulated terminals over loopback, one worker per
account (each account's steps in plan order, the accounts concurrently), a bridge restart
as a barrier between segments, then a bounded settle phase and the ground truth.

Wall-clock timing varies between runs of one seed (real sockets, real time); the requests
issued and the faults armed, in each account's order, do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mtgate.chaos import ops
from mtgate.chaos.faults import SimFaultInjector, inject
from mtgate.chaos.plan import ACCOUNTS, ChaosAccount, Fault, FaultKind, Op, Step
from mtgate.chaos.truth import Intent, Truth, Verdict, compare
from mtgate.chaos.world import (
    FRIENDLY,
    SETTINGS,
    START_MS,
    SYNC,
    Broker,
    account_id,
    build_bridge,
    build_world,
)
from mtgate.sessions.routing import Switch
from mtsim.clock import ServerClock

SETTLE_S = 60.0
"""At most this long for every order in doubt to be resolved after the faults stop."""
CONVERGE_S = 10.0
"""Then at most this long for the synced views to catch up with the servers."""


@dataclass(slots=True)
class RunFigures:
    steps: int = 0
    operations: int = 0
    skipped_operations: int = 0
    op_errors: list[str] = field(default_factory=list)
    faults_planned: dict[str, int] = field(default_factory=dict)
    faults_armed: dict[str, int] = field(default_factory=dict)
    """Faults the injector accepted (scripted, a window opened, a restart begun)."""
    faults_injected: dict[str, int] = field(default_factory=dict)
    """Faults that took effect, by kind: the simulator's own counters (each terminal's fault
    plan) and the injector's for the kinds the plan does not know; bridge restarts."""
    while_down: dict[str, int] = field(default_factory=dict)
    """What the trade servers did while a terminal was away (``sl_hit``, ``manual``)."""
    failovers: int = 0
    bridge_restarts: int = 0
    ready_after_return_ms: list[float] = field(default_factory=list)
    returns: list[tuple[str, float, str]] = field(default_factory=list)
    """(terminal, ms from its reconnect start to READY, "frozen" when the sample is left
    out because the terminal was hung meanwhile) of each return measured."""
    settle_s: float = 0.0
    wall_s: float = 0.0


class ChaosDriver:
    def __init__(
        self,
        plan: tuple[Step, ...],
        seed: int,
        db: Path,
        *,
        accounts: tuple[ChaosAccount, ...] = ACCOUNTS,
        on_step: Callable[[], None] | None = None,
        broker: Broker = FRIENDLY,
    ) -> None:
        self.plan = plan
        self.accounts = accounts
        self.clock = ServerClock(START_MS)
        """The bridge's clock."""
        self.server_clock = ServerClock(START_MS + broker.server_offset_h * 3_600_000)
        self.world = build_world(accounts, self.server_clock, seed, broker)
        self.db = db
        self.bridge = build_bridge(self.world, db, self.clock, accounts)
        self.figures = RunFigures()
        self.intents: dict[str, Intent] = {}
        self.placed: dict[int, list[str]] = {i: [] for i in range(len(accounts))}
        self._on_step = on_step
        self._port = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.last_truth: Truth | None = None
        self.injector = SimFaultInjector(
            self.world.terminals,
            self.world.servers,
            timeout_delay_ms=SETTINGS.request_timeout_s * 1000 + 400,
            seed=seed,
            on_return=self._returned,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> Verdict:
        t0 = time.perf_counter()
        await self._start_bridge()
        self.world.start(*self._address())
        prices = asyncio.get_running_loop().create_task(self._move_prices(), name="chaos:prices")
        try:
            await self.bridge.wait_ready(set(self.world.terminals), timeout_s=30)
            for segment, barrier in _segments(self.plan):
                await asyncio.gather(
                    *(self._worker(i, steps) for i, steps in segment.items() if steps)
                )
                if barrier is not None:
                    await self._restart_bridge(barrier)
            t_settle = time.perf_counter()
            verdict = await self._settle(prices)
            self.figures.settle_s = time.perf_counter() - t_settle
        finally:
            self._injected()
            prices.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(prices, *self._tasks, return_exceptions=True)
            await self.world.stop()
            await self.bridge.stop()
            for server in self.world.servers.values():
                server.close()
        self.figures.wall_s = time.perf_counter() - t0
        return verdict

    def _injected(self) -> None:
        f = self.figures
        f.faults_injected = self.injector.faults_by_kind()
        if f.bridge_restarts:
            f.faults_injected[FaultKind.BRIDGE_RESTART.value] = f.bridge_restarts
        f.while_down = dict(self.injector.while_down_changes)

    def _address(self) -> tuple[str, int]:
        assert self.bridge.address is not None
        return self.bridge.address

    async def _start_bridge(self) -> None:
        await self.bridge.start()
        self._port = self._address()[1]
        self.bridge.registry.switch_listeners.append(self._switched)

    def _switched(self, switch: Switch) -> None:
        if switch.reason == "failover":
            self.figures.failovers += 1

    async def _restart_bridge(self, fault: Fault) -> None:
        """Stop the bridge and build a new one on the same journal file and port: the
        terminals reconnect to it by themselves."""
        self._count(fault, True)
        await self.bridge.stop()
        self.bridge = build_bridge(self.world, self.db, self.clock, self.accounts, self._port)
        await self._start_bridge()
        self.figures.bridge_restarts += 1
        up = {tid for tid, t in self.world.terminals.items() if not t.faults.stay_down}
        with contextlib.suppress(TimeoutError):
            await self.bridge.wait_ready(up, timeout_s=15)

    async def _move_prices(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            for server in self.world.servers.values():
                server.step()

    # --- the accounts' workers ---------------------------------------------------------------

    async def _worker(self, index: int, steps: list[Step]) -> None:
        for step in steps:
            if isinstance(step, Fault):
                self._fault(step)
            else:
                if step.pause_ms:
                    await asyncio.sleep(step.pause_ms / 1000)
                await self._operate(step)
            self.figures.steps += 1
            if self._on_step is not None:
                self._on_step()

    def _fault(self, fault: Fault) -> None:
        assert fault.account is not None
        spec = self.accounts[fault.account]
        if fault.kind in (FaultKind.TERMINAL_RESTART, FaultKind.TERMINAL_FROZEN):
            terminal = spec.terminals[fault.target % len(spec.terminals)]
        else:
            active = self.bridge.registry.router.active(ops.key(spec))
            terminal = active or spec.terminals[0]
        self._count(fault, inject(self.injector, fault, terminal))

    def _count(self, fault: Fault, armed: bool) -> None:
        kind = fault.kind.value
        f = self.figures
        f.faults_planned[kind] = f.faults_planned.get(kind, 0) + 1
        f.faults_armed[kind] = f.faults_armed.get(kind, 0) + (1 if armed else 0)

    async def _operate(self, op: Op) -> None:
        spec = self.accounts[op.account]
        self.figures.operations += 1
        try:
            done = await ops.perform(self.bridge, self.world, spec, op, self.placed[op.account])
        except Exception as exc:  # recorded and reported: an API call must not raise here
            self.figures.op_errors.append(f"{op.client_order_id} {op.kind}: {exc!r}")
            if op.kind in ops.ORDER_OPS:
                self.intents[op.client_order_id] = Intent(
                    op.client_order_id, account_id(spec), None
                )
            return
        if done is None:
            self.figures.skipped_operations += 1
        elif done.intent is not None:
            self.intents[op.client_order_id] = done.intent

    # --- a killed terminal's return ----------------------------------------------------------

    def _returned(self, terminal: str, before: object) -> None:
        task = asyncio.get_running_loop().create_task(self._measure_return(terminal, before))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _measure_return(self, terminal: str, before: object) -> None:
        """From the terminal's first connection after its return (its reconnect start) to
        the bridge's ``ready_since_ns`` of that terminal's session. A terminal frozen
        meanwhile (a hang armed while it was away: it ignores the handshake until the bridge
        gives up) gives no sample: that time is the freeze's, not the return's."""
        t = self.world.terminals[terminal]
        limit = time.perf_counter_ns() + 20_000_000_000
        frozen = t.faults.frozen
        while t.connection is before and time.perf_counter_ns() < limit:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        start_ns = time.perf_counter_ns()
        while time.perf_counter_ns() < limit:
            frozen = frozen or t.faults.frozen
            try:
                session = self.bridge.registry.ready_session(terminal)
            except RuntimeError:  # the bridge is being restarted: the return is its, no sample
                return
            if session is not None and session.ready_since_ns >= start_ns - 2_000_000:
                self._sample(terminal, (session.ready_since_ns - start_ns) / 1e6, frozen)
                return
            if t.faults.stay_down:
                return  # killed again before it was back: no sample
            await asyncio.sleep(0.002)
        self._sample(terminal, (time.perf_counter_ns() - start_ns) / 1e6, frozen)

    def _sample(self, terminal: str, ms: float, frozen: bool) -> None:
        ms = max(0.0, ms)
        self.figures.returns.append((terminal, round(ms, 1), "frozen" if frozen else ""))
        if not frozen:
            self.figures.ready_after_return_ms.append(ms)

    # --- settle and ground truth -------------------------------------------------------------

    async def _settle(self, prices: asyncio.Task[None]) -> Verdict:
        """End every fault, wait (bounded) for the orders in doubt to be resolved, stop the
        prices, then let the synced views catch up (bounded) and judge."""
        self.injector.clear()
        with contextlib.suppress(TimeoutError):
            await self.bridge.wait_ready(set(self.world.terminals), timeout_s=20)
        deadline = time.perf_counter() + SETTLE_S
        while time.perf_counter() < deadline and await ops.in_doubt(self.bridge):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        prices.cancel()
        await asyncio.gather(prices, return_exceptions=True)
        await asyncio.sleep(3 * SYNC.interval_ms / 1000)
        deadline = time.perf_counter() + CONVERGE_S
        while True:
            self.last_truth = await self.truth()
            verdict = compare(self.last_truth)
            if verdict.clean or time.perf_counter() > deadline:
                return verdict
            await asyncio.sleep(SYNC.interval_ms / 1000)

    async def truth(self) -> Truth:
        return await ops.gather_truth(self.bridge, self.world, self.accounts, self.intents)


def _segments(plan: tuple[Step, ...]) -> list[tuple[dict[int, list[Step]], Fault | None]]:
    """The plan cut at each bridge restart; each piece's steps grouped by account."""
    out: list[tuple[dict[int, list[Step]], Fault | None]] = []
    current: dict[int, list[Step]] = {}
    for step in plan:
        if isinstance(step, Fault) and step.account is None:
            out.append((current, step))
            current = {}
        else:
            current.setdefault(step.account if step.account is not None else 0, []).append(step)
    out.append((current, None))
    return out


async def run_chaos(
    plan: tuple[Step, ...],
    seed: int,
    *,
    on_step: Callable[[], None] | None = None,
    db: Path | None = None,
    broker: Broker = FRIENDLY,
) -> tuple[Verdict, RunFigures, Truth]:
    """Drive ``plan`` on a journal at ``db`` (default: a temporary file, removed after)."""
    with tempfile.TemporaryDirectory(prefix="mtgate-chaos-") as tmp:
        driver = ChaosDriver(
            plan, seed, db or Path(tmp) / "journal.db", on_step=on_step, broker=broker
        )
        verdict = await driver.run()
        assert driver.last_truth is not None
        return verdict, driver.figures, driver.last_truth
