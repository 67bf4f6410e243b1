"""The durable sinks: NATS JetStream and Kafka (docs/events.md, "NATS JetStream", "Kafka").

Both send one relay batch in ``seq`` order and return only when the server has acknowledged
every event; any failure raises, and the relay sends the batch again from its start. Each
message carries the event id where the server can de-duplicate on it (JetStream's
``Nats-Msg-Id``) and where a consumer can (a Kafka header, the envelope's ``id``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from mtgate import logs
from mtgate.events.model import EventType
from mtgate.store.outbox import Stored

log = logs.get("mtgate.events")

_encode = msgspec.json.Encoder().encode


def encode(stored: Stored) -> bytes:
    """The envelope as every sink carries it (JSON)."""
    return _encode(stored.event)


class NatsSink:
    """Publishes each event to ``<prefix>.<type>`` of the stream ``stream`` (created or
    updated at connect time to hold ``<prefix>.>``), one at a time, each awaiting the
    stream's acknowledgement: per-account order is the stream's order. ``Nats-Msg-Id`` is
    the event id, so a batch sent again within the stream's duplicate window is stored once.
    """

    name = "nats"
    DUPLICATE_WINDOW_S: Final = 600.0

    def __init__(
        self, url: str, *, stream: str = "MTGATE", prefix: str = "mtgate", timeout_s: float = 5.0
    ) -> None:
        self.url, self.stream, self.prefix, self.timeout_s = url, stream, prefix, timeout_s
        self._nc: Any = None
        self._js: Any = None

    async def _connect(self) -> Any:
        import nats
        from nats.js.api import StreamConfig
        from nats.js.errors import BadRequestError

        nc = await nats.connect(
            self.url,
            connect_timeout=self.timeout_s,
            allow_reconnect=False,  # the relay reconnects, with its own backoff
            max_reconnect_attempts=0,
            name="mtgate-relay",
            error_cb=self._error,
        )
        try:
            js = nc.jetstream(timeout=self.timeout_s)
            config = StreamConfig(
                name=self.stream,
                subjects=[f"{self.prefix}.>"],
                duplicate_window=self.DUPLICATE_WINDOW_S,
            )
            try:
                await js.add_stream(config)
            except BadRequestError:  # exists with other settings: keep its data, update them
                await js.update_stream(config)
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, js
        log.info("event sink connected", sink=self.name, url=self.url, stream=self.stream)
        return js

    async def _error(self, exc: Exception) -> None:
        """The client's own error report (a dropped connection): one line, no traceback."""
        log.warning("NATS connection error", sink=self.name, error=repr(exc)[:300])

    async def send(self, events: Sequence[Stored]) -> None:
        js = self._js if self._js is not None else await self._connect()
        for stored in events:
            e = stored.event
            headers = {"Nats-Msg-Id": e.id, "Mtgate-Key": e.key, "Mtgate-Seq": str(e.seq)}
            await js.publish(
                f"{self.prefix}.{e.type}",
                encode(stored),
                timeout=self.timeout_s,
                stream=self.stream,
                headers=headers,
            )

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            # A server that is away (nats-py reconnecting to it) must not hold the bridge's
            # stop up: what it did not confirm is sent again from the outbox.
            try:
                async with asyncio.timeout(self.timeout_s):
                    await nc.close()
            except TimeoutError:
                log.warning("NATS connection did not close in time; left behind", sink=self.name)


class KafkaSink:
    """Produces each event to the topic ``<prefix><type>`` (``execution.order.filled``...),
    keyed by the event's ``key`` (the account), so one account's events share a partition
    and keep their order. The producer has one request in flight per partition and retries in
    order; a batch is sent whole and awaited, and a failure closes the producer (anything it
    still holds is dropped) before the relay sends the batch again. Topics are created at
    connect time when missing."""

    name = "kafka"

    def __init__(
        self,
        bootstrap: str,
        *,
        prefix: str = "",
        partitions: int = 3,
        idempotence: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        self.bootstrap, self.prefix, self.partitions = bootstrap, prefix, partitions
        self.idempotence, self.timeout_s = idempotence, timeout_s
        self._producer: Any = None

    def topic(self, type_: str) -> str:
        return f"{self.prefix}{type_}"

    async def _connect(self) -> Any:
        from aiokafka import AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        ms = int(self.timeout_s * 1000)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=ms)
        await admin.start()
        try:
            have = set(await admin.list_topics())
            wanted = [self.topic(t.value) for t in EventType if self.topic(t.value) not in have]
            if wanted:
                with contextlib.suppress(TopicAlreadyExistsError):  # made meanwhile
                    await admin.create_topics(
                        [NewTopic(t, self.partitions, 1) for t in wanted], timeout_ms=ms
                    )
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=self.idempotence,
            linger_ms=2,
            max_batch_size=1 << 20,
            request_timeout_ms=ms,
            client_id="mtgate-relay",
        )
        await producer.start()
        self._producer = producer
        log.info("event sink connected", sink=self.name, bootstrap=self.bootstrap)
        return producer

    async def send(self, events: Sequence[Stored]) -> None:
        producer = self._producer if self._producer is not None else await self._connect()
        sent = []
        for stored in events:
            e = stored.event
            sent.append(
                await producer.send(
                    self.topic(e.type),
                    encode(stored),
                    key=e.key.encode(),
                    headers=[
                        ("mtgate-event-id", e.id.encode()),
                        ("mtgate-seq", str(e.seq).encode()),
                    ],
                )
            )
        async with asyncio.timeout(self.timeout_s * 3):
            await asyncio.gather(*sent)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:  # a broker that is away must not hold the relay up
            async with asyncio.timeout(self.timeout_s):
                await producer.stop()
