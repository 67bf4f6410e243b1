"""`mtgate serve | config check | db upgrade | openapi | demo | sim | bench | chaos | rejections`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mtgate import logs
from mtgate.config import ConfigError, load, load_store

if TYPE_CHECKING:
    from mtgate.bench.soak import SoakOptions

app = typer.Typer(add_completion=False, no_args_is_help=True, help="MetaTrader 4/5 bridge.")


def _use_uvloop() -> None:
    from mtgate.runtime import use_uvloop

    use_uvloop()


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option(help="TOML configuration file")] = None,
) -> None:
    """Run the bridge: listen for terminals, and serve the HTTP API when the configuration
    has an ``[api]`` table, until interrupted."""
    from mtgate.api.server import ApiServer
    from mtgate.bridge import Bridge
    from mtgate.runtime import settle_heap

    try:
        cfg = load(config)
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    logs.configure(json=cfg.log.json, level=cfg.log.level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Bridge.from_config(cfg) as bridge:
            api = ApiServer(bridge, cfg.api) if cfg.api.enabled else None
            if api is not None:
                host, port = await api.start()
                scheme = "https" if cfg.api.tls_cert else "http"
                logs.get("mtgate.api").info("API listening", url=f"{scheme}://{host}:{port}")
            settle_heap()
            try:
                await stop.wait()
            finally:
                if api is not None:
                    await api.stop()  # first: no call starts while the bridge stops

    _use_uvloop()
    asyncio.run(main())


config_app = typer.Typer(no_args_is_help=True, help="Configuration files.")
db_app = typer.Typer(no_args_is_help=True, help="The journal's database.")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")


@config_app.command("check")
def config_check(
    path: Annotated[Path, typer.Argument(help="TOML configuration file")],
) -> None:
    """Validate a configuration file (keys, tokens, bindings) as ``serve`` would; exit 2
    with the key at fault."""
    from sqlalchemy import make_url

    try:
        cfg = load(path)
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    store = make_url(cfg.store.url).render_as_string(hide_password=True)
    api = f"{cfg.api.host}:{cfg.api.port}" if cfg.api.enabled else "off"
    typer.echo(
        f"{path}: ok: {len(cfg.terminals)} terminal(s), "
        f"{len(cfg.api.tokens)} API token(s), API {api}, store {store}"
    )


@db_app.command("upgrade")
def db_upgrade(
    config: Annotated[Path | None, typer.Option(help="TOML configuration file")] = None,
) -> None:
    """Bring the journal's database (``[store] url``) to the newest schema."""
    from sqlalchemy import make_url

    from mtgate.store.migrate import migrate

    try:
        store = load_store(config)
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    migrate(store.url)
    typer.echo(f"{make_url(store.url).render_as_string(hide_password=True)}: schema up to date")


@app.command()
def openapi(
    path: Annotated[Path | None, typer.Argument(help="where to write it (default: stdout)")] = None,
) -> None:
    """Write the HTTP API's OpenAPI document (docs/openapi.json is this)."""
    from mtgate.api.openapi import render

    text = render()
    if path is None:
        sys.stdout.write(text)
    else:
        path.write_text(text)


@app.command()
def demo(
    db: Annotated[
        Path | None, typer.Option(help="SQLite file to keep (default: a temporary one)")
    ] = None,
    verbose: Annotated[bool, typer.Option(help="log bridge internals")] = False,
) -> None:
    """Bridge + three simulated terminals (MT4, MT5 hedging, MT5 netting), one scripted session."""
    from mtgate.demo import run_demo

    logs.configure(level="INFO" if verbose else "ERROR")
    _use_uvloop()
    raise typer.Exit(asyncio.run(run_demo(db)))


