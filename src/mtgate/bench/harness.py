"""`mtgate bench`: the bridge's round trip beside the loopback floor, measured in one run.

(a) floor: a frame the size of a market-order frame echoed over loopback by a plain asyncio
    server in the simulator's process;
(b) bridge: market orders through the in-process API (pre-validation, durable journal write,
    encode, socket, simulated terminal and trade server at zero broker delay, answer, journal)
    to T terminals at concurrency C.
Latency is measured per order from the API call to its result. Ratios, not bare times, are
the figures to compare across machines.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from mtgate import runtime
from mtgate.bench import stores
from mtgate.bench.httpdrive import Drive
from mtgate.bench.simproc import SimPlan
from mtgate.bench.simproc import main as sim_main
from mtgate.bridge import Bridge
from mtgate.config import EventsSection
from mtgate.domain.orders import OrderStatus
from mtgate.execution.requests import MarketOrderRequest, Side
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.protocol.auth import new_key
from mtgate.sessions.session import AccountKey, grants_for
from mtgate.store.journal import open_journal
from mtgate.sync.synchronizer import SyncSettings

SERVER = "Sim-Bench"
SYNC_SERVER = "Sim-Sync"


@dataclass(frozen=True, slots=True)
class BenchOptions:
    orders: int = 2000
    terminals: int = 4
    concurrency: int = 8
    warmup: int = 300
    floor_samples: int = 2000
    broker_delay_ms: tuple[float, float] = (0.0, 0.0)
    journal_sync: str = "normal"
    store: str = "sqlite"
    """``sqlite`` (a temporary file) or a database URL: mtgate.bench.stores."""
    platform: str = "mt5"
    seed: int = 1
    sync_terminals: int = 100
    sync_positions: int = 200
    sync_interval_ms: int = 1000
    sync_seconds: float = 10.0
    """How long the bridge's CPU is measured with only the sync load running."""
    http: bool = False
    mt5_pipeline: bool = True
    """The MT5 terminals offer ``pipeline`` (up to 4 trades at once, as an MQL5 EA can with
    ``OrderSendAsync``); off: one trade at a time, as on MT4."""
    events: bool = False
    """Write the outbox (and run its relay, with no sink), as ``mtgate serve`` does."""
    """Also place ``orders`` through the HTTP API, from a process of their own."""


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    s = sorted(samples_ms)
    if not s:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}

    def pick(q: float) -> float:
        return round(s[min(len(s) - 1, int(q * len(s)))], 4)

    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": round(s[-1], 4)}


def _order_frame_size() -> int:
    sample = m.MarketOrder(
        id=123456,
        symbol="EURUSD",
        order_type=0,
        volume=0.01,
        magic=4242,
        comment="mg:0MKZ3F1Q2A9X7B4C",
        deviation=10,
    )
    return len(codec.encode(sample))


