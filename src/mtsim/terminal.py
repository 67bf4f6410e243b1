"""A simulated terminal: dials the bridge and speaks protocol v1 exactly as the EA does.

It authenticates the bridge before executing anything, executes trade requests one at a
time in arrival order (MT4's single trade context; an optional broker delay models the trade
server's round trip), answers reads without letting them wait behind trades, pushes account
events with a per-session sequence number and tick events for subscribed symbols, keeps a
heartbeat, and reconnects with capped, jittered backoff when the connection drops.

Like the EA it refuses on its own what it cannot turn into a platform call (-2, e.g. an
expiration past MQL's datetime range), and it starts a trade only while the session is alive
(docs/protocol.md §4.3 rule 4): a trade whose turn comes after the bridge has been silent for
3 heartbeat intervals ends the session (``bye`` ``heartbeat_timeout``) and is discarded,
unexecuted and unanswered, with every trade queued behind it (:mod:`mtgate.protocol.ea`). A trade
already at the trade server completes.

Account synchronization (feature "sync", docs/protocol.md §5.3): a ``sync`` request is
answered with the interval the terminal will push at, then a ``snapshot`` event is pushed at
once and every interval by a task of the connection, until a new ``sync`` replaces it (its
history restarts from the new ``since_ms``), ``sync`` with interval 0 stops it, or the
connection closes. Snapshots never delay a trade: a snapshot is built and written in one go
between two other pieces of work (as the EA's OnTimer runs between its other handlers), the
trade queue runs on its own (a trade waiting for its broker round trip is not held by a
snapshot, and a trade request that arrives while snapshots are pushed is answered at once),
and building one costs well under a millisecond for hundreds of positions
(:meth:`mtsim.server.TradeServer.snapshot`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mtgate.domain.backoff import Backoff
from mtgate.domain.codes import Classification, lookup
from mtgate.domain.enums import Platform
from mtgate.protocol import codec, ea
from mtgate.protocol import messages as m
from mtgate.protocol.auth import (
    SEAL_BYTES,
    TO_BRIDGE,
    TO_EA,
    FrameSeal,
    Secret,
    bridge_proof,
    ea_proof,
    new_nonce,
    proofs_match,
    session_key,
)
from mtgate.protocol.link import FramedLink
from mtsim import errors
from mtsim.faults import (
    REFUSAL_KINDS,
    Fault,
    FaultKind,
    FaultPlan,
    RandomFaults,
    applicable_kinds,
    refusal,
)
from mtsim.server import SyncCursor, TradeError, TradeServer
from mtsim.trading import DONE_PARTIAL

EA_VERSION = "mtsim-1.0"
_POSITION_OPS = (m.ModifyPosition, m.ClosePosition, m.CloseBy)

_NO_FAULT = Fault(FaultKind.SLOW)
"""Stands for "no fault" in :meth:`_Connection._start_trade`: a slow answer 0 ms late."""
_CUTS = frozenset({FaultKind.DROP_BEFORE, FaultKind.DROP_AFTER, FaultKind.ANSWER_LOST})

SYNC_MIN_INTERVAL_MS = 100
"""A positive ``sync`` interval below this is raised to it (the answer carries the interval
used): an EA's timer cannot usefully run faster, and snapshots must leave the terminal time to
trade."""


@dataclass(slots=True)
class TerminalFaults:
    """Faults a test arms on a running terminal; each ``*_next_trade`` fires once."""

    drop_before_next_trade: bool = False
    """Cut the connection when the next trade request arrives, without executing it."""
    drop_after_next_trade: bool = False
    """Execute the next trade request with the connection already dead: no answer, no event."""
    answer_lost_next_trade: bool = False
    """Execute the next trade request and push its events, then cut the connection before
    the answer."""
    stay_down: bool = False
    """Do not reconnect while set (a terminal whose machine is down)."""
    frozen: bool = False
    """Hang: read nothing, answer nothing, send no heartbeat nor snapshot (a terminal stuck in
    a loop)."""
    algo_trading_off: bool = False
    """The terminal's own Algo Trading (MT4: AutoTrading) button is off: every trade is
    refused with MT5 10027 CLIENT_DISABLES_AT / MT4 4109 TRADE_NOT_ALLOWED, unexecuted
    (reference §3.7, §4.6 #2). A setting of this terminal only: another terminal of the
    same account still trades (unlike ``ServerConfig.trade_allowed``, which is the server's)."""
    reject_trades_after: int | None = None
    """Execute this many more trade requests, then refuse every later one with the platform's
    "trading disabled" code (MT4 133, MT5 10017), as when the broker disables trading on the
    account; None: off."""
    success_as_error_next_trade: bool = False
    """An EA bug: execute the next trade request and answer its success code as an error
    (``ok: false``), as an EA testing ``retcode != TRADE_RETCODE_DONE`` does with 10010."""
    failure_as_success_next_trade: bool = False
    """An EA bug: do not execute the next trade request, and answer ``ok: true`` with a
    requote code (MT4 138, MT5 10004) in the result."""
    refuse_syncs: int = 0
    """Answer this many more ``sync`` requests with -3 ``not_ready`` (an EA whose terminal is
    still loading its history), subscribing nothing."""
    lose_events: int = 0
    """Drop this many more ``order``/``deal``/``account``/``snapshot`` events, counting their
    ``seq`` (docs/protocol.md §7: the bridge sees the gap at the next event)."""
    not_ready_reads: int = 0
    """Answer this many more reads (``subscribe`` and ``sync`` included) with -3 ``not_ready``, executing
    nothing: a terminal just started, whose data is not synchronised yet (docs/protocol.md
    §4.2)."""
    bye_after_next_read: bool = False
    """Answer the next read, then say ``bye`` and close in the same write (an EA stopping
    right after a read)."""
    protocol_version: int | None = None
    """An EA of another protocol version: its ``hello`` says this ``v`` (1: an EA that seals
    no frame, docs/protocol.md §12); None: the simulator's own."""
    unsealed_frames: bool = False
    """An EA that does not seal: once the session is ready its frames leave without their
    MAC and number (what a version 1 EA would send, §3.5)."""
    swap_next_frames: bool = False
    """The next two frames the EA sends leave in each other's place (each sealed with its own
    number, so the first to arrive is out of order, §3.5)."""


@dataclass(frozen=True, slots=True)
class TerminalConfig:
    terminal_id: str
    key: Secret
    login: int
    build: int = 1420
    broker_delay_ms: tuple[float, float] = (0.0, 0.0)
    """Trade server round trip, drawn uniformly from this range for every trade request."""
    read_delay_ms: float = 0.0
    """Added to every read (history on a slow terminal), to show reads never delay trades."""
    seed: int = 0
    sync: bool = True
    """Announce and serve the "sync" feature (False: an EA without it; ``sync`` requests are
    then refused as an unknown operation)."""
    positions: bool = True
    """Announce and serve the "positions" feature (False: an EA without it; position
    operations are then refused as an unknown operation, docs/protocol.md §12)."""
    deadlines: bool = True
    """Announce and honour the "deadline" feature (docs/protocol.md §4.4): ``ping.t_ms`` is
    the EA's monotonic clock, and a trade whose turn comes at or after its ``deadline_ms`` on
    that clock is answered -6 ``deadline_passed``, unexecuted."""
    pipeline: bool = False
    """MT5: announce and honour the "pipeline" feature: up to ``PIPELINE_DEPTH`` trades run at
    once, started in arrival order, each answered when its result comes (docs/protocol.md
    §4.3 rule 1). Ignored on MT4, which has one trade context."""
    random_faults: RandomFaults | None = None
    """Faults drawn per trade under ``seed`` (:mod:`mtsim.faults`); None: only scripted ones."""
    handshake_timeout_s: float = 5.0
    """The EA's own handshake deadline (docs/protocol.md §3.1): no ``ready`` this long after
    the connection was established, and it says ``bye handshake_timeout`` and closes."""


class SimTerminal:
    """One simulated terminal logged into one account of a :class:`TradeServer`."""

    def __init__(self, server: TradeServer, config: TerminalConfig) -> None:
        self.server = server
        self.config = config
        self.connected = asyncio.Event()
        self.sessions = 0
        """Sessions that reached ``ready``."""
        self.dials = 0
        """Connections attempted (refused and failed ones included)."""
        self.last_bye: str = ""
        self.bridge_features: frozenset[str] = frozenset()
        """What the bridge's last ``welcome`` said it will use."""
        self._conn: _Connection | None = None
        self._stop = asyncio.Event()
        self._rng = random.Random(config.seed)
        self.faults = TerminalFaults()
        self.plan = FaultPlan(seed=config.seed, random_faults=config.random_faults)
        """Scripted and random trade faults, and their counters (:mod:`mtsim.faults`)."""
        self._clock_offset_ms = self._rng.randrange(1_000_000, 4_000_000_000)
        """The EA's monotonic clock (GetTickCount64) counts from the machine's boot, not
        from the bridge's epoch: tests see a clock the bridge must learn, never its own."""

    def ea_clock_ms(self) -> int:
        """The EA's monotonic clock, in ms (docs/protocol.md §4.4)."""
        return int(asyncio.get_running_loop().time() * 1000) + self._clock_offset_ms

    @property
    def connection(self) -> _Connection | None:
        return self._conn

    async def run(self, host: str, port: int, *, backoff: Backoff | None = None) -> None:
        """Dial the bridge until :meth:`stop`; reconnect after every drop."""
        backoff = backoff or Backoff(base_s=0.05, cap_s=2.0, rng=random.Random(self.config.seed))
        while not self._stop.is_set():
            if self.faults.stay_down:
                await asyncio.sleep(0.01)
                continue
            try:
                closed = await self.connect(host, port)
                await closed.wait()
                conn = self._conn
                ready_at = conn.ready_at if conn is not None else None
                # docs/protocol.md §2.3: reset only after a session ready for 1 s or more; one
                # refused or closed sooner keeps backing off.
                if ready_at is not None and asyncio.get_running_loop().time() - ready_at >= 1.0:
                    backoff.reset()
            except OSError:
                pass
            self.connected.clear()
            if self._stop.is_set():
                break
            try:
                async with asyncio.timeout(backoff.next_delay_s()):
                    await self._stop.wait()
            except TimeoutError:
                continue

    async def connect(self, host: str, port: int) -> asyncio.Event:
        """One connection; returns an event set when it closes."""
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        self._conn = conn
        self.dials += 1
        await loop.create_connection(lambda: FramedLink(lambda: conn), host, port)
        return conn.closed

    def stop(self) -> None:
        self._stop.set()
        if self._conn is not None:
            self._conn.close("terminal stopping", code="shutdown")

    def drop(self) -> None:
        """Cut the connection without a goodbye (a crash or a network fault)."""
        if self._conn is not None:
            self._conn.abort()

    async def restart(
        self,
        down_s: float,
        *,
        while_down: Callable[[TradeServer], object] | None = None,
        reboot: bool = False,
    ) -> None:
        """The terminal process restarts: the connection dies without ``bye`` (queued trades
        die with it, a trade already at the trade server completes), nothing dials for
        ``down_s``, then the new EA reconnects as after any drop (a new session, ``seq`` from
        1). ``while_down(server)`` runs once the connection is gone: the trade server goes on
        meanwhile (move a price to hit an SL/TP, make a manual trade, ...).

        The EA's clock (GetTickCount64, docs/protocol.md §4.4) is the machine's uptime, so a
        terminal restart keeps it running on; ``reboot`` models the machine restarting too:
        the clock starts again from a small uptime. Counted as a ``restart`` fault."""
        if not 0 <= down_s <= 3_600:
            raise ValueError(f"down_s {down_s} is outside 0..3600")
        self.faults.stay_down = True
        conn = self._conn
        if conn is not None:
            conn.abort()
            async with asyncio.timeout(10):
                await conn.closed.wait()
        self.plan.count(FaultKind.RESTART)
        if reboot:
            loop_ms = int(asyncio.get_running_loop().time() * 1000)
            self._clock_offset_ms = self._rng.randrange(20_000, 120_000) - loop_ms
        if while_down is not None:
            while_down(self.server)
        # The down time is what is simulated here: there is nothing to wait for but time.
        await asyncio.sleep(down_s)
        self.faults.stay_down = False

    def broker_delay_s(self) -> float:
        lo, hi = self.config.broker_delay_ms
        return (lo if hi <= lo else self._rng.uniform(lo, hi)) / 1000


class _Connection:
    """The terminal end of one connection (a FrameHandler)."""

    def __init__(self, terminal: SimTerminal) -> None:
        self.t = terminal
        self.closed = asyncio.Event()
        self.authenticated = False
        self.ready_at: float | None = None
        """Loop time of `ready` (the backoff resets after a session ready for 1 s)."""
        self._link: FramedLink | None = None
        self._held: bytes | None = None
        self._hello_body = b""
        self._welcome_body = b""
        """The handshake's two bodies as they crossed the wire: the session key covers them."""
        """Fault ``swap_next_frames``: the first of the two frames, sealed, not yet sent."""
        self._nonce = new_nonce()
        self._state = "hello"
        self._seq = 0
        self._last_request_id = 0
        self._ticks: set[str] = set()
        self._trades: collections.deque[m.Request] = collections.deque()
        self._trade_worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe: list[Callable[[], None]] = []
        self._heartbeat_ms = 1000
        self._last_frame_s = 0.0
        """Event-loop time the last frame arrived at (any frame counts, §8)."""
        self._sync_task: asyncio.Task[None] | None = None
        self._gone = asyncio.Event()
        """Set when the connection closes: ends a held answer (faults ``late_answer``,
        ``hang``)."""

    # --- FrameHandler ------------------------------------------------------------------------

    def on_connected(self, link: FramedLink) -> None:
        self._link = link
        loop = asyncio.get_running_loop()
        self._last_frame_s = loop.time()
        loop.call_later(self.t.config.handshake_timeout_s, self._handshake_expired)
        server, login = self.t.server, self.t.config.login
        account = server.handle(login, m.AccountInfo(id=0))
        assert isinstance(account, m.AccountReport)
        self._send_hello(
            m.Hello(
                v=self.t.faults.protocol_version or m.PROTOCOL_VERSION,
                platform=server.platform.value,
                build=self.t.config.build,
                login=login,
                server=server.name,
                company=account.company,
                currency=account.currency,
                leverage=account.leverage,
                margin_mode=account.margin_mode,
                terminal_id=self.t.config.terminal_id,
                ea_version=EA_VERSION,
                nonce=self._nonce,
                features=self._features(),
            )
        )

    def _features(self) -> list[str]:
        features = [m.POSITIONS_FEATURE] if self.t.config.positions else []
        if self.t.config.sync:
            features.append(m.SYNC_FEATURE)
        if self.t.config.deadlines:
            features.append(m.DEADLINE_FEATURE)
        if self.t.config.pipeline and self.t.server.platform == Platform.MT5:
            features.append(m.PIPELINE_FEATURE)
        return features

    def on_frame(self, body: bytes) -> None:
        if self.t.faults.frozen:
            return
        self._last_frame_s = asyncio.get_running_loop().time()
        try:
            msg = codec.decode_for_terminal(body)
        except codec.ProtocolError as exc:
            self.on_protocol_error(exc)
            return
        if self._state == "ready":
            self._on_message(msg)
        elif isinstance(msg, m.Bye):
            self.t.last_bye = f"{msg.code}: {msg.reason}"
            self.abort()
        elif self._state == "hello" and isinstance(msg, m.Welcome):
            self._welcome_body = body  # as it crossed the wire: part of the session key
            self._on_welcome(msg)
        elif self._state == "auth" and isinstance(msg, m.Ready):
            self._on_ready()
        else:
            self.close(f"{type(msg).__name__} is not valid during the handshake", code="not_ready")

    def on_protocol_error(self, error: codec.ProtocolError) -> None:
        self.close(f"protocol error: {error.message}", code=error.code)

    def on_closed(self, exc: Exception | None) -> None:
        self._state = "closed"
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for task in self._tasks:
            task.cancel()
        # Trades not yet started die with the connection (docs/protocol.md); the one already
        # at the trade server completes, and the terminal reconnects only after it has.
        self._trades.clear()
        self.t.connected.clear()
        self._gone.set()
        worker = self._trade_worker
        if worker is not None and not worker.done():
            worker.add_done_callback(lambda _: self.closed.set())
        else:
            self.closed.set()

    # --- handshake ---------------------------------------------------------------------------

    def _handshake_expired(self) -> None:
        if self._state not in ("ready", "closed") and self._link is not None and self._link.open:
            self.close("ready not received in time", code="handshake_timeout")

    def _on_welcome(self, msg: m.Welcome) -> None:
        cfg = self.t.config
        if msg.v != m.PROTOCOL_VERSION:
            self.close(f"protocol version {msg.v} is not supported", code="unsupported_version")
            return
        expected = bridge_proof(cfg.key, cfg.terminal_id, self._nonce, msg.nonce)
        if not proofs_match(expected, msg.proof):
            # A bridge that cannot prove the key gets nothing executed.
            self.close("bridge failed to prove the terminal key", code="auth_failed")
            return
        refusal = ea.welcome_refusal(msg, frozenset(self._features()))
        if refusal is not None:  # docs/protocol.md §3.3, the EA's third check
            self.close(refusal, code="invalid_message")
            return
        self._heartbeat_ms = msg.heartbeat_ms
        self.t.bridge_features = frozenset(msg.features)
        self._state = "auth"
        self._send(m.Auth(proof=ea_proof(cfg.key, cfg.terminal_id, self._nonce, msg.nonce)))
        if self._link is not None:  # every frame from here on is sealed (protocol §3.5)
            frames = session_key(
                cfg.key, cfg.terminal_id, self._nonce, msg.nonce, self._hello_body,
                self._welcome_body,
            )  # fmt: skip
            self._link.seal(FrameSeal(frames, TO_BRIDGE), FrameSeal(frames, TO_EA), plain_bye=True)

    def _on_ready(self) -> None:
        self._state = "ready"
        self.authenticated = True
        self.ready_at = asyncio.get_running_loop().time()
        self.t.sessions += 1
        server, login = self.t.server, self.t.config.login
        self._unsubscribe.append(server.on_event(login, self._push_event))
        self._unsubscribe.append(server.feed.listen(self._push_tick))
        if m.DEADLINE_FEATURE in self.t.bridge_features:
            # §4.4: the bridge learns the EA's clock from a ping before its first trade.
            self._send(m.Ping(t_ms=self.t.ea_clock_ms()))
        self._spawn(self._heartbeat_loop())
        self.t.connected.set()

    # --- requests ----------------------------------------------------------------------------

    def _on_message(self, msg: Any) -> None:
        if isinstance(msg, m.Request):
            if msg.id <= self._last_request_id:
                # §4.1: ids strictly increase within a session; a repeated one may be a
                # resent trade, and executing it again could double an order.
                self.close(
                    f"request id {msg.id} is not above the last one ({self._last_request_id})",
                    code="invalid_message",
                )
                return
            self._last_request_id = msg.id
        if isinstance(msg, m.Ping):
            self._send(m.Pong(t_ms=msg.t_ms))
        elif isinstance(msg, m.Pong):
            return
        elif isinstance(msg, m.Bye):
            self.t.last_bye = f"{msg.code}: {msg.reason}"
            self.abort()
        elif isinstance(msg, m.READ_OPS) and self.t.faults.not_ready_reads > 0:
            self.t.faults.not_ready_reads -= 1
            self._refuse(msg.id, -3, "not_ready", "the terminal's data is not synchronised yet")
        elif isinstance(msg, m.Subscribe):
            self._ticks = {s for s in msg.ticks if s in self.t.server.symbols}
            self._respond(msg.id, m.Subscribed(ticks=sorted(self._ticks)))
        elif isinstance(msg, m.Sync):
            self._start_sync(msg)
        elif isinstance(msg, m.TRADE_OPS):
            self._submit_trade(msg)
        elif isinstance(msg, m.READ_OPS):
            invalid = ea.invalid_request(msg, self.t.server.platform)
            if invalid is not None:  # a read the EA cannot make as asked: the platform not called
                self._refuse(msg.id, -2, "invalid_request", invalid)
            elif self.t.config.read_delay_ms > 0:
                self._spawn(self._delayed_read(msg))
            else:
                self._execute(msg)
        else:
            self.close(
                f"{type(msg).__name__} is not valid after the handshake", code="invalid_message"
            )

    def _start_sync(self, msg: m.Sync) -> None:
        """Answer ``sync``, push the first snapshot now and start the interval task (see the
        module docstring); the previous subscription, if any, ends first."""
        if m.SYNC_FEATURE not in self.t.bridge_features:  # not offered, or not taken (§12)
            self._refuse(msg.id, -1, "unknown_operation", "sync is not supported")
            return
        if self.t.faults.refuse_syncs > 0:
            self.t.faults.refuse_syncs -= 1
            self._refuse(msg.id, -3, "not_ready", "history is still loading")
            return
        if msg.interval_ms < 0 or msg.since_ms < 0:
            self._refuse(msg.id, -2, "invalid_request", "interval_ms and since_ms must be >= 0")
            return
        self._stop_sync()
        interval = sync_interval_ms(msg.interval_ms)
        self._respond(msg.id, m.SyncStarted(interval_ms=interval))
        if interval:
            cursor = self._push_snapshot(
                self.t.server.sync_cursor(self.t.config.login, msg.since_ms)
            )
            self._sync_task = self._spawn(self._sync_loop(interval, cursor))

    def _stop_sync(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()  # it only ever waits in sleep: it pushes nothing more
            self._sync_task = None

    async def _sync_loop(self, interval_ms: int, cursor: SyncCursor) -> None:
        """A snapshot every ``interval_ms`` on a fixed schedule from the first one (a late
        push does not shift the next ones; pushes missed entirely are not made up)."""
        loop = asyncio.get_running_loop()
        period = interval_ms / 1000
        due = loop.time()
        while self._state == "ready":
            now = loop.time()
            due = next_slot(due, now, period)
            if due > now:
                await asyncio.sleep(due - now)
            if not self.t.faults.frozen:  # a hung EA's timer does not run either
                cursor = self._push_snapshot(cursor)

    def _push_snapshot(self, cursor: SyncCursor) -> SyncCursor:
        snapshot, cursor = self.t.server.snapshot(self.t.config.login, cursor)
        self._push_event("snapshot", snapshot)
        return cursor

    def _submit_trade(self, msg: m.Request) -> None:
        invalid = ea.invalid_request(msg, self.t.server.platform)
        if invalid is not None:
            self._refuse(msg.id, -2, "invalid_request", invalid)
            return
        if not self._alive_for_trade() or self._past_deadline(msg):
            return
        if isinstance(msg, _POSITION_OPS) and m.POSITIONS_FEATURE not in self.t.bridge_features:
            self._refuse(msg.id, -1, "unknown_operation", "position operations are not supported")
            return
        faults = self.t.faults
        if faults.failure_as_success_next_trade:
            faults.failure_as_success_next_trade = False
            self._respond(msg.id, self._failure_result())
            return
        if faults.algo_trading_off:
            exc = errors.refuse(self.t.server.platform, errors.ALGO_DISABLED, "algo trading is off")
            self._send(m.Response(id=msg.id, ok=False, error=_error(exc)))
            return
        if faults.reject_trades_after is not None:
            if faults.reject_trades_after <= 0:
                exc = errors.refuse(
                    self.t.server.platform, errors.TRADE_DISABLED, "trading is disabled"
                )
                self._send(m.Response(id=msg.id, ok=False, error=_error(exc)))
                return
            faults.reject_trades_after -= 1
        if faults.drop_before_next_trade:
            faults.drop_before_next_trade = False
            self.abort()
            return
        if faults.drop_after_next_trade:
            faults.drop_after_next_trade = False
            self._drop_after(msg)
            return
        if faults.answer_lost_next_trade:
            faults.answer_lost_next_trade = False
            self._answer_lost(msg)
            return
        idle = not self._trades and not self.t.plan.armed
        if idle and self.t.config.broker_delay_ms[1] <= 0:
            self._execute(msg)  # the fast path: the trade context is free and the broker is instant
            return
        self._trades.append(msg)
        if self._trade_worker is None or self._trade_worker.done():
            self._trade_worker = asyncio.get_running_loop().create_task(self._run_trades())

    async def _run_trades(self) -> None:
        """One trade at a time, in arrival order: MT4's single trade context. Each trade
        starts only while the session is alive (§4.3 rule 4); once started (the broker
        delay is its trip to the trade server) it completes whatever happens to the
        session."""
        if m.PIPELINE_FEATURE in self.t.bridge_features:
            await self._run_pipelined()
            return
        while self._trades:
            msg = self._trades.popleft()
            if not self._alive_for_trade():
                return
            if self._past_deadline(msg):
                continue
            await self._start_trade(msg)

    async def _run_pipelined(self) -> None:
        """The feature ``pipeline`` (MT5 ``OrderSendAsync``): up to ``PIPELINE_DEPTH`` trades
        at the trade server at once, each started in arrival order under the same checks as
        one at a time (session alive, deadline not passed), each answered when it ends."""
        running: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        while self._trades or running:
            while self._trades and len(running) < m.PIPELINE_DEPTH:
                msg = self._trades.popleft()
                if not self._alive_for_trade():
                    self._trades.clear()
                    break
                if self._past_deadline(msg):
                    continue
                running.add(loop.create_task(self._start_trade(msg)))
            if running:
                done, pending = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                running = set(pending)
                for task in done:
                    task.result()  # a failure inside a trade is not swallowed

    async def _start_trade(self, msg: m.Request) -> None:
        """The trade's turn has come: the fault plan decides here, where a trade server (or
        the terminal's link to it) would answer (:mod:`mtsim.faults`)."""
        symbol = self._trade_symbol(msg)
        kinds = applicable_kinds(msg, symbol, self.t.server.platform)
        fault = self.t.plan.decide(self.t.ea_clock_ms(), kinds) or _NO_FAULT
        kind = fault.kind
        if kind in _CUTS:
            self._drop_before_after(msg, kind)
            return
        if kind == FaultKind.HANG:
            await self._hold(fault.delay_ms)
        if kind in REFUSAL_KINDS or kind == FaultKind.HANG:
            self._send_refusal(msg, kind, symbol)
            return
        if kind == FaultKind.SLOW and fault.delay_ms > 0:
            # The trade is at the trade server: like the broker delay, it completes whatever
            # happens to the session meanwhile.
            await asyncio.sleep(fault.delay_ms / 1000)
        elif kind == FaultKind.MARKET_CLOSED:
            now = self.t.server.clock.now_ms()
            self.t.server.close_market(symbol, now + max(fault.duration_ms, 1))
        delay = self.t.broker_delay_s()
        if delay > 0:
            await asyncio.sleep(delay)
        liquidity = fault.ratio if kind == FaultKind.PARTIAL_FILL else None
        response = self._outcome(msg, liquidity)
        if kind == FaultKind.LATE_ANSWER:
            await self._hold(fault.delay_ms)
            if self._state != "ready":
                return
        self._send(response)

    def _drop_before_after(self, msg: m.Request, kind: FaultKind) -> None:
        if kind == FaultKind.DROP_BEFORE:
            self.abort()
        elif kind == FaultKind.DROP_AFTER:
            self._drop_after(msg)
        else:
            self._answer_lost(msg)

    def _drop_after(self, msg: m.Request) -> None:
        """Execute ``msg`` with the connection already dead: no answer, no events."""
        self._state = "closed"
        with contextlib.suppress(TradeError):  # refused or not, nothing gets out
            self.t.server.handle(self.t.config.login, msg)
        self.abort()

    def _answer_lost(self, msg: m.Request) -> None:
        """Execute ``msg``, push its events, then cut the connection before the answer."""
        with contextlib.suppress(TradeError):
            self.t.server.handle(self.t.config.login, msg)
        if self._link is not None:
            self._link.flush()  # the events got out; the answer will not
        self.abort()

    async def _hold(self, delay_ms: int) -> None:
        """Wait ``delay_ms``, or until the connection closes; 0: until the connection closes
        (an answer that never comes)."""
        timeout = delay_ms / 1000 if delay_ms > 0 else None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._gone.wait()

    def _send_refusal(self, msg: m.Request, kind: FaultKind, symbol: str) -> None:
        """A fault's refusal, nothing executed; price faults carry the current prices."""
        if self._state != "ready":
            return
        bid, ask = 0.0, 0.0
        if symbol:
            bid, ask, _ = self.t.server.feed.quote(symbol)
        exc = refusal(self.t.server.platform, kind, bid=bid, ask=ask)
        self._send(m.Response(id=msg.id, ok=False, error=_error(exc)))

    def _trade_symbol(self, msg: m.Request) -> str:
        """The symbol a trade acts on as the EA knows it ("" when it cannot tell)."""
        symbol = getattr(msg, "symbol", "")
        if symbol:
            return symbol if symbol in self.t.server.symbols else ""
        if isinstance(msg, m.ClosePosition):
            return self.t.server.position_symbol(self.t.config.login, msg.ticket)
        return ""

    def _alive_for_trade(self) -> bool:
        """§4.3 rule 4, checked before starting each trade: no ``bye`` arrived and the socket
        is open (else the session is already over), and a frame arrived within the last 3
        heartbeat intervals; if none did, the EA ends the session as §8 says. Either way a
        trade that fails the check is dropped with every queued one, unanswered."""
        link = self._link
        if self._state != "ready" or link is None or not link.open:
            self._trades.clear()
            return False
        now_s = asyncio.get_running_loop().time()
        if not ea.heartbeat_expired(now_s, self._last_frame_s, self._heartbeat_ms):
            return True
        self._trades.clear()
        silent_ms = (now_s - self._last_frame_s) * 1000
        self.close(f"nothing received for {silent_ms:.0f} ms", code="heartbeat_timeout")
        return False

    def _past_deadline(self, msg: m.Request) -> bool:
        """§4.4, checked right before a trade would start: a trade whose deadline has come
        is answered -6 and never executed. Under the feature only."""
        deadline = getattr(msg, "deadline_ms", 0)
        if not deadline:
            return False
        if m.DEADLINE_FEATURE not in self.t.bridge_features:
            # An EA without the feature knows no such field (§12): the frame is invalid.
            self.close("deadline_ms is not a field of this protocol", code="invalid_message")
            return True
        now = self.t.ea_clock_ms()
        if now < deadline:
            return False
        self._refuse(
            msg.id, -6, "deadline_passed", f"deadline {deadline} passed ({now - deadline} ms ago)"
        )
        return True

    async def _delayed_read(self, msg: m.Request) -> None:
        await asyncio.sleep(self.t.config.read_delay_ms / 1000)
        self._execute(msg)

    def _execute(
        self, msg: m.Request, *, started: bool = False, liquidity: float | None = None
    ) -> None:
        if self._state != "ready" and not started:
            return
        self._send(self._outcome(msg, liquidity))
        faults = self.t.faults
        if faults.bye_after_next_read and isinstance(msg, m.READ_OPS):
            faults.bye_after_next_read = False
            self.close("EA stopping", code="shutdown")

    def _outcome(self, msg: m.Request, liquidity: float | None) -> m.Response:
        """Run ``msg`` at the trade server; the answer the EA sends for it. Counts what an
        injected fault changed (a refusal by an injected closure, a partial fill)."""
        server, plan = self.t.server, self.t.plan
        closures = server.closure_refusals
        try:
            login = self.t.config.login
            if liquidity is None:  # the plain call: tests may wrap ``handle`` to spy on it
                result = server.handle(login, msg)
            else:
                result = server.handle(login, msg, liquidity=liquidity)
        except TradeError as exc:
            if server.closure_refusals > closures:
                plan.count(FaultKind.MARKET_CLOSED)
            if liquidity is not None and exc.code == errors.FOK_UNFILLED.mt5:
                plan.count(FaultKind.PARTIAL_FILL)
            if lookup(server.platform, exc.code).classification == Classification.OK:
                # A no-op (MT4 1, MT5 10025) is a success on the wire (docs/protocol.md §4.2).
                return _ok(msg.id, _no_change(msg, exc, server, login))
            return m.Response(id=msg.id, ok=False, error=_error(exc))
        if isinstance(result, m.TradeResult) and result.code == DONE_PARTIAL:
            plan.count(FaultKind.PARTIAL_FILL)
        faults = self.t.faults
        if isinstance(result, m.TradeResult) and faults.success_as_error_next_trade:
            faults.success_as_error_next_trade = False
            name = lookup(server.platform, result.code).name
            error = m.Error(code=result.code, name=name, message=result.comment or "done")
            return m.Response(id=msg.id, ok=False, error=error)
        return _ok(msg.id, result)

    def _failure_result(self) -> m.TradeResult:
        """What a buggy EA answers as a success: a requote, nothing executed."""
        mt4 = self.t.server.platform == Platform.MT4
        return m.TradeResult(
            code=138 if mt4 else 10004,
            order=0,
            volume=0.0,
            price=0.0,
            bid=0.0,
            ask=0.0,
            time_ms=self.t.server.clock.now_ms(),
            comment="Requote",
        )

    def _respond(self, req_id: int, result: Any) -> None:
        self._send(_ok(req_id, result))

    def _refuse(self, req_id: int, code: int, name: str, message: str) -> None:
        """A protocol-level refusal (docs/protocol.md §4.2): nothing was executed."""
        error = m.Error(code=code, name=name, message=message)
        self._send(m.Response(id=req_id, ok=False, error=error))

    # --- events and heartbeat ----------------------------------------------------------------

    def _push_event(self, name: str, payload: Any) -> None:
        if self._state != "ready":
            return
        self._seq += 1
        faults = self.t.faults
        if faults.lose_events > 0 and name != "tick":
            # Dropped (a full send buffer, say) but counted, as §7 requires of an EA: the
            # bridge sees the gap at the next event.
            faults.lose_events -= 1
            return
        self._send(m.Event(seq=self._seq, name=name, data=codec.encode_payload(payload)))

    def _push_tick(self, symbol: str, bid: float, ask: float, time_ms: int) -> None:
        if symbol in self._ticks:
            self._push_event("tick", m.Tick(symbol=symbol, bid=bid, ask=ask, time_ms=time_ms))

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._state == "ready":
            await asyncio.sleep(self._heartbeat_ms / 1000)
            if self.t.faults.frozen:
                continue
            worker = self._trade_worker
            if worker is not None and not worker.done():
                # A real EA is blocked in its trade call (or starts the next one only after
                # checking liveness itself, ``_alive_for_trade``): it neither pings nor times
                # the bridge out meanwhile (§8: the bridge waits for the trade's deadline).
                continue
            if ea.heartbeat_expired(loop.time(), self._last_frame_s, self._heartbeat_ms):
                # §8: a bridge silent for 3 intervals is dead. What arrived meanwhile is read
                # first (one loop turn), so a stall of this process is not taken for silence.
                await asyncio.sleep(0)
                silent_ms = (loop.time() - self._last_frame_s) * 1000
                if self._state == "ready" and silent_ms > ea.MISSED_HEARTBEATS * self._heartbeat_ms:
                    self._trades.clear()
                    self.close(f"nothing received for {silent_ms:.0f} ms", code="heartbeat_timeout")
                    return
            self._send(m.Ping(t_ms=self.t.ea_clock_ms()))

    # --- plumbing ----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _send_hello(self, hello: m.Hello) -> None:
        frame = codec.encode(hello)
        self._hello_body = frame[codec.HEADER_BYTES :]
        if self._link is not None:
            self._link.write(frame)

    def _send(self, msg: m.Message) -> None:
        link = self._link
        if link is None:
            return
        try:
            frame = codec.encode(msg, _SEALED_BODY_MAX)
        except codec.ProtocolError:
            if not (isinstance(msg, m.Response) and msg.ok):
                raise
            # The answer cannot be framed: -5, as an EA must (docs/protocol.md §4.2), and the
            # bridge narrows its request. A read executed nothing.
            self._refuse(msg.id, -5, "too_large", "the answer would exceed the frame limit")
            return
        faults = self.t.faults
        if self._state != "ready" or not (faults.unsealed_frames or faults.swap_next_frames):
            link.write(frame)
        elif faults.unsealed_frames:
            link.write_wire(frame)
        elif self._held is None:
            self._held = link.wire_frame(frame)  # sealed now: number n
        else:
            faults.swap_next_frames = False
            link.write_wire(link.wire_frame(frame) + self._held)  # n+1, then n
            self._held = None

    def close(self, reason: str, *, code: str = "closed") -> None:
        """Send ``bye`` and close. ``bye`` is the last frame (§2.3): nothing is pushed or
        answered after it, though a trade already started still executes."""
        self._send(m.Bye(reason=reason, code=code))
        self._state = "closed"
        if self._link is not None:
            self._link.close()

    def abort(self) -> None:
        if self._link is not None:
            self._link.abort()


def next_slot(last_slot_s: float, now_s: float, period_s: float) -> float:
    """The slot of the snapshot after the one of ``last_slot_s``, on the fixed grid of
    ``period_s`` (docs/protocol.md §5.3). When that slot is already past (the EA was late),
    the latest slot not after now: it is pushed at once, and the slots before it are skipped,
    not made up; the pushes after it keep the grid."""
    slot = last_slot_s + period_s
    if slot < now_s:
        slot += ((now_s - slot) // period_s) * period_s
    return slot


def sync_interval_ms(requested: int) -> int:
    """The interval a ``sync`` request gets: 0 stays 0 (stop), a positive value is raised to
    :data:`SYNC_MIN_INTERVAL_MS`."""
    return max(requested, SYNC_MIN_INTERVAL_MS) if requested > 0 else 0


def _ok(req_id: int, result: Any) -> m.Response:
    return m.Response(id=req_id, ok=True, result=codec.encode_payload(result))


_SEALED_BODY_MAX = m.MAX_FRAME_BYTES - SEAL_BYTES
"""The largest JSON of a frame: every frame after the handshake carries its seal (§3.5)."""


def _error(exc: TradeError) -> m.Error:
    return m.Error(code=exc.code, name=exc.name, message=exc.message, bid=exc.bid, ask=exc.ask)


def _no_change(msg: m.Request, exc: TradeError, server: TradeServer, login: int) -> m.TradeResult:
    """The result of a modify that changed nothing (MT4 1, MT5 10025): what it would have
    answered had it changed something (docs/protocol.md §5.2): ``order`` the ticket,
    ``volume``/``price`` the position's or the pending order's, ``position`` the position's
    identifier on MT5, the prices now."""
    ticket = getattr(msg, "ticket", 0)
    volume = price = 0.0
    position = 0
    bid, ask = exc.bid, exc.ask
    symbol = ""
    if isinstance(msg, m.ModifyPosition):
        found = next((p for p in server.positions(login) if p.ticket == ticket), None)
        if found is not None:
            volume, price, symbol = found.volume, found.price_open, found.symbol
            position = 0 if server.platform == Platform.MT4 else found.identifier
    elif isinstance(msg, m.ModifyOrder):
        pending = next((o for o in server.pending_orders(login) if o.ticket == ticket), None)
        if pending is not None:
            volume, price, symbol = pending.volume_current, pending.price_open, pending.symbol
    if symbol:
        bid, ask, _ = server.feed.quote(symbol)
    return m.TradeResult(
        code=exc.code,
        order=ticket,
        volume=volume,
        price=price,
        bid=bid,
        ask=ask,
        time_ms=server.clock.now_ms(),
        position=position,
        comment=exc.message,
    )
