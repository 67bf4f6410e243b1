"""`mtgate soak`: open-loop load on the bridge at its defaults, as an engine would put it.

Orders arrive at Poisson times at ``rate`` per second for ``seconds``, whatever the bridge is
doing (a closed loop, as in `mtgate bench`, waits for each answer and so slows down exactly when
the bridge does, hiding what a queue does). Each operation's latency runs from its *scheduled*
time to its answer, so a late start counts against the bridge.

The load: ``terminals`` simulated terminals, one account each, cycling MT4 hedging, MT5 hedging
and MT5 netting, every one syncing at 1 s with ``positions`` standing positions (a netting
account: one per symbol). 90 % market orders (on a hedging account, once it holds a few of
the soak's own positions, a close of the oldest, so the count stays level), 5 % SL/TP changes
and 5 % partial closes of standing positions. The bridge is built from a configuration file's
defaults (``Bridge.from_config``: journal and sync store on one SQLite file, the outbox on),
with the runtime settings of ``mtgate serve`` (mtgate.runtime).

Measured: latency by operation from scheduled time, event-loop lag, garbage-collector pauses,
RSS each second, the bridge's CPU, errors by kind, sessions closed, and at the end the ground
truth (mtgate.chaos.truth): every intent executed at most once, the journal equal to the
trade servers, the synced positions equal to the servers' positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import tempfile
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from mtgate import runtime
from mtgate.bench import stores
from mtgate.bench.soakproc import ServerTruth, SoakPlan, SoakTerminal
from mtgate.bench.soakproc import main as sim_main
from mtgate.bridge import Bridge
from mtgate.chaos.ops import in_doubt, journal_orders
from mtgate.chaos.truth import Intent, PositionFacts, Truth, compare
from mtgate.config import Config
from mtgate.domain.orders import OrderStatus
from mtgate.execution.requests import OrderError, OrderResult
from mtgate.positions.requests import PositionResult
from mtgate.protocol.auth import new_key

SERVERS = {"mt4": "Soak-MT4", "mt5": "Soak-MT5"}
KINDS = ("mt4", "mt5", "mt5-netting")
"""The account types the terminals cycle through."""
ORDER_SYMBOL = "EURUSD"
OWN_POSITIONS_KEPT = 4
"""A hedging account's market order closes the soak's oldest position once it holds more."""
SETTLE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class SoakOptions:
    rate: float = 1000.0
    seconds: float = 60.0
    terminals: int = 20
    positions: int = 50
    delay_ms: tuple[float, float] = (0.0, 0.0)
    seed: int = 1
    sync_interval_ms: int = 1000
    mt5_pipeline: bool = False
    """The MT5 terminals offer ``pipeline``: up to 4 trades at once each (docs/protocol.md
    §4.3); MT4 terminals run one at a time either way."""
    store: str = stores.DEFAULT
    """``sqlite`` (a temporary file) or a database URL: mtgate.bench.stores."""

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 100_000:
            raise ValueError(f"rate={self.rate}: expected 0 < rate <= 100000 per second")
        if not 0 < self.seconds <= 86_400:
            raise ValueError(f"seconds={self.seconds}: expected 0 < seconds <= 86400")
        if not 1 <= self.terminals <= 1000:
            raise ValueError(f"terminals={self.terminals}: expected 1..1000")
        if not 0 <= self.positions <= 1000:
            raise ValueError(f"positions={self.positions}: expected 0..1000")
        stores.kind_of(self.store)  # StoreChoiceError (a ValueError) names what is wrong
        lo, hi = self.delay_ms
        if not 0 <= lo <= hi <= 60_000:
            raise ValueError(f"delay_ms={lo},{hi}: expected 0 <= lo <= hi <= 60000")


@dataclass(slots=True)
class _Account:
    account: str
    netting: bool
    standing: list[int] = field(default_factory=list)
    """Tickets of the standing positions (an MT4 partial close moves one to a new ticket)."""
    busy: set[int] = field(default_factory=set)
    own: deque[int] = field(default_factory=deque)
    """The soak's own open positions, oldest first (hedging accounts)."""
    side: int = 0
    changes: dict[int, int] = field(default_factory=dict)
    """SL/TP changes made to each standing position so far."""