async def measure_floor(
    port: int, samples: int, frame_size: int, concurrency: int = 1
) -> list[float]:
    """Round trips of one frame through the echo server, ``concurrency`` connections at once."""
    body = b"x" * (frame_size - 4)
    frame = struct.pack(">I", len(body)) + body
    per_conn = max(1, samples // concurrency)

    async def one_conn() -> list[float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        out = []
        for _ in range(per_conn):
            t0 = time.perf_counter_ns()
            writer.write(frame)
            await reader.readexactly(len(frame))
            out.append((time.perf_counter_ns() - t0) / 1e6)
        writer.close()
        return out

    runs = await asyncio.gather(*(one_conn() for _ in range(concurrency)))
    return [x for run in runs for x in run]


async def _drive(
    bridge: Bridge, accounts: list[str], n: int, concurrency: int
) -> tuple[list[float], int, float]:
    """``n`` market orders from ``concurrency`` workers; returns latencies, errors, wall time."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n))

    async def worker(w: int) -> None:
        nonlocal errors
        for i in counter:
            req = MarketOrderRequest(
                account=accounts[(i + w) % len(accounts)],
                symbol="EURUSD",
                side=Side.BUY if i % 2 == 0 else Side.SELL,
                volume=0.01,
                magic=4242,
            )
            t0 = time.perf_counter_ns()
            result = await bridge.place_market_order(req)
            latencies.append((time.perf_counter_ns() - t0) / 1e6)
            if result.status != OrderStatus.FILLED:
                errors += 1

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    _drive.cpu_s = time.process_time() - cpu0  # type: ignore[attr-defined]
    return latencies, errors, time.perf_counter() - t0


async def _sync_phase(
    bridge: Bridge,
    opts: BenchOptions,
    sync_keys: dict[str, Any],
    logins: dict[str, int],
    parent: Any,
) -> dict[str, Any]:
    """Start the sync load, wait until every account is synced, then measure the bridge's
    CPU over ``sync_seconds`` with nothing but the sync running."""
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    parent.send("sync")
    await loop.run_in_executor(None, parent.recv)
    await bridge.wait_ready(set(sync_keys), timeout_s=120)
    keys = [AccountKey(logins[tid], SYNC_SERVER) for tid in sync_keys]

    def synced() -> bool:
        views = bridge.sync.views
        return all(k in views and len(views[k].positions) == opts.sync_positions for k in keys)

    while not synced():
        if time.perf_counter() - t0 > 180:
            raise RuntimeError("the sync load did not come up within 180 s")
        await asyncio.sleep(0.1)
    await bridge.store.flush()  # the first snapshots' 20,000 new positions, written once
    await asyncio.sleep(opts.sync_interval_ms / 1000)
    snapshots0 = bridge.sync.snapshots
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(opts.sync_seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    snapshots = bridge.sync.snapshots - snapshots0
    return {
        "terminals": opts.sync_terminals,
        "positions_per_terminal": opts.sync_positions,
        "interval_ms": opts.sync_interval_ms,
        "measured_s": round(wall, 2),
        "snapshots_per_s": round(snapshots / wall, 1),
        "bridge_cpu_us_per_snapshot": round(cpu / snapshots * 1e6, 1) if snapshots else None,
        "setup_s": round(wall0 - t0, 1),
        "cpu_percent": round(cpu / wall * 100, 1),
    }


async def run_bench(opts: BenchOptions) -> dict[str, Any]:
    keys = {f"bench-{i + 1}": new_key() for i in range(opts.terminals)}
    sync_keys = {f"sync-{i + 1}": new_key() for i in range(opts.sync_terminals)}
    logins = {tid: 3001 + i for i, tid in enumerate(keys)}
    logins |= {tid: 5001 + i for i, tid in enumerate(sync_keys)}
    with (
        tempfile.TemporaryDirectory(prefix="mtgate-bench-") as tmp,
        stores.run_store(opts.store, Path(tmp), "bench") as url,
    ):
        journal = open_journal(url, synchronous=opts.journal_sync)
        bridge = Bridge(
            terminals=grants_for(
                [(tid, k, logins[tid], SERVER) for tid, k in keys.items()]
                + [(tid, k, logins[tid], SYNC_SERVER) for tid, k in sync_keys.items()]
            ),
            journal=journal,
            store_url=url,
            sync=SyncSettings(interval_ms=opts.sync_interval_ms),
            events=EventsSection() if opts.events else None,
        )
        host, port = await bridge.start()
        runtime.settle_heap()  # as mtgate serve does once started: no bench-only tuning
        pauses = runtime.GcPauses().install()
        plan = SimPlan(
            host,
            port,
            [
                (tid, k.reveal().hex(), logins[tid], opts.platform, SERVER)
                for tid, k in keys.items()
            ],
            opts.broker_delay_ms,
            opts.seed,
            sync_terminals=[(tid, k.reveal().hex(), logins[tid]) for tid, k in sync_keys.items()],
            sync_positions=opts.sync_positions,
            sync_server=SYNC_SERVER,
            mt5_pipeline=opts.mt5_pipeline,
        )
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=sim_main, args=(plan, child), daemon=True)
        proc.start()
        try:
            loop = asyncio.get_running_loop()
            _, echo_port = await loop.run_in_executor(None, parent.recv)
            await bridge.wait_ready(set(keys), timeout_s=30)
            accounts = [f"{logins[tid]}@{SERVER}" for tid in keys]
            frame_size = _order_frame_size()
            await measure_floor(echo_port, 200, frame_size)
            floor = await measure_floor(echo_port, opts.floor_samples, frame_size)
            floor_c = await measure_floor(
                echo_port, opts.floor_samples, frame_size, opts.concurrency
            )
            await _drive(bridge, accounts, opts.warmup, opts.concurrency)
            c1, _, _ = await _drive(bridge, accounts, min(opts.orders, 1000), 1)
            group0 = _group_commit(journal)
            latencies, errors, wall = await _drive(bridge, accounts, opts.orders, opts.concurrency)
            cpu_s: float = _drive.cpu_s  # type: ignore[attr-defined]
            group = _group_commit(journal, group0, wall)
            http: _HttpRun | None = None
            if opts.http:
                http = await _http_phase(bridge, accounts, opts, ctx)
                errors += http.drive.errors
            sync: dict[str, Any] | None = None
            with_sync: list[float] = []
            sync_errors = 0
            if opts.sync_terminals:
                sync = await _sync_phase(bridge, opts, sync_keys, logins, parent)
                with runtime.GcPauses() as sync_pauses:
                    with_sync, sync_errors, _ = await _drive(
                        bridge, accounts, opts.orders, opts.concurrency
                    )
                sync["stale_accounts"] = sum(1 for v in bridge.sync.views.values() if v.stale)
                sync["gc_max_pause_ms"] = round(sync_pauses.max_ms, 3)
            parent.send("stop")
            _, executed = await loop.run_in_executor(None, parent.recv)
        finally:
            pauses.remove()
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
            await bridge.stop()
    total_sent = opts.warmup + min(opts.orders, 1000) + opts.orders * (2 if sync else 1)
    if opts.http:
        total_sent += HTTP_WARMUP + min(opts.orders, 1000) + opts.orders
    lat = percentiles(latencies)
    flo = percentiles(floor)
    return {
        "orders": opts.orders,
        "terminals": opts.terminals,
        "concurrency": opts.concurrency,
        "latency_ms": lat,
        "floor_ms": {"p50": flo["p50"], "p99": flo["p99"]},
        "floor_concurrent_ms": percentiles(floor_c),
        "latency_concurrency_1_ms": percentiles(c1),
        "ratio_p50_to_floor": round(lat["p50"] / flo["p50"], 2) if flo["p50"] else None,
        "throughput_per_s": round(opts.orders / wall, 1),
        "bridge_cpu_us_per_order": round(cpu_s / opts.orders * 1e6, 1),
        "bridge_cpu_percent": round(cpu_s / wall * 100, 1),
        "errors": errors + sync_errors,
        "orders_sent_total": total_sent,
        "orders_executed_by_simulator": executed,
        "journal_sync": opts.journal_sync,
        "store": stores.kind_of(opts.store),
        "mt5_pipeline": opts.mt5_pipeline,
        "events": opts.events,
        "frame_bytes": _order_frame_size(),
        "mean_ms": round(statistics.fmean(latencies), 4) if latencies else 0.0,
        "cpu_count": os.cpu_count(),
        "gc_pauses": runtime.pause_figures(pauses),
        **({"journal_group_commit": group} if group else {}),
        **_sync_figures(sync, lat, with_sync),
        **_http_figures(http, lat, percentiles(c1)),
    }


HTTP_WARMUP = 200


def _group_commit(
    journal: object, since: dict[str, float] | None = None, wall_s: float = 0.0
) -> dict[str, float]:
    """The PostgreSQL journal's batches over the concurrent run: how many writes shared each
    commit, and how much of the run its writer spent in statements (empty on SQLite)."""
    batches = getattr(journal, "batches", None)
    if batches is None:
        return {}
    now = {
        "batches": float(batches),
        "items": float(getattr(journal, "items_written", 0)),
        "busy_s": float(getattr(journal, "busy_s", 0.0)),
    }
    if since is None:
        return now
    n = now["batches"] - since["batches"]
    busy = now["busy_s"] - since["busy_s"]
    return {
        "statements": n,
        "writes_per_statement": round((now["items"] - since["items"]) / n, 2) if n else 0.0,
        "statement_ms_mean": round(busy / n * 1000, 3) if n else 0.0,
        "writer_busy_percent": round(busy / wall_s * 100, 1) if wall_s else 0.0,
    }


class _HttpRun(NamedTuple):
    drive: Drive
    cpu_us_per_order: float
    """The bridge process's CPU over the concurrent HTTP run, per order (as
    ``bridge_cpu_us_per_order`` is over the concurrent in-process run)."""


async def _http_phase(
    bridge: Bridge, accounts: list[str], opts: BenchOptions, ctx: Any
) -> _HttpRun:
    """The same orders through ``mtgate serve``'s HTTP API (uvicorn in the bridge's loop, as
    serve runs it), sent over loopback TCP by another process."""
    from mtgate.api.server import ApiServer  # the HTTP stack loads only for --http
    from mtgate.bench.httpdrive import main as http_main
    from mtgate.config import ApiSection, ApiToken

    token = new_key().reveal().hex()
    section = ApiSection(port=0, tokens=[ApiToken(name="bench", scopes=["trade"], token=token)])
    server = ApiServer(bridge, section)
    host, port = await server.start()
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=http_main,
        args=(f"http://{host}:{port}", token, accounts, opts.orders, HTTP_WARMUP,
              opts.concurrency, child),
        daemon=True,
    )  # fmt: skip
    proc.start()
    loop = asyncio.get_running_loop()
    try:
        started = await loop.run_in_executor(None, parent.recv)
        assert started == "concurrent", started
        cpu0 = time.process_time()
        drive: Drive = await loop.run_in_executor(None, parent.recv)
        cpu_s = time.process_time() - cpu0
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
        await server.stop()
    return _HttpRun(drive, cpu_s / opts.orders * 1e6)


def _http_figures(
    http: _HttpRun | None, in_process: dict[str, float], serial: dict[str, float]
) -> dict[str, Any]:
    """The HTTP path beside the in-process one of the same run: at concurrency C (the
    headline, ``http_latency_ms``) and one order at a time."""
    if http is None or not http.drive.concurrent:
        return {}
    lat = percentiles(http.drive.concurrent)
    one = percentiles(http.drive.serial)

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 2) if b else None

    return {
        "http_latency_ms": {"p50": lat["p50"], "p90": lat["p90"], "p99": lat["p99"]},
        "http_latency_concurrency_1_ms": {"p50": one["p50"], "p90": one["p90"], "p99": one["p99"]},
        "http_overhead_ratio_p50": ratio(lat["p50"], in_process["p50"]),
        "http_overhead_ratio_concurrency_1_p50": ratio(one["p50"], serial["p50"]),
        "http_bridge_cpu_us_per_order": round(http.cpu_us_per_order, 1),
    }


def _sync_figures(
    sync: dict[str, Any] | None, without: dict[str, float], with_sync: list[float]
) -> dict[str, Any]:
    if sync is None:
        return {}
    lat = percentiles(with_sync)
    return {
        "sync_cpu_percent": sync.pop("cpu_percent"),
        "latency_with_sync_ms": lat,
        "latency_with_sync_delta_ms": {
            "p50": round(lat["p50"] - without["p50"], 4),
            "p99": round(lat["p99"] - without["p99"], 4),
        },
        "sync": sync,
    }
