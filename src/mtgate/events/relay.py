"""The relay: from the outbox to the sinks, at least once, in order (docs/events.md, "Relay").

One task tails the outbox (every ``poll_s``, on a connection of its own, in a worker thread)
into a bounded ring of the latest events. Each durable sink (NATS JetStream, Kafka) has a
task and a cursor kept in ``outbox_cursors``: it sends the events after its cursor, in ``seq``
order, and moves the cursor only once the sink has acknowledged them. A sink that fails keeps
its cursor and tries again with backoff, so an outage delays its events and loses none; a
restart resumes from the saved cursor (events sent but not yet recorded are sent again:
consumers de-duplicate on the event id). WebSocket clients read the same way from a sequence
number of their own (:meth:`Relay.stream`).

Events stay in the outbox for ``retention_s`` and until every durable sink has relayed them;
a stream resumed from before what was pruned gets :class:`ResumeGap`, never a silent hole.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mtgate import logs
from mtgate.domain.backoff import Backoff
from mtgate.store.outbox import OutboxReader, Stored

log = logs.get("mtgate.events")

IDLE_HEAD_S: float = 1.0
"""With no consumer, how often the tail reads the outbox's head (for the metrics)."""
PRUNED: str = "(pruned)"
"""The cursor row that remembers the highest ``seq`` pruned (not a sink)."""


class Sink(Protocol):
    """A durable destination. ``send`` returns once the sink holds every event, in order;
    it raises if any may be missing (the batch is then sent again, from its start)."""

    name: str

    async def send(self, events: Sequence[Stored]) -> None: ...

    async def close(self) -> None:
        """Drop the connection; the next ``send`` connects again."""
        ...


class ResumeGap(Exception):
    """The events after the requested sequence number were pruned: the client must reload its
    state through the HTTP API, then stream from ``head``."""

    def __init__(self, after: int, pruned_through: int, head: int) -> None:
        super().__init__(
            f"events after {after} are no longer kept (pruned through {pruned_through}); "
            f"reload the state and resume from {head}"
        )
        self.after, self.pruned_through, self.head = after, pruned_through, head


