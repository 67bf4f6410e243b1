"""`mtgate serve` end to end with every sink: the execution engine's view of the events.

The bridge runs as a process with a config file; two simulated terminals (two accounts) dial
in; the client places orders and a signal across both accounts and reads the events over
WebSocket; the same events reach Kafka (tansu) and NATS JetStream. Both sinks sit behind a TCP
proxy that is stopped in the middle of the run (the sink is gone: connections cut, new ones
refused) and started again: each consumer must see every event id of the WebSocket stream at
least once, in per-account order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mtgate.client import Client, StreamEvent
from mtgate.domain.clock import ManualClock, SystemClock
from mtgate.domain.enums import MarginMode, Platform
from mtgate.execution.requests import MarketOrderRequest, Side
from mtgate.execution.signals import SignalRequest, SignalTarget
from mtgate.protocol.auth import Secret
from mtsim.server import ServerConfig
from mtsim.world import AccountSpec, SimWorld
from tests.integration.test_event_sinks import NATS_URL, Tansu, _free_port, _unavailable
from tests.integration.test_serve import _wait_http

KEY_A, KEY_B = "a1" * 32, "b2" * 32
TOKEN = "engine-token-" + "7" * 32


class Proxy:
    """A TCP relay from ``port`` to ``target`` that can be cut and restored."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._links):
            w.transport.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, up_w}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while chunk := await r.read(65536):
                    w.write(chunk)
                    await w.drain()
            w.transport.abort()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._links -= {writer, up_w}


def _nats_target() -> tuple[str, int]:
    hostport = NATS_URL.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    return host, int(port)


async def _check_nats_reachable() -> None:
    import nats

    try:
        nc = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)
    except Exception as exc:
        _unavailable(f"NATS at {NATS_URL} is unreachable: {exc!r}")
    await nc.close()


def _first_order(events: list[tuple[str, str, int]]) -> dict[str, list[int]]:
    """Per key, the seqs of each event id's first appearance, in arrival order."""
    seen: set[str] = set()
    out: dict[str, list[int]] = {}
    for event_id, key, seq in events:
        if event_id not in seen:
            seen.add(event_id)
            out.setdefault(key, []).append(seq)
    return out