@app.command()
def agent(
    bridge: Annotated[str, typer.Option(help="bridge address host:port")] = "127.0.0.1:7788",
    terminal_id: Annotated[
        str, typer.Option(help="this terminal's id in the bridge's config")
    ] = "",
    key_env: Annotated[
        str, typer.Option(help="variable holding the terminal key (hex)")
    ] = "MTGATE_TERMINAL_KEY",
    key_file: Annotated[
        Path | None, typer.Option(help="file holding the terminal key (hex)")
    ] = None,
    terminal_path: Annotated[
        str | None, typer.Option(help="terminal64.exe to start or attach to")
    ] = None,
    login: Annotated[
        int | None, typer.Option(help="account to log in (else the terminal's)")
    ] = None,
    server: Annotated[str | None, typer.Option(help="trade server of --login")] = None,
    poll_ms: Annotated[int, typer.Option(help="event poll period, ms")] = 100,
) -> None:
    """Run the MetaTrader5 agent beside one MT5 terminal (Windows; docs/terminals.md)."""
    from mtgate.agent.run import AgentOptions, AgentSetupError, load_package, run_agent

    logs.configure(level="INFO")
    if not terminal_id:
        typer.echo("error: --terminal-id is required", err=True)
        raise typer.Exit(2)
    opts = AgentOptions(bridge=bridge, terminal_id=terminal_id, key_env=key_env,
                        key_file=key_file, terminal_path=terminal_path, login=login,
                        server=server, poll_ms=poll_ms)  # fmt: skip
    try:
        raise typer.Exit(asyncio.run(run_agent(opts, load_package())))
    except AgentSetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def conformance(
    against: Annotated[str, typer.Option(help="sim, agent-fake, or terminal (a real one)")] = "sim",
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
    listen: Annotated[
        str, typer.Option(help="host:port the terminal dials (terminal)")
    ] = "127.0.0.1:7788",
    terminal_id: Annotated[str, typer.Option(help="the real terminal's id (terminal)")] = "",
    key_env: Annotated[
        str, typer.Option(help="variable holding its key, hex (terminal)")
    ] = "MTGATE_TERMINAL_KEY",
    account: Annotated[str, typer.Option(help="its account login@server (terminal)")] = "",
    symbol: Annotated[
        str, typer.Option(help="the symbol to trade at the minimum volume")
    ] = "EURUSD",
    demo_account: Annotated[
        bool, typer.Option("--demo-account", help="confirm the terminal is on a demo account")
    ] = False,
) -> None:
    """The scripted run that checks a terminal before it trades real money (docs/terminals.md):
    probes of the handshake and framing, then every operation through the bridge; exit 0
    only when every step passed."""
    import os

    from mtgate.conformance.runner import (
        run_conformance,
        sim_target,
        summary,
        terminal_target,
        to_json,
    )
    from mtgate.protocol.auth import Secret

    logs.configure(level="ERROR")
    host, port = "127.0.0.1", 0
    if against in ("sim", "agent-fake"):
        target = sim_target(against)
    elif against == "terminal":
        if not demo_account:
            typer.echo("error: the run trades; point it at a demo account and say so with "
                       "--demo-account", err=True)  # fmt: skip
            raise typer.Exit(2)
        text = os.environ.get(key_env, "").strip()
        if not terminal_id or not account or not text:
            typer.echo("error: --against terminal needs --terminal-id, --account and the key in "
                       f"${key_env}", err=True)  # fmt: skip
            raise typer.Exit(2)
        try:
            key = Secret.from_hex(text)
        except ValueError:
            typer.echo(f"error: ${key_env} is not hex", err=True)
            raise typer.Exit(2) from None
        host, _, port_text = listen.rpartition(":")
        if not host or not port_text.isdigit():
            typer.echo(f"error: --listen {listen!r}: expected host:port", err=True)
            raise typer.Exit(2)
        port = int(port_text)
        target = terminal_target(terminal_id, key, account, symbol=symbol)
    else:
        typer.echo(f"error: --against {against!r}: expected sim, agent-fake or terminal", err=True)
        raise typer.Exit(2)
    report = asyncio.run(run_conformance(target, host=host, port=port))
    if json_out is not None:
        json_out.write_bytes(to_json(report) + b"\n")
    typer.echo(summary(report))
    raise typer.Exit(0 if report.failed == 0 else 1)