@dataclass
class SinkState:
    """What the relay knows of one sink, for the metrics and the health endpoint."""

    name: str
    cursor: int = 0
    sent: int = 0
    failures: int = 0
    last_error: str = ""
    connected: bool = False
    oldest_unsent_at_ms: int | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.2, cap_s=10.0))
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Relay:
    """Tails the outbox and drives the sinks; see the module text."""

    def __init__(
        self,
        reader: OutboxReader,
        sinks: Sequence[Sink] = (),
        *,
        now_ms: Callable[[], int],
        poll_s: float = 0.025,
        batch: int = 500,
        ring: int = 20_000,
        retention_s: float = 72 * 3600,
        prune_every_s: float = 60.0,
        backoff_cap_s: float = 10.0,
    ) -> None:
        self.reader = reader
        self.sinks = list(sinks)
        self.states = {
            s.name: SinkState(s.name, backoff=Backoff(base_s=0.2, cap_s=backoff_cap_s))
            for s in self.sinks
        }
        self._now_ms = now_ms
        self.poll_s = poll_s
        self.batch = batch
        self.retention_s = retention_s
        self.prune_every_s = prune_every_s
        self._ring: deque[Stored] = deque(maxlen=ring)
        self.head = 0
        """The last ``seq`` seen by the tail."""
        self.pruned_through = 0
        # Set when the head moves; a new one is made for the next move (see ``wait``).
        self._grew: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.tail_errors = 0
        self._streams = 0
        """WebSocket streams reading now: with none and no sink, the tail only follows the
        head."""
        self._woken = asyncio.Event()

    async def start(self) -> None:
        cursors = await asyncio.to_thread(self.reader.cursors)
        self.pruned_through = cursors.get(PRUNED, 0)
        for state in self.states.values():
            state.cursor = cursors.get(state.name, self.pruned_through)
        self.head = await asyncio.to_thread(self.reader.head)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._tail(), name="events-tail"))
        self._tasks.append(loop.create_task(self._prune_loop(), name="events-prune"))
        for sink in self.sinks:
            task = loop.create_task(self._drive(sink), name=f"events-sink:{sink.name}")
            self.states[sink.name].task = task
            self._tasks.append(task)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception as exc:  # closing one sink must not keep the others open
                log.warning("event sink did not close cleanly", sink=sink.name, error=repr(exc))

    # --- reading ---------------------------------------------------------------------------

    async def _tail(self) -> None:
        """Read new events into the ring while someone consumes them (a sink, a stream);
        otherwise only follow the head, once a second: reading every event back costs the
        process about as much as writing it, and nobody would read the ring."""
        while True:
            consumed = bool(self.sinks) or self._streams > 0
            try:
                if consumed:
                    found = await asyncio.to_thread(self.reader.after, self.head, self.batch)
                else:
                    head = await asyncio.to_thread(self.reader.head)
                    found = []
                    if head > self.head:
                        self._ring.clear()  # it no longer reaches the head
                        self.head = head
            except Exception as exc:  # the database is away: try again, never stop tailing
                self.tail_errors += 1
                log.warning("reading the outbox failed; retrying", error=repr(exc))
                await asyncio.sleep(max(self.poll_s, 1.0))
                continue
            if found:
                self._ring.extend(found)
                self.head = found[-1].event.seq
                self._wake_waiters()
                if len(found) == self.batch:
                    continue  # more behind: no sleep
            if consumed:
                await asyncio.sleep(self.poll_s)
            else:
                self._woken.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_HEAD_S):
                        await self._woken.wait()

    def _wake_waiters(self) -> None:
        grew, self._grew = self._grew, None
        if grew is not None and not grew.done():
            grew.set_result(None)

    async def read(self, after: int, limit: int) -> list[Stored]:
        """Up to ``limit`` events after ``after``, from the ring when it holds them, else from
        the outbox. Raises ResumeGap if some of them were pruned."""
        if after < self.pruned_through:
            raise ResumeGap(after, self.pruned_through, self.head)
        if after >= self.head:
            return []
        ring = self._ring
        if ring and after >= ring[0].event.seq - 1:  # nothing between ``after`` and the ring
            start = _first_after(ring, after)
            if start < len(ring):
                return list(itertools.islice(ring, start, start + limit))
        return await asyncio.to_thread(self.reader.after, after, limit)

    async def wait(self, after: int, timeout_s: float | None = None) -> bool:
        """Until the tail has seen an event after ``after`` (True) or ``timeout_s`` passed."""
        # One future shared by every waiter, shielded so that a waiter that times out or is
        # cancelled leaves it to the others. No lock and no ``asyncio.wait_for``: on 3.11 that
        # returns the inner result when a cancellation and the wake-up meet, and a sink's task
        # that swallowed its cancellation kept the bridge's stop waiting forever.
        try:
            async with asyncio.timeout(timeout_s):
                while self.head <= after:
                    if self._grew is None:
                        self._grew = asyncio.get_running_loop().create_future()
                    await asyncio.shield(self._grew)
        except TimeoutError:
            return False
        return True

    async def stream(self, after: int, *, idle_s: float = 15.0) -> AsyncIterator[list[Stored]]:
        """Batches of the events after ``after``, forever; an empty batch every ``idle_s``
        without events (a WebSocket sends it as a keep-alive). Raises ResumeGap."""
        self._streams += 1
        self._woken.set()  # the tail starts reading at once
        try:
            while True:
                found = await self.read(after, self.batch)
                if found:
                    after = found[-1].event.seq
                    yield found
                    continue
                if not await self.wait(after, idle_s):
                    yield []
        finally:
            self._streams -= 1

    # --- sinks -----------------------------------------------------------------------------

    async def _drive(self, sink: Sink) -> None:
        state = self.states[sink.name]
        failures = 0
        while True:
            try:
                found = await self.read(state.cursor, self.batch)
            except ResumeGap:  # cannot happen: nothing is pruned before every sink has it
                log.error("event sink fell behind the pruned outbox", sink=sink.name)
                state.cursor = self.pruned_through
                continue
            except Exception as exc:
                await self._failed(sink, state, exc)
                failures += 1
                continue
            if not found:
                state.oldest_unsent_at_ms = None
                await self.wait(state.cursor, 1.0)
                continue
            state.oldest_unsent_at_ms = found[0].at_ms
            try:
                await sink.send(found)
                state.connected = True
                last = found[-1].event.seq
                await asyncio.to_thread(self.reader.save_cursor, sink.name, last, self._now_ms())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the sink or the cursor's write: send the batch again
                await self._failed(sink, state, exc)
                failures += 1
                continue
            if failures:
                log.info("event sink recovered", sink=sink.name, after_failures=failures)
                state.backoff.reset()
            failures = 0
            state.cursor = last
            state.sent += len(found)

    async def _failed(self, sink: Sink, state: SinkState, exc: Exception) -> None:
        state.failures += 1
        state.connected = False
        state.last_error = repr(exc)[:500]
        delay = state.backoff.next_delay_s()
        log.warning(
            "event sink failed; its events wait and are sent again",
            sink=sink.name,
            error=state.last_error,
            retry_in_s=round(delay, 3),
            cursor=state.cursor,
        )
        try:
            await sink.close()
        except Exception as close_exc:
            log.warning("event sink did not close cleanly", sink=sink.name, error=repr(close_exc))
        await asyncio.sleep(delay)

    def lag(self, name: str) -> int:
        """Events written and not yet relayed by the sink ``name`` (as far as the tail has
        seen: the tail's own delay is ``poll_s``)."""
        return max(0, self.head - self.states[name].cursor)

    # --- retention -------------------------------------------------------------------------

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(self.prune_every_s)
            try:
                await self.prune()
            except Exception as exc:  # try again at the next round
                log.warning("pruning the outbox failed", error=repr(exc))

    async def prune(self) -> int:
        """Delete the events older than the retention that every sink has relayed."""
        through = min((s.cursor for s in self.states.values()), default=self.head)
        before = self._now_ms() - int(self.retention_s * 1000)
        gone, highest = await asyncio.to_thread(self.reader.prune, before, through)
        if gone:
            self.pruned_through = max(self.pruned_through, highest)
            await asyncio.to_thread(
                self.reader.save_cursor, PRUNED, self.pruned_through, self._now_ms()
            )
            log.info("pruned the outbox", events=gone, through=self.pruned_through)
        return gone


def _first_after(ring: deque[Stored], after: int) -> int:
    lo, hi = 0, len(ring)
    while lo < hi:
        mid = (lo + hi) // 2
        if ring[mid].event.seq <= after:
            lo = mid + 1
        else:
            hi = mid
    return lo