@pytest.mark.parametrize("offset_h", [-5, 3])
async def test_serve_streams_every_event_to_websocket_kafka_and_nats(
    tmp_path: Path, offset_h: int
) -> None:
    """End to end against a hostile broker: the servers drop the bridge's comments, run their
    clock ``offset_h`` hours off the bridge's, and each terminal answers its first reads -3."""
    await _check_nats_reachable()
    tansu_port, kafka_port, nats_port = _free_port(), _free_port(), _free_port()
    tansu = Tansu(tansu_port)
    tansu.advertised = f"127.0.0.1:{kafka_port}"
    tansu.start()
    kafka_proxy = Proxy(kafka_port, ("127.0.0.1", tansu_port))
    nats_proxy = Proxy(nats_port, _nats_target())
    await kafka_proxy.start()
    await nats_proxy.start()

    run = uuid.uuid4().hex[:8]
    stream, prefix, topics = f"E2E_{run.upper()}", f"e2e{run}", f"e2e{run}."
    port, api_port = _free_port(), _free_port()
    config = tmp_path / "mtgate.toml"
    config.write_text(
        f'[bridge]\nport = {port}\n[store]\nurl = "sqlite:///{tmp_path / "j.db"}"\n'
        f'[log]\nlevel = "WARNING"\n'
        f"[api]\nport = {api_port}\n"
        '[[api.tokens]]\nname = "engine"\nscopes = ["trade"]\ntoken_env = "ENGINE_TOKEN"\n'
        f'[events]\npoll_ms = 10\nnats_url = "nats://127.0.0.1:{nats_port}"\n'
        f'nats_stream = "{stream}"\nnats_subject_prefix = "{prefix}"\n'
        f'kafka_bootstrap = "127.0.0.1:{kafka_port}"\nkafka_topic_prefix = "{topics}"\n'
        '[[terminals]]\nid = "a"\nkey_env = "KEY_A"\naccount = "7101@Sim-A"\n'
        '[[terminals]]\nid = "b"\nkey_env = "KEY_B"\naccount = "7201@Sim-B"\n'
    )
    env = {**os.environ, "KEY_A": KEY_A, "KEY_B": KEY_B, "ENGINE_TOKEN": TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mtgate.cli", "serve", "--config", str(config), env=env,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    world = SimWorld(
        [
            AccountSpec("a", 7101, "Sim-A", Platform.MT4, MarginMode.HEDGING,
                        key=Secret.from_hex(KEY_A)),
            AccountSpec("b", 7201, "Sim-B", Platform.MT5, MarginMode.HEDGING,
                        key=Secret.from_hex(KEY_B)),
        ],
        clock=ManualClock(SystemClock().now_ms() + offset_h * 3_600_000),
        configs={name: ServerConfig(rewrite_comment="") for name in ("Sim-A", "Sim-B")},
    )  # fmt: skip
    for terminal in world.terminals.values():
        terminal.faults.not_ready_reads = 3
    accounts = ["7101@Sim-A", "7201@Sim-B"]
    ws_events: list[StreamEvent] = []
    failed = False
    try:
        await _wait_http(f"http://127.0.0.1:{api_port}/livez")
        world.start("127.0.0.1", port)
        for tid in ("a", "b"):
            await asyncio.wait_for(world.terminals[tid].connected.wait(), 20)
        async with Client(f"http://127.0.0.1:{api_port}", TOKEN) as client:
            for _ in range(100):
                if (await client.ready()).status == "ok":
                    break
                await asyncio.sleep(0.1)
            # Each terminal's first reads were answered -3 and asked again in the session.
            assert all(t.faults.not_ready_reads == 0 for t in world.terminals.values())
            assert all(t.sessions == 1 for t in world.terminals.values())

            async def watch() -> None:
                async for event in client.events(0, types=["execution.order."]):
                    ws_events.append(event)

            watcher = asyncio.create_task(watch())
            expected: set[str] = set()

            async def order(i: int) -> None:
                r = await client.place_market_order(
                    MarketOrderRequest(account=accounts[i % 2], symbol="EURUSD", side=Side.BUY,
                                       volume=0.1, client_order_id=f"e2e-{i}")
                )  # fmt: skip
                assert r.status == "filled", r
                expected.add(r.client_order_id)

            for i in range(4):
                await order(i)
            bid, _, _ = world.terminals["b"].server.feed.quote("EURUSD")
            signal_result = await client.execute_signal(
                SignalRequest(
                    signal_id=f"sig-{run}", symbol="EURUSD", side=Side.SELL,
                    sl=round(bid + 0.005, 5),
                    accounts=[SignalTarget(account=a) for a in accounts],
                )
            )  # fmt: skip
            for placed in signal_result.orders:
                assert placed.result is not None and placed.result.status == "filled"
                expected.add(placed.result.client_order_id)
            # Both sinks go away; orders go on; the sinks come back.
            await kafka_proxy.stop()
            await nats_proxy.stop()
            for i in range(4, 8):
                await order(i)
            await asyncio.sleep(1.0)
            await kafka_proxy.start()
            await nats_proxy.start()
            for i in range(8, 10):
                await order(i)

            def ws_has_all() -> bool:
                filled = {
                    e.data["order"]["client_order_id"]
                    for e in ws_events
                    if e.type == "execution.order.filled"
                }
                return expected <= filled

            for _ in range(200):
                if ws_has_all():
                    break
                await asyncio.sleep(0.05)
            assert ws_has_all()
            held = [
                p.comment
                for name, login in (("Sim-A", 7101), ("Sim-B", 7201))
                for p in world.servers[name].positions(login)
            ]
            assert held and set(held) == {""}  # the broker kept none of the bridge's comments
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        ws_ids = {e.id for e in ws_events}
        assert len(ws_ids) == len(expected) * 2  # submitted and filled, each once
        for key, seqs in _first_order([(e.id, e.key, e.seq) for e in ws_events]).items():
            assert seqs == sorted(seqs), key

        kafka = await _kafka_events(tansu_port, topics, ws_ids)
        nats = await _nats_events(stream, prefix, ws_ids)
        for name, got in (("kafka", kafka), ("nats", nats)):
            assert ws_ids <= {g[0] for g in got}, f"{name} missed events"
            for key, seqs in _first_order(got).items():
                assert seqs == sorted(seqs), (name, key)
    except BaseException:
        failed = True
        raise
    finally:
        await world.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()  # never leave a bridge running behind a failed test
            raise
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode(errors="replace")
        if failed:
            print(err[-6000:])
        await kafka_proxy.stop()
        await nats_proxy.stop()
        tansu.stop()
        await _drop_stream(stream)
    assert code == 0, err
    # The outage was real for NATS: publishes failed and the relay sent them again once it
    # was back. The Kafka producer holds and retries its batches itself within its request
    # timeout, so the relay may see no failure there; what it must not do is lose them.
    assert '"sink": "nats", "error"' in err and "event sink failed" in err, err[-3000:]


async def _kafka_events(port: int, prefix: str, wanted: set[str]) -> list[tuple[str, str, int]]:
    """Every order event in the topics, per partition in offset order, merged per key."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        f"{prefix}execution.order.submitted", f"{prefix}execution.order.filled",
        bootstrap_servers=f"127.0.0.1:{port}", auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
    )  # fmt: skip
    await consumer.start()
    got: list[tuple[str, str, int]] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    env = msgspec.json.decode(r.value)
                    got.append((env["id"], env["key"], env["seq"]))
            if wanted <= {g[0] for g in got}:
                break
    finally:
        await consumer.stop()
    # Two topics: order within an account holds per topic; merge by seq for the check.
    return sorted(got, key=lambda g: g[2])


async def _nats_events(stream: str, prefix: str, wanted: set[str]) -> list[tuple[str, str, int]]:
    import nats

    nc = await nats.connect(NATS_URL)
    got: list[tuple[str, str, int]] = []
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(f"{prefix}.>", stream=stream)
        deadline = asyncio.get_running_loop().time() + 30  # the sink may still be in backoff
        while asyncio.get_running_loop().time() < deadline:
            try:
                msgs = await sub.fetch(100, timeout=0.5)
            except TimeoutError:
                msgs = []
                await asyncio.sleep(0.2)
            for msg in msgs:
                env: dict[str, Any] = msgspec.json.decode(msg.data)
                got.append((env["id"], env["key"], env["seq"]))
                await msg.ack()
            if wanted <= {g[0] for g in got}:
                break
    finally:
        await nc.close()
    return got


async def _drop_stream(stream: str) -> None:
    import nats

    with contextlib.suppress(Exception):
        nc = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()