@app.command()
def sim(
    config: Annotated[Path, typer.Argument(help="TOML file describing the simulated terminals")],
    bridge: Annotated[str, typer.Option(help="bridge address host:port")] = "127.0.0.1:7788",
) -> None:
    """Run simulated terminals standalone against a bridge."""
    from mtsim.cli import run_from_file

    logs.configure(level="INFO")
    host, _, port = bridge.rpartition(":")
    _use_uvloop()
    raise typer.Exit(asyncio.run(run_from_file(config, host, int(port))))


@app.command()
def bench(
    orders: int = 2000,
    terminals: int = 4,
    concurrency: int = 8,
    warmup: int = 300,
    journal_sync: Annotated[
        str, typer.Option(help="SQLite synchronous: normal or full")
    ] = "normal",
    broker_delay_ms: Annotated[
        str, typer.Option(help="simulated broker delay range, e.g. 20-60")
    ] = "0",
    sync_terminals: Annotated[
        int, typer.Option(help="terminals of the sync load (0: no sync phase)")
    ] = 100,
    sync_positions: Annotated[int, typer.Option(help="open positions per sync terminal")] = 200,
    sync_seconds: Annotated[float, typer.Option(help="how long the sync CPU is measured")] = 10.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
    http: Annotated[
        bool, typer.Option(help="also place the orders through the HTTP API (http_latency_ms)")
    ] = False,
    events: Annotated[
        bool, typer.Option(help="write the event outbox, as mtgate serve does (docs/events.md)")
    ] = False,
    mt5_pipeline: Annotated[
        bool, typer.Option(help="MT5 terminals run up to 4 trades at once (feature pipeline)")
    ] = True,
    store: Annotated[
        list[str] | None,
        typer.Option(
            help="sqlite (a temporary file) or a database URL, e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:5432/test (a schema of the run's own); "
            "give it twice to measure both stores one after the other in one run"
        ),
    ] = None,
) -> None:
    """Measure the bridge's order round trip beside the loopback echo floor, in one run; then
    the cost of syncing many accounts, and the round trip while they sync."""
    from mtgate.bench import stores
    from mtgate.bench.harness import BenchOptions, run_bench

    chosen = store or [stores.DEFAULT]
    try:
        for each in chosen:
            stores.kind_of(each)
    except stores.StoreChoiceError as exc:
        raise typer.BadParameter(str(exc)) from None
    lo, _, hi = broker_delay_ms.partition("-")
    opts = BenchOptions(
        orders=orders,
        terminals=terminals,
        concurrency=concurrency,
        warmup=warmup,
        journal_sync=journal_sync,
        broker_delay_ms=(float(lo), float(hi or lo)),
        sync_terminals=sync_terminals,
        sync_positions=sync_positions,
        sync_seconds=sync_seconds,
        http=http,
        events=events,
        mt5_pipeline=mt5_pipeline,
    )
    logs.configure(level="ERROR")
    _use_uvloop()
    runs: list[dict[str, object]] = []
    for each in chosen:
        runs.append(asyncio.run(run_bench(dataclasses.replace(opts, store=each))))
        _print_bench(runs[-1])
    if json_path is not None:
        document = runs[0] if len(runs) == 1 else {"runs": runs}
        json_path.write_text(json.dumps(document, indent=2) + "\n")