_STATUSES = list(OrderStatus)


@dataclass(slots=True)
class _Tally:
    """What the load measured, kept compact (arrays, counts): the soak's own memory must not
    show up as the bridge's growth in the RSS series."""

    operations: int
    seconds: float
    latencies: dict[str, array[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    unknown: int = 0
    answered: bytearray = field(default_factory=bytearray)
    """Per operation: 0 (no order, or no answer), else 1 + the answered status's index."""
    done: int = 0
    slow_by_second: list[int] = field(default_factory=list)
    """Operations over 10 ms, by the second of the load they were due in."""
    accepted: array[float] = field(default_factory=lambda: array("d"))
    """Latencies of the operations the bridge carried out (filled, or the change done)."""
    refused: array[float] = field(default_factory=lambda: array("d"))
    """Latencies of those refused as ``terminal_busy`` (admission control)."""

    def __post_init__(self) -> None:
        self.answered = bytearray(self.operations)
        self.slow_by_second = [0] * (int(self.seconds) + 1)

    def took(self, kind: str, ms: float, second: float) -> None:
        if kind not in self.latencies:
            self.latencies[kind] = array("d")
        self.latencies[kind].append(ms)
        if ms > 10:
            self.slow_by_second[min(len(self.slow_by_second) - 1, max(0, int(second)))] += 1


def percentiles(samples: Iterable[float]) -> dict[str, float]:
    s = sorted(samples)
    if not s:
        return {"count": 0, "p50": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0}

    def pick(q: float) -> float:
        return round(s[min(len(s) - 1, int(q * len(s)))], 3)

    return {
        "count": len(s),
        "p50": pick(0.5),
        "p99": pick(0.99),
        "p999": pick(0.999),
        "max": round(s[-1], 3),
    }


def schedule(opts: SoakOptions) -> list[tuple[float, int, str]]:
    """(seconds from the start, account index, operation) of every arrival."""
    rng = random.Random(opts.seed)
    out: list[tuple[float, int, str]] = []
    t = rng.expovariate(opts.rate)
    while t < opts.seconds:
        r = rng.random()
        kind = "market" if r < 0.9 else ("modify" if r < 0.95 else "partial_close")
        out.append((t, rng.randrange(opts.terminals), kind))
        t += rng.expovariate(opts.rate)
    return out


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None  # not Linux: no RSS series


def _config(url: str, terminals: list[SoakTerminal], sync_interval_ms: int) -> Config:
    return msgspec.convert(
        {
            "bridge": {"port": 0},
            "store": {"url": url},
            "sync": {"interval_ms": sync_interval_ms},
            "terminals": [
                {"id": t.terminal_id, "key": t.key_hex, "account": f"{t.login}@{t.server}"}
                for t in terminals
            ],
        },
        Config,
    )


def _why(error: OrderError | None) -> str:
    if error is None:
        return "-"
    return str(error.name or error.code or error.rule or error.field or error.source)


def _outcome(error: OrderError | None) -> str:
    return "busy" if error is not None and error.rule == "terminal_busy" else "other"


class _Driver:
    def __init__(self, bridge: Bridge, accounts: list[_Account], tally: _Tally) -> None:
        self.bridge = bridge
        self.accounts = accounts
        self.tally = tally
        self.t0 = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, i: int, due: float, account: int, kind: str) -> None:
        task = asyncio.get_running_loop().create_task(
            self._one(i, due, self.accounts[account], kind)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float) -> int:
        """Wait for the operations in flight; returns how many did not end in time."""
        if not self._tasks:
            return 0
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        return len(pending)

    async def _one(self, i: int, due: float, a: _Account, kind: str) -> None:
        tally = self.tally
        label, outcome = kind, "other"
        try:
            if kind == "market":
                label, outcome = await self._market(i, a)
            elif kind == "modify":
                label, outcome = await self._modify(i, a)
            else:
                label, outcome = await self._partial(i, a)
        except Exception as exc:  # counted, never fatal: the soak goes on
            tally.errors[f"{kind}:exception:{type(exc).__name__}"] += 1
        ms = (time.perf_counter() - due) * 1000
        tally.took(label, ms, due - self.t0)
        if outcome == "accepted":
            tally.accepted.append(ms)
        elif outcome == "busy":
            tally.refused.append(ms)
        tally.done += 1

    def _order(self, kind: str, i: int, a: _Account, result: OrderResult) -> str:
        """Tally an order's answer; ``accepted`` (filled), ``busy`` (refused by admission)
        or ``other``."""
        tally = self.tally
        tally.answered[i] = 1 + _STATUSES.index(result.status)
        if result.status == OrderStatus.UNKNOWN:
            tally.unknown += 1
        if result.status == OrderStatus.FILLED:
            return "accepted"
        tally.errors[f"{kind}:{result.status.value}:{_why(result.error)}"] += 1
        return _outcome(result.error)

    async def _market(self, i: int, a: _Account) -> tuple[str, str]:
        cid = f"soak-{i}"
        if not a.netting and len(a.own) > OWN_POSITIONS_KEPT:
            ticket = a.own.popleft()
            result = await self.bridge.close_position(
                account=a.account, ticket=ticket, client_order_id=cid
            )
            return "close", self._order("close", i, a, result)
        a.side ^= 1
        result = await self.bridge.place_market_order(
            account=a.account,
            symbol=ORDER_SYMBOL,
            side="buy" if a.side else "sell",
            volume=0.01,
            client_order_id=cid,
        )
        outcome = self._order("market", i, a, result)
        if not a.netting and result.status == OrderStatus.FILLED:
            position = result.position_id or result.ticket
            if position:
                a.own.append(position)
        return "market", outcome

    def _pick(self, a: _Account, i: int) -> int | None:
        free = [t for t in a.standing if t not in a.busy]
        return free[i % len(free)] if free else None

    async def _modify(self, i: int, a: _Account) -> tuple[str, str]:
        ticket = self._pick(a, i)
        if ticket is None:
            self.tally.errors["modify:no_position"] += 1
            return "modify", "other"
        facts = {p.ticket: p for p in self.bridge.synced_positions(a.account)}
        p = facts.get(ticket)
        if p is None:
            self.tally.errors["modify:not_synced"] += 1
            return "modify", "other"
        digits = 3 if p.symbol == "USDJPY" else (2 if p.symbol == "XAUUSD" else 5)
        n = a.changes[ticket] = a.changes.get(ticket, 0) + 1
        k = 0.9 + (n % 90) / 1000  # a new SL and TP each time: never a no-op change
        sl, tp = (p.price_open * k, p.price_open * (2 - k))
        if not p.buy:
            sl, tp = tp, sl
        a.busy.add(ticket)
        try:
            result: PositionResult = await self.bridge.modify_position(
                account=a.account, ticket=ticket, sl=round(sl, digits), tp=round(tp, digits)
            )
        finally:
            a.busy.discard(ticket)
        if result.status == "done":
            return "modify", "accepted"
        self.tally.errors[f"modify:{result.status}:{_why(result.error)}"] += 1
        if result.status == "unknown":
            self.tally.unknown += 1
        return "modify", _outcome(result.error)

    async def _partial(self, i: int, a: _Account) -> tuple[str, str]:
        ticket = self._pick(a, i)
        if ticket is None:
            self.tally.errors["partial_close:no_position"] += 1
            return "partial_close", "other"
        cid = f"soak-{i}"
        a.busy.add(ticket)
        try:
            result = await self.bridge.close_position(
                account=a.account, ticket=ticket, volume=0.01, client_order_id=cid
            )
        finally:
            a.busy.discard(ticket)
        outcome = self._order("partial_close", i, a, result)
        if result.remainder_ticket and result.remainder_ticket != ticket:
            # MT4: what is left is a new ticket, with the old one's SL and TP.
            a.standing[a.standing.index(ticket)] = result.remainder_ticket
            a.changes[result.remainder_ticket] = a.changes.pop(ticket, 0)
        return "partial_close", outcome


async def _sample(
    stop: asyncio.Event,
    rss: list[tuple[float, int]],
    t0: float,
    progress: Callable[[float], None] | None,
) -> None:
    while not stop.is_set():
        now = time.perf_counter()
        value = _rss_bytes()
        if value is not None:
            rss.append((round(now - t0, 1), value))
        if progress is not None:
            progress(now - t0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await stop.wait()


def _terminals(opts: SoakOptions) -> list[SoakTerminal]:
    out = []
    for i in range(opts.terminals):
        kind = KINDS[i % len(KINDS)]
        platform = kind[:3]
        out.append(
            SoakTerminal(
                terminal_id=f"soak-{i + 1}",
                key_hex=new_key().reveal().hex(),
                login=7001 + i,
                platform=platform,
                server=SERVERS[platform],
                netting=kind.endswith("netting"),
            )
        )
    return out


async def _standing(bridge: Bridge, accounts: list[_Account], opts: SoakOptions) -> None:
    """Wait until every account's standing positions are synced; note their tickets."""
    deadline = time.perf_counter() + 120
    while True:
        missing = 0
        for a in accounts:
            tickets = [p.ticket for p in bridge.synced_positions(a.account) if p.open]
            want = 4 if a.netting else opts.positions
            if len(tickets) >= want:
                a.standing = sorted(tickets)
            else:
                missing += 1
        if not missing:
            return
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{missing} account(s) not synced within 120 s")
        await asyncio.sleep(0.1)


async def run_soak(
    opts: SoakOptions, progress: Callable[[float], None] | None = None
) -> dict[str, Any]:
    terminals = _terminals(opts)
    plan_ops = schedule(opts)
    with (
        tempfile.TemporaryDirectory(prefix="mtgate-soak-") as tmp,
        stores.run_store(opts.store, Path(tmp), "soak") as url,
    ):
        cfg = _config(url, terminals, opts.sync_interval_ms)
        bridge = Bridge.from_config(cfg)
        host, port = await bridge.start()
        plan = SoakPlan(
            host,
            port,
            terminals,
            opts.positions,
            opts.delay_ms,
            opts.seed,
            mt5_pipeline=opts.mt5_pipeline,
        )
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=sim_main, args=(plan, child), daemon=True)
        proc.start()
        loop = asyncio.get_running_loop()
        try:
            assert await loop.run_in_executor(None, parent.recv) == "started"
            await bridge.wait_ready({t.terminal_id for t in terminals}, timeout_s=60)
            accounts = [_Account(f"{t.login}@{t.server}", t.netting) for t in terminals]
            await _standing(bridge, accounts, opts)
            parent.send("load")
            figures = await _run(bridge, accounts, plan_ops, opts, progress)
            parent.send("truth")
            server: ServerTruth = await loop.run_in_executor(None, parent.recv)
            figures["ground_truth"] = await _verdict(bridge, server, figures.pop("_intents"))
            figures["simulator"] = {
                "loop_lag_ms": percentiles(server.loop_lag_ms),
                "gc_max_pause_ms": round(server.gc_max_pause_ms, 3),
            }
            parent.send("stop")
            await loop.run_in_executor(None, parent.recv)
        finally:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
            await bridge.stop()
    return figures


async def _run(
    bridge: Bridge,
    accounts: list[_Account],
    plan_ops: list[tuple[float, int, str]],
    opts: SoakOptions,
    progress: Callable[[float], None] | None,
) -> dict[str, Any]:
    cfg_queue_ms = bridge.registry.settings.trade_queue_wait_s * 1000
    tally = _Tally(len(plan_ops), opts.seconds)
    driver = _Driver(bridge, accounts, tally)
    closes0 = sum(m.closes.total for m in bridge.registry.meters.values())
    runtime.settle_heap()
    lag = runtime.LoopLag(keep=True)
    rss: list[tuple[float, int]] = []
    stop_sampling = asyncio.Event()
    with runtime.GcPauses(keep=True) as pauses:
        lag.start()
        t0 = driver.t0 = time.perf_counter() + 0.05
        sampler = asyncio.get_running_loop().create_task(_sample(stop_sampling, rss, t0, progress))
        cpu0 = time.process_time()
        for i, (t, account, kind) in enumerate(plan_ops):
            due = t0 + t
            wait = due - time.perf_counter()
            if wait > 0.0005:
                await asyncio.sleep(wait)
            driver.spawn(i, due, account, kind)
        unfinished = await driver.drain(SETTLE_TIMEOUT_S)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        lag.stop()
        stop_sampling.set()
        await sampler
    settle_deadline = time.perf_counter() + SETTLE_TIMEOUT_S
    while time.perf_counter() < settle_deadline:  # orders in doubt resolved, as far as can be
        if not await in_doubt(bridge):
            break
        await asyncio.sleep(0.2)
    # Every terminal back (a session the load closed reconnects), then the last trades'
    # snapshots: the synced views are judged against the servers only once they can agree.
    await bridge.wait_ready(set(bridge.registry.grants()), timeout_s=SETTLE_TIMEOUT_S)
    await asyncio.sleep(2.5 * opts.sync_interval_ms / 1000)
    every = [x for xs in tally.latencies.values() for x in xs]
    closes = sum(m.closes.total for m in bridge.registry.meters.values()) - closes0
    return {
        "rate_per_s": opts.rate,
        "seconds": opts.seconds,
        "terminals": opts.terminals,
        "positions": opts.positions,
        "delay_ms": list(opts.delay_ms),
        "mt5_pipeline": opts.mt5_pipeline,
        "store": stores.kind_of(opts.store),
        "operations": len(plan_ops),
        "completed": tally.done,
        "unfinished": unfinished,
        "latency_ms": percentiles(every),
        "latency_by_operation_ms": {k: percentiles(v) for k, v in sorted(tally.latencies.items())},
        "latency_accepted_ms": percentiles(tally.accepted),
        "latency_refused_busy_ms": percentiles(tally.refused),
        "queue_bound_ms": cfg_queue_ms,
        "loop_lag_ms": percentiles(lag.histogram.samples or ()),
        "gc_pauses": runtime.pause_figures(pauses),
        "rss_mb": [(t, round(v / 2**20, 1)) for t, v in rss],
        "rss_last_40s_spread_percent": _spread(rss, opts.seconds),
        "bridge_cpu_percent": round(cpu / wall * 100, 1),
        "bridge_cpu_us_per_operation": round(cpu / max(1, tally.done) * 1e6, 1),
        "slow_over_10ms_by_second": tally.slow_by_second,
        "errors": sum(tally.errors.values()),
        "errors_by_kind": dict(tally.errors.most_common()),
        "unknown": tally.unknown,
        "sessions_closed": closes,
        "cpu_count": os.cpu_count(),
        "_intents": _intents(tally, plan_ops, accounts),
    }


def _intents(
    tally: _Tally, plan_ops: list[tuple[float, int, str]], accounts: list[_Account]
) -> dict[str, Intent]:
    """The orders asked for (client order id ``soak-<i>``) and the status each call answered."""
    return {
        f"soak-{i}": Intent(f"soak-{i}", accounts[plan_ops[i][1]].account, _STATUSES[code - 1])
        for i, code in enumerate(tally.answered)
        if code
    }


def _spread(rss: list[tuple[float, int]], seconds: float) -> float | None:
    """(max - min) / min of RSS over the last 40 s of the load, in percent."""
    tail = [v for t, v in rss if t >= seconds - 40]
    if len(tail) < 2:
        return None
    return round((max(tail) - min(tail)) / min(tail) * 100, 1)


async def _verdict(
    bridge: Bridge, server: ServerTruth, intents: dict[str, Intent]
) -> dict[str, Any]:
    synced = {
        account: [
            PositionFacts(p.ticket, p.volume, p.sl, p.tp)
            for p in bridge.synced_positions(account)
            if p.open
        ]
        for account in server.positions
    }
    truth = Truth(
        intents=list(intents.values()),
        journal=await journal_orders(bridge),
        executions=server.executions,
        server_pending=server.pending,
        server_positions=server.positions,
        synced_positions=synced,
    )
    verdict = compare(truth)
    counters = Counter(f.counter for f in verdict.findings)
    return {
        "exact": verdict.clean,
        "findings": dict(counters),
        "first_findings": [
            f"{f.counter} {f.account} {f.subject}: journal {f.journal}, server {f.server}"
            for f in verdict.findings[:10]
        ],
        "intents": len(intents),
        "executions": len(server.executions),
    }