def _delay_range(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition(",")
    try:
        return float(lo), float(hi if sep else lo)
    except ValueError:
        raise typer.BadParameter(
            f"--delay-ms {text!r}: expected LO,HI in milliseconds, e.g. 20,60"
        ) from None


@app.command()
def soak(
    rate: Annotated[float, typer.Option(help="operations per second (Poisson arrivals)")] = 1000,
    seconds: Annotated[float, typer.Option(help="how long the load runs")] = 60,
    terminals: Annotated[int, typer.Option(help="simulated terminals, one account each")] = 20,
    positions: Annotated[int, typer.Option(help="standing positions per hedging account")] = 50,
    delay_ms: Annotated[
        str, typer.Option(help="simulated broker delay range LO,HI in ms, e.g. 20,60")
    ] = "0,0",
    seed: Annotated[int, typer.Option(help="seed of the arrivals and the operations")] = 1,
    mt5_pipeline: Annotated[
        bool, typer.Option(help="MT5 terminals run up to 4 trades at once (feature pipeline)")
    ] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
    store: Annotated[
        str,
        typer.Option(
            help="sqlite (a temporary file) or a database URL, e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:5432/test (a schema of the run's own)"
        ),
    ] = "sqlite",
) -> None:
    """Open-loop load at a fixed rate against the bridge at its defaults: latency from each
    operation's scheduled time, loop lag, GC pauses, RSS, CPU, errors, and the ground truth.
    Exit 1 when the ground truth is not exact or any operation did not finish."""
    from mtgate.bench.soak import SoakOptions

    try:
        opts = SoakOptions(
            rate=rate,
            seconds=seconds,
            terminals=terminals,
            positions=positions,
            delay_ms=_delay_range(delay_ms),
            seed=seed,
            mt5_pipeline=mt5_pipeline,
            store=store,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    logs.configure(level="CRITICAL")
    _use_uvloop()
    figures = asyncio.run(_soak_with_progress(opts))
    _print_soak(figures)
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    truth = figures["ground_truth"]
    if not truth["exact"] or figures["unfinished"]:
        raise typer.Exit(1)


async def _soak_with_progress(opts: SoakOptions) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TimeRemainingColumn

    from mtgate.bench.soak import run_soak

    console = Console(stderr=True)
    if not console.is_terminal:
        return await run_soak(opts)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"soak at {opts.rate:g}/s", total=opts.seconds)
        return await run_soak(opts, lambda elapsed: bar.update(task, completed=elapsed))


@app.command()
def chaos(
    orders: Annotated[
        int, typer.Option(help="operations to drive (orders, position changes)")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="seed of the plan: operations and faults")] = 1,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
    details: Annotated[
        Path | None, typer.Option(help="write every finding and the run's notes here (JSON)")
    ] = None,
    db: Annotated[
        Path | None, typer.Option(help="keep the journal in this SQLite file (default: temporary)")
    ] = None,
    drop_comments: Annotated[
        bool, typer.Option(help="the brokers drop the bridge's order comments")
    ] = False,
    server_offset_h: Annotated[
        int,
        typer.Option(
            min=-14, max=14, help="the trade servers' clock runs this many hours off the bridge's"
        ),
    ] = 0,
    not_ready_reads: Annotated[
        int,
        typer.Option(min=0, max=100, help="each terminal answers its first N reads -3 not_ready"),
    ] = 0,
) -> None:
    """Random orders, position changes, failovers and faults (terminal kills, bridge
    restarts, ...) against simulated terminals, then the journal checked against the
    simulator's ground truth. Exit 1 when any duplicate, lost, unresolved or mismatch."""
    from mtgate.chaos.report import not_injected, run
    from mtgate.chaos.world import Broker

    logs.configure(level="CRITICAL")
    _use_uvloop()
    broker = Broker(
        drop_comments=drop_comments,
        server_offset_h=server_offset_h,
        not_ready_reads=not_ready_reads,
    )
    figures, verdict, notes = run(orders, seed, db=db, broker=broker)
    _print_chaos(figures, not_injected(notes), verdict.findings[:20])
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    if details is not None:
        details.write_text(
            json.dumps(
                {
                    "seed": seed,
                    "findings": [
                        {
                            "counter": f.counter,
                            "account": f.account,
                            "subject": f.subject,
                            "journal": f.journal,
                            "server": f.server,
                        }
                        for f in verdict.findings
                    ],
                    "not_injected": not_injected(notes),
                    "op_errors": notes.op_errors,
                    "skipped_operations": notes.skipped_operations,
                    "bridge_restarts": notes.bridge_restarts,
                    "settle_s": round(notes.settle_s, 1),
                    "returns": notes.returns,
                    "faults_planned": notes.faults_planned,
                    "faults_armed": notes.faults_armed,
                    "while_down": notes.while_down,
                    "failovers": notes.failovers,
                },
                indent=2,
            )
            + "\n"
        )
    raise typer.Exit(0 if verdict.clean else 1)


def _print_chaos(
    figures: dict[str, object], skipped: list[str], findings: Sequence[object]
) -> None:
    console = Console()
    table = Table(title=f"mtgate chaos: {figures['orders']} operations, {figures['wall_s']} s")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name in (
        "faults_injected",
        "duplicates",
        "lost",
        "unknown_unresolved",
        "mismatches",
        "retries",
        "failovers",
        "ready_after_return_ms",
    ):
        table.add_row(name, str(figures[name]))
    console.print(table)
    console.print(f"faults by kind: {figures['faults_by_kind']}")
    if skipped:
        console.print(f"planned, never took effect: {', '.join(skipped)}")
    for finding in findings:
        console.print(f"finding: {finding}")


@app.command()
def rejections(
    since: Annotated[
        str, typer.Option(help="start of the window: 30m, 1h, 2d, 1w, now or an ISO 8601 time")
    ] = "1h",
    until: Annotated[str, typer.Option(help="end of the window (same forms)")] = "now",
    by: Annotated[
        str, typer.Option(help="group by: code, account, symbol and minute, hour or day")
    ] = "code",
    account: Annotated[str | None, typer.Option(help="only this account, login@server")] = None,
    symbol: Annotated[str | None, typer.Option(help="only this symbol")] = None,
    platform: Annotated[str | None, typer.Option(help="only mt4 or mt5")] = None,
    limit: Annotated[int, typer.Option(help="at most this many groups")] = 50,
    config: Annotated[Path | None, typer.Option(help="TOML configuration file")] = None,
    store: Annotated[
        str | None, typer.Option(help="journal URL (default: the configuration's [store])")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Rejection counts and rates of the orders placed in a window, read from the journal
    (read-only: a running bridge's journal may be read at the same time)."""
    from mtgate.config import load_store
    from mtgate.domain.clock import SystemClock
    from mtgate.store.rejection_sql import read, read_engine
    from mtgate.store.rejections import RejectionQueryError, parse_time, rejection_query

    try:
        url = store if store is not None else load_store(config).url
        now_ms = SystemClock().now_ms()
        login, server = _account(account)
        query = rejection_query(
            since_ms=parse_time(since, now_ms, option="since"),
            until_ms=parse_time(until, now_ms, option="until"),
            by=by,
            account_login=login,
            account_server=server,
            symbol=symbol,
            platform=platform,
            limit=limit,
        )
        engine = read_engine(url)
    except (ConfigError, RejectionQueryError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        report = read(engine, query)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    _print_rejections(report.as_dict())


def _account(text: str | None) -> tuple[int | None, str | None]:
    from mtgate.store.rejections import RejectionQueryError

    if text is None:
        return None, None
    login, at, server = text.partition("@")
    if not at or not login.isdigit() or not server or len(login) > 19:
        raise RejectionQueryError(f"account {text[:80]!r}: expected login@server")
    return int(login), server


def _print_rejections(report: dict[str, object]) -> None:
    groups = report["groups"]
    assert isinstance(groups, list)
    table = Table(
        title=f"rejections {report['since']} .. {report['until']}: {report['rejections']} of "
        f"{report['orders']} orders ({float(str(report['rate'])):.2%})"
    )
    by = report["by"]
    assert isinstance(by, list)
    columns = ["bucket"] if {"minute", "hour", "day"} & set(by) else []
    columns += [c for c in ("account", "symbol") if c in by]
    if "code" in by:
        columns += ["source", "platform", "code", "name", "classification"]
    for col in (*columns, "rejections", "orders", "rate", "last seen"):
        table.add_column(
            col, justify="right" if col in ("rejections", "orders", "rate") else "left"
        )
    for group in groups:
        assert isinstance(group, dict)
        cells = ["" if group.get(c) is None else str(group.get(c)) for c in columns]
        table.add_row(
            *cells,
            str(group["rejections"]),
            str(group["orders"]),
            f"{group['rate']:.2%}",
            str(group["last_seen"]),
        )
    console = Console()
    console.print(table)
    if report["truncated"]:
        console.print("more groups exist: raise --limit to see them")


def _print_bench(f: dict[str, object]) -> None:
    table = Table(
        title=f"mtgate bench: {f['orders']} orders, {f['terminals']} terminals, "
        f"concurrency {f['concurrency']}, store {f.get('store', 'sqlite')}, journal {f['journal_sync']}"
    )
    for col in ("measure", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="right")
    for name, key in (
        ("loopback echo floor (c=1)", "floor_ms"),
        ("loopback echo floor (c=C)", "floor_concurrent_ms"),
        ("bridge market order (c=1)", "latency_concurrency_1_ms"),
        ("bridge market order (c=C)", "latency_ms"),
        ("bridge market order (c=C), sync running", "latency_with_sync_ms"),
        ("HTTP API market order (c=1)", "http_latency_concurrency_1_ms"),
        ("HTTP API market order (c=C)", "http_latency_ms"),
    ):
        if key not in f:
            continue
        row = f[key]
        assert isinstance(row, dict)
        table.add_row(name, *(str(row.get(k, "")) for k in ("p50", "p90", "p99", "max")))
    console = Console()
    console.print(table)
    console.print(
        f"throughput {f['throughput_per_s']} orders/s, errors {f['errors']}, "
        f"p50 / floor p50 = {f['ratio_p50_to_floor']}, simulator executed "
        f"{f['orders_executed_by_simulator']} of {f['orders_sent_total']} orders sent"
    )
    sync = f.get("sync")
    if isinstance(sync, dict):
        console.print(
            f"sync: {sync['terminals']} terminals x {sync['positions_per_terminal']} positions "
            f"every {sync['interval_ms']} ms: bridge CPU {f['sync_cpu_percent']} % of one core "
            f"({sync['bridge_cpu_us_per_snapshot']} us per snapshot, "
            f"{sync['snapshots_per_s']} snapshots/s), stale accounts {sync['stale_accounts']}; "
            f"order latency delta with sync: {f['latency_with_sync_delta_ms']}"
        )


def _print_soak(f: dict[str, Any]) -> None:
    table = Table(
        title=f"mtgate soak: {f['rate_per_s']:g}/s for {f['seconds']:g} s, "
        f"{f['terminals']} terminals, broker delay {f['delay_ms'][0]:g}-{f['delay_ms'][1]:g} ms"
    )
    for col in ("measure", "count", "p50 ms", "p99 ms", "p99.9 ms", "max ms"):
        table.add_column(col, justify="right")
    rows = [("every operation", f["latency_ms"])]
    rows += [(f"  {k}", v) for k, v in f["latency_by_operation_ms"].items()]
    rows.append(("carried out", f["latency_accepted_ms"]))
    rows.append(("refused terminal_busy", f["latency_refused_busy_ms"]))
    rows.append(("event-loop lag", f["loop_lag_ms"]))
    for name, row in rows:
        table.add_row(name, *(str(row[k]) for k in ("count", "p50", "p99", "p999", "max")))
    console = Console()
    console.print(table)
    gc_ = ", ".join(f"{g}: {v['count']} (max {v['max_ms']} ms)" for g, v in f["gc_pauses"].items())
    truth = f["ground_truth"]
    console.print(
        f"bridge CPU {f['bridge_cpu_percent']} % ({f['bridge_cpu_us_per_operation']} us per "
        f"operation); GC {gc_}; RSS spread over the last 40 s "
        f"{f['rss_last_40s_spread_percent']} %\n"
        f"errors {f['errors']} {f['errors_by_kind'] or ''}; UNKNOWN {f['unknown']}; sessions "
        f"closed {f['sessions_closed']}; unfinished {f['unfinished']}\n"
        f"ground truth: {'exact' if truth['exact'] else 'NOT exact ' + str(truth['findings'])} "
        f"({truth['intents']} intents, {truth['executions']} executions)"
    )
    sim = f["simulator"]["loop_lag_ms"]
    console.print(
        f"simulator's own loop lag p99 {sim['p99']} ms, max {sim['max']} ms "
        f"(a tail the bridge did not make); operations over 10 ms by second: "
        f"{f['slow_over_10ms_by_second']}"
    )
    for line in truth["first_findings"]:
        console.print(f"  {line}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
