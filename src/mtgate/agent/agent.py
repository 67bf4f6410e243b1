"""The MetaTrader5 agent: a process beside one MT5 terminal that dials the bridge as its EA.

It speaks protocol v2 with the project's own codec, proofs and frame seals (so framing, JSON
strictness and authentication are the tested code of :mod:`mtgate.protocol`), and turns
requests into calls of the ``MetaTrader5`` package (reference terminal-side.md §5):

- **One worker thread** makes every call to the package, in submission order: it has one IPC
  channel and is not thread-safe. A read that arrives while ``order_send`` runs waits for it,
  as in an EA; reads are not queued behind *waiting* trades (docs/protocol.md §4.3 rule 2).
- **One trade at a time**, in arrival order (§4.3 rule 1), each started only while the session
  is alive (rule 4) and before its deadline (feature ``deadline``, §4.4: the agent's clock is
  its monotonic clock, as ``GetTickCount64`` is the EA's).
- **Results**: ``OrderSendResult`` has no position id and no time, so the agent reads the
  deal (``history_deals_get(ticket=order)``, retried briefly while the terminal books it).
  ``order_send`` returning ``None`` is mapped by :func:`mtgate.agent.mapping.send_failure`:
  invalid parameters are -2 (nothing executed), an IPC failure is outcome-unknown.
- **Events by polling** (the MT4 model of §7; the package has no events): every ``poll_ms``
  the pending orders are compared with the last poll (``order`` events for placed, changed
  and ended ones, the ended read back from the history), new deals follow a history cursor
  (``deal`` events, then one ``account`` per order's deals), and subscribed symbols' quotes
  are pushed when they change (``tick``).
- **Sync** (feature ``sync``, §5.3): ``snapshot`` events on a fixed schedule, the history
  carried by the §5.3 cursor (:class:`mtgate.agent.mapping.HistoryCursor`).
- **Heartbeat** (§8) and reconnection with capped, jittered backoff reset after a session
  ready for 1 s (§2.3).

What a real terminal adds that the tests here cannot show (IPC timings, the terminal's own
history lag, Algo Trading and the "Disable automatic trading via external Python API" option)
is listed in docs/terminals.md with the conformance step that checks each.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import structlog

from mtgate.agent import mapping as mp
from mtgate.domain.backoff import Backoff
from mtgate.domain.enums import Platform
from mtgate.domain.orders import comment_id
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

log = structlog.get_logger("mtgate.agent")


class Unreadable(Exception):
    """A package call returned None (its failure signal): what it would have said is not
    known, so it must never be read as "nothing there"."""

    def __init__(self, what: str, error: tuple[int, str]) -> None:
        super().__init__(f"MetaTrader5.{what} failed ({error[0]}: {error[1]})")


def got(value: T | None, what: str, mt5: Any) -> T:
    """``value``, or Unreadable when the call failed."""
    if value is None:
        code, description = mt5.last_error()
        raise Unreadable(what, (int(code), str(description)))
    return value


T = TypeVar("T")
AGENT_VERSION = "agent-0.1"
SNAPSHOT_HISTORY_MAX = 500
"""Deals and history orders per snapshot at most (docs/protocol.md §5.3)."""
DEAL_LOOKUP_PAUSES_S = (0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)
"""A fill's deal is read back after each of these pauses (about 1.3 s in all) while the
terminal books it: ``order_send`` returns before the history has it, and under load it may
take a while. The wait holds the worker, as an EA's own wait would hold its timer."""
_FAR = 32_535_215_999  # 3000-12-31 23:59:59, the end of MQL's datetime
_POSITION_OPS = (m.ModifyPosition, m.ClosePosition, m.CloseBy)
_SEALED_BODY_MAX = m.MAX_FRAME_BYTES - SEAL_BYTES


@dataclass(frozen=True)
class AgentConfig:
    terminal_id: str
    key: Secret
    poll_ms: int = 100
    """How often orders, deals and subscribed quotes are polled for events."""
    handshake_timeout_s: float = 5.0
    sync: bool = True
    positions: bool = True
    deadlines: bool = True


class Mt5Worker:
    """Every call to the ``MetaTrader5`` package, on one thread, in submission order."""

    def __init__(self, mt5: Any) -> None:
        self.mt5 = mt5
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mt5")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class Agent:
    """One terminal's agent: dials the bridge until :meth:`stop`, reconnecting after drops."""

    def __init__(self, mt5: Any, config: AgentConfig) -> None:
        self.mt5 = mt5
        self.config = config
        self.worker = Mt5Worker(mt5)
        self.connected = asyncio.Event()
        self.sessions = 0
        self.dials = 0
        self.last_bye = ""
        self.bridge_features: frozenset[str] = frozenset()
        self._session: _Session | None = None
        self._stop = asyncio.Event()

    @staticmethod
    def ea_clock_ms() -> int:
        return int(time.monotonic() * 1000)

    async def start_terminal(self) -> None:
        """``initialize()`` the package; raises RuntimeError with ``last_error()`` if it fails."""
        ok = await self.worker.run(self.mt5.initialize)
        if not ok:
            raise RuntimeError(f"MetaTrader5.initialize failed: {self.mt5.last_error()}")

    async def run(self, host: str, port: int, *, backoff: Backoff | None = None) -> None:
        backoff = backoff or Backoff(base_s=0.05, cap_s=5.0, rng=random.Random())
        while not self._stop.is_set():
            ready_at: float | None = None
            try:
                closed = await self.connect(host, port)
                await closed.wait()
                if self._session is not None:
                    ready_at = self._session.ready_at
            except (OSError, RuntimeError) as exc:
                log.warning("agent could not connect", error=repr(exc))
            self.connected.clear()
            if ready_at is not None and asyncio.get_running_loop().time() - ready_at >= 1.0:
                backoff.reset()  # docs/protocol.md §2.3
            if self._stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next_delay_s()):
                    await self._stop.wait()

    async def connect(self, host: str, port: int) -> asyncio.Event:
        facts = await self.worker.run(self._hello_facts)
        loop = asyncio.get_running_loop()
        session = _Session(self, facts)
        self._session = session
        self.dials += 1
        await loop.create_connection(lambda: FramedLink(lambda: session), host, port)
        return session.closed

    def stop(self) -> None:
        self._stop.set()
        if self._session is not None:
            self._session.close("agent stopping", code="shutdown")

    def drop(self) -> None:
        if self._session is not None:
            self._session.abort()

    async def aclose(self) -> None:
        self.stop()
        if self._session is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._session.closed.wait()
        await asyncio.to_thread(self.worker.close)

    def _hello_facts(self) -> tuple[Any, Any]:
        account, terminal = self.mt5.account_info(), self.mt5.terminal_info()
        if account is None or terminal is None:
            raise RuntimeError(f"the terminal does not answer: {self.mt5.last_error()}")
        return account, terminal


class _Session:
    """The agent's end of one connection (a FrameHandler)."""

    def __init__(self, agent: Agent, facts: tuple[Any, Any]) -> None:
        self.a = agent
        self.mt5 = agent.mt5
        self.closed = asyncio.Event()
        self.ready_at: float | None = None
        self._account, self._terminal = facts
        self._link: FramedLink | None = None
        self._nonce = new_nonce()
        self._hello_body = b""
        self._state = "hello"
        self._seq = 0
        self._last_request_id = 0
        self._heartbeat_ms = 1000
        self._last_frame_s = 0.0
        self._last_frame_mono = time.monotonic()
        self._trades: collections.deque[m.Request] = collections.deque()
        self._trade_task: asyncio.Task[None] | None = None
        self._trading = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sync_task: asyncio.Task[None] | None = None
        self._ticks: frozenset[str] = frozenset()
        """Subscribed symbols: replaced whole on the loop, only read by the worker."""
        self._tick_seen: dict[str, tuple[float, float, int]] = {}
        """The last quote pushed per symbol: the worker's alone."""
        self._loop = asyncio.get_running_loop()
        self._orders: dict[int, m.OrderReport] = {}
        self._deal_cursor: mp.HistoryCursor | None = None
        self._order_cursor: mp.HistoryCursor | None = None
        self._server_ms = 0

    # --- FrameHandler ------------------------------------------------------------------------

    def on_connected(self, link: FramedLink) -> None:
        self._link = link
        loop = asyncio.get_running_loop()
        self._last_frame_s = loop.time()
        self._last_frame_mono = time.monotonic()
        loop.call_later(self.a.config.handshake_timeout_s, self._handshake_expired)
        acct = self._account
        hello = m.Hello(
            v=m.PROTOCOL_VERSION,
            platform=Platform.MT5.value,
            build=int(self._terminal.build),
            login=int(acct.login),
            server=acct.server,
            company=acct.company,
            currency=acct.currency,
            leverage=int(acct.leverage),
            margin_mode=int(acct.margin_mode),
            terminal_id=self.a.config.terminal_id,
            ea_version=AGENT_VERSION,
            nonce=self._nonce,
            features=self._features(),
        )
        frame = codec.encode(hello)
        self._hello_body = frame[codec.HEADER_BYTES :]
        link.write(frame)

    def _features(self) -> list[str]:
        cfg = self.a.config
        out = [m.POSITIONS_FEATURE] if cfg.positions else []
        if cfg.sync:
            out.append(m.SYNC_FEATURE)
        if cfg.deadlines:
            out.append(m.DEADLINE_FEATURE)
        return out

    def on_frame(self, body: bytes) -> None:
        self._last_frame_s = asyncio.get_running_loop().time()
        self._last_frame_mono = time.monotonic()  # the worker's clock (see _gate)
        try:
            msg = codec.decode_for_terminal(body)
        except codec.ProtocolError as exc:
            self.on_protocol_error(exc)
            return
        if self._state == "ready":
            self._on_message(msg)
        elif isinstance(msg, m.Bye):
            self.a.last_bye = f"{msg.code}: {msg.reason}"
            self.abort()
        elif self._state == "hello" and isinstance(msg, m.Welcome):
            self._on_welcome(msg, body)
        elif self._state == "auth" and isinstance(msg, m.Ready):
            self._on_ready()
        else:
            self.close(f"{type(msg).__name__} is not valid during the handshake", code="not_ready")

    def on_protocol_error(self, error: codec.ProtocolError) -> None:
        self.close(f"protocol error: {error.message}", code=error.code)

    def on_closed(self, exc: Exception | None) -> None:
        self._state = "closed"
        for task in self._tasks:
            task.cancel()
        self._trades.clear()  # not started: they die with the session (§4.3)
        self.a.connected.clear()
        worker = self._trade_task
        if worker is not None and not worker.done():
            worker.add_done_callback(lambda _: self.closed.set())
        else:
            self.closed.set()

    # --- handshake (docs/protocol.md §3) ----------------------------------------------------

    def _handshake_expired(self) -> None:
        if self._state not in ("ready", "closed") and self._link is not None and self._link.open:
            self.close("ready not received in time", code="handshake_timeout")

    def _on_welcome(self, msg: m.Welcome, body: bytes) -> None:
        cfg = self.a.config
        if msg.v != m.PROTOCOL_VERSION:
            self.close(f"protocol version {msg.v} is not supported", code="unsupported_version")
            return
        expected = bridge_proof(cfg.key, cfg.terminal_id, self._nonce, msg.nonce)
        if not proofs_match(expected, msg.proof):
            self.close("bridge failed to prove the terminal key", code="auth_failed")
            return
        refusal = ea.welcome_refusal(msg, frozenset(self._features()))
        if refusal is not None:
            self.close(refusal, code="invalid_message")
            return
        self._heartbeat_ms = msg.heartbeat_ms
        self.a.bridge_features = frozenset(msg.features)
        self._state = "auth"
        self._send(m.Auth(proof=ea_proof(cfg.key, cfg.terminal_id, self._nonce, msg.nonce)))
        if self._link is not None:  # every frame from here on is sealed (§3.5)
            frames = session_key(
                cfg.key, cfg.terminal_id, self._nonce, msg.nonce, self._hello_body, body
            )
            self._link.seal(FrameSeal(frames, TO_BRIDGE), FrameSeal(frames, TO_EA), plain_bye=True)

    def _on_ready(self) -> None:
        self._state = "ready"
        self.ready_at = asyncio.get_running_loop().time()
        self.a.sessions += 1
        if m.DEADLINE_FEATURE in self.a.bridge_features:
            self._send(m.Ping(t_ms=self.a.ea_clock_ms()))  # §4.4: the clock before any trade
        self._spawn(self._start_polling())
        self._spawn(self._heartbeat_loop())
        self.a.connected.set()

    # --- requests (§4) ----------------------------------------------------------------------

    def _on_message(self, msg: Any) -> None:
        if isinstance(msg, m.Request):
            if msg.id <= self._last_request_id:
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
            self.a.last_bye = f"{msg.code}: {msg.reason}"
            self.abort()
        elif isinstance(msg, m.Sync):
            self._start_sync(msg)
        elif isinstance(msg, m.Subscribe):
            self._spawn(self._subscribe(msg))
        elif isinstance(msg, m.TRADE_OPS):
            self._submit_trade(msg)
        elif isinstance(msg, m.READ_OPS):
            invalid = ea.invalid_request(msg, Platform.MT5)
            if invalid is not None:
                self._refuse(msg.id, -2, "invalid_request", invalid)
            else:
                self._spawn(self._read(msg))
        else:
            self.close(
                f"{type(msg).__name__} is not valid after the handshake", code="invalid_message"
            )

    async def _read(self, msg: m.Request) -> None:
        response = await self.a.worker.run(self._answer_read_safely, msg)
        self._send(response)

    async def _subscribe(self, msg: m.Subscribe) -> None:
        known = await self.a.worker.run(self._known_symbols, list(msg.ticks))
        self._ticks = frozenset(known)
        self._send(_ok(msg.id, m.Subscribed(ticks=sorted(known))))

    def _submit_trade(self, msg: m.Request) -> None:
        invalid = ea.invalid_request(msg, Platform.MT5)
        if invalid is not None:
            self._refuse(msg.id, -2, "invalid_request", invalid)
            return
        if isinstance(msg, _POSITION_OPS) and m.POSITIONS_FEATURE not in self.a.bridge_features:
            self._refuse(msg.id, -1, "unknown_operation", "position operations are not supported")
            return
        if getattr(msg, "deadline_ms", 0) and m.DEADLINE_FEATURE not in self.a.bridge_features:
            self.close("deadline_ms is not a field of this protocol", code="invalid_message")
            return
        self._trades.append(msg)
        if self._trade_task is None or self._trade_task.done():
            self._trade_task = asyncio.get_running_loop().create_task(self._run_trades())

    async def _run_trades(self) -> None:
        while self._trades:
            msg = self._trades.popleft()
            if not self._alive_for_trade():
                return
            deadline = getattr(msg, "deadline_ms", 0)
            now = self.a.ea_clock_ms()
            if deadline and now >= deadline:
                self._refuse(
                    msg.id,
                    -6,
                    "deadline_passed",
                    f"deadline {deadline} passed ({now - deadline} ms ago)",
                )
                continue
            self._trading = True
            try:
                response = await self.a.worker.run(self._trade, msg)
            finally:
                self._trading = False
            if response is None:  # its turn came after the session ended: dropped (§4.3)
                self._trades.clear()
                return
            self._send(response)  # a trade that started completes; its answer if still open

    def _alive_for_trade(self) -> bool:
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

    # --- sync (§5.3) --------------------------------------------------------------------------

    def _start_sync(self, msg: m.Sync) -> None:
        if m.SYNC_FEATURE not in self.a.bridge_features:
            self._refuse(msg.id, -1, "unknown_operation", "sync is not supported")
            return
        if msg.interval_ms < 0 or msg.since_ms < 0:
            self._refuse(msg.id, -2, "invalid_request", "interval_ms and since_ms must be >= 0")
            return
        if self._sync_task is not None:
            self._sync_task.cancel()
            self._sync_task = None
        interval = max(msg.interval_ms, 100) if msg.interval_ms > 0 else 0
        self._send(_ok(msg.id, m.SyncStarted(interval_ms=interval)))
        if interval:
            cursors = (mp.HistoryCursor(msg.since_ms), mp.HistoryCursor(msg.since_ms))
            self._sync_task = self._spawn(self._sync_loop(interval, cursors))

    async def _sync_loop(self, interval_ms: int, cursors: tuple[mp.HistoryCursor, ...]) -> None:
        loop = asyncio.get_running_loop()
        period = interval_ms / 1000
        due = loop.time()
        while self._state == "ready":
            snapshot = await self.a.worker.run(self._snapshot, *cursors)
            if snapshot is not None:
                self._push("snapshot", snapshot)
            due += period
            now = loop.time()
            if due < now:  # late: skip the missed slots, keep the grid
                due += ((now - due) // period + 1) * period
            await asyncio.sleep(due - now)

    # --- events and heartbeat -----------------------------------------------------------------

    async def _start_polling(self) -> None:
        await self.a.worker.run(self._prime)
        period = self.a.config.poll_ms / 1000
        while self._state == "ready":
            await asyncio.sleep(period)
            for name, payload in await self.a.worker.run(self._poll):
                self._push(name, payload)

    def _push(self, name: str, payload: Any) -> None:
        if self._state != "ready":
            return
        self._seq += 1
        self._send(m.Event(seq=self._seq, name=name, data=codec.encode_payload(payload)))

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._state == "ready":
            await asyncio.sleep(self._heartbeat_ms / 1000)
            if self._trading:
                continue  # blocked in a trade call, as an EA is (§8)
            if ea.heartbeat_expired(loop.time(), self._last_frame_s, self._heartbeat_ms):
                await asyncio.sleep(0)  # read what arrived first
                silent_ms = (loop.time() - self._last_frame_s) * 1000
                if self._state == "ready" and silent_ms > ea.MISSED_HEARTBEATS * self._heartbeat_ms:
                    self._trades.clear()
                    self.close(f"nothing received for {silent_ms:.0f} ms", code="heartbeat_timeout")
                    return
            self._send(m.Ping(t_ms=self.a.ea_clock_ms()))

    # --- plumbing -----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A failure of the agent's own code: the session cannot be trusted to go on.
            log.error("agent task failed", error=repr(task.exception()))
            self.close("agent internal error; the session starts again", code="shutdown")

    def _send(self, msg: m.Message) -> None:
        link = self._link
        if link is None or not link.open:
            return
        try:
            frame = codec.encode(msg, _SEALED_BODY_MAX)
        except codec.ProtocolError:
            if not (isinstance(msg, m.Response) and msg.ok):
                raise
            self._refuse(msg.id, -5, "too_large", "the answer would exceed the frame limit")
            return
        link.write(frame)

    def _refuse(self, req_id: int, code: int, name: str, message: str) -> None:
        self._send(
            m.Response(id=req_id, ok=False, error=m.Error(code=code, name=name, message=message))
        )

    def close(self, reason: str, *, code: str = "closed") -> None:
        if self._state == "closed":
            return
        self._send(m.Bye(reason=reason, code=code))
        self._state = "closed"
        if self._link is not None:
            self._link.close()

    def abort(self) -> None:
        if self._link is not None:
            self._link.abort()

    # === on the worker thread: every MetaTrader5 call is below ================================

    def _err(self) -> tuple[int, str]:
        code, description = self.mt5.last_error()
        return int(code), str(description)

    def _see(self, time_ms: int) -> None:
        self._server_ms = max(self._server_ms, int(time_ms))

    def _server_now_ms(self, symbol: str = "") -> int:
        """The trade server's time as the terminal last heard it: the newest quote's time of
        ``symbol`` (or of any Market Watch symbol), never the machine's clock."""
        names = [symbol] if symbol else []
        if not names:
            found = self.mt5.symbols_get()
            names = [s.name for s in found[:1]] if found else []
        for name in names:
            tick = self.mt5.symbol_info_tick(name)
            if tick is not None:
                self._see(tick.time_msc)
        return self._server_ms

    def _known_symbols(self, names: list[str]) -> list[str]:
        return [n for n in dict.fromkeys(names) if self.mt5.symbol_info(n) is not None]

    def _answer_read_safely(self, msg: m.Request) -> m.Response:
        """A read whose package call failed is answered -3 (the bridge asks again), never
        with a partial or empty answer: "not found" must mean not found."""
        try:
            return self._answer_read(msg)
        except Unreadable as exc:
            error = m.Error(code=-3, name="not_ready", message=str(exc))
            return m.Response(id=msg.id, ok=False, error=error)

    def _answer_read(self, msg: m.Request) -> m.Response:
        mt5 = self.mt5
        if isinstance(msg, m.AccountInfo):
            account = mt5.account_info()
            if account is None:
                return self._read_failed(msg)
            return _ok(msg.id, mp.account_report(account))
        if isinstance(msg, m.Symbols):
            if msg.names:
                infos = [
                    i for n in dict.fromkeys(msg.names) if (i := mt5.symbol_info(n)) is not None
                ]
            else:
                infos = list(got(mt5.symbols_get(), "symbols_get", mt5))
            return _ok(msg.id, [mp.symbol_spec(i) for i in infos])
        if isinstance(msg, m.GetTick):
            tick = mt5.symbol_info_tick(msg.symbol)
            if tick is None:  # §11: reads report MQL5 runtime errors
                error = m.Error(code=4301, name="ERR_MARKET_UNKNOWN_SYMBOL", message=msg.symbol)
                return m.Response(id=msg.id, ok=False, error=error)
            self._see(tick.time_msc)
            return _ok(msg.id, mp.tick_report(msg.symbol, tick))
        if isinstance(msg, m.Positions):
            found = mt5.positions_get(symbol=msg.symbol) if msg.symbol else mt5.positions_get()
            if found is None:
                return self._read_failed(msg)
            return _ok(msg.id, [mp.position_report(p) for p in found])
        if isinstance(msg, m.Orders):
            found = mt5.orders_get(symbol=msg.symbol) if msg.symbol else mt5.orders_get()
            if found is None:
                return self._read_failed(msg)
            return _ok(msg.id, [mp.order_report(o) for o in found])
        if isinstance(msg, m.OrderGet):
            return _ok(msg.id, self._lookup(msg))
        if isinstance(msg, m.History):
            lo = msg.since_ms // 1000
            hi = (msg.until_ms // 1000) if msg.until_ms else _FAR
            orders = got(mt5.history_orders_get(lo, hi), "history_orders_get", mt5)
            deals = got(mt5.history_deals_get(lo, hi), "history_deals_get", mt5)
            until = msg.until_ms or _FAR * 1000 + 999
            return _ok(
                msg.id,
                m.HistoryReport(
                    orders=[
                        mp.order_report(o)
                        for o in orders
                        if msg.since_ms <= (o.time_done_msc or o.time_setup_msc) <= until
                    ],
                    deals=[mp.deal_report(d) for d in deals if msg.since_ms <= d.time_msc <= until],
                ),
            )
        raise AssertionError(f"not a read: {type(msg).__name__}")

    def _read_failed(self, msg: m.Request) -> m.Response:
        code, description = self._err()
        error = m.Error(code=-3, name="not_ready", message=f"MetaTrader5 ({code}): {description}")
        return m.Response(id=msg.id, ok=False, error=error)

    def _lookup(self, msg: m.OrderGet) -> m.Lookup:
        """docs/protocol.md §9: everything under a ticket, or under ``mg:<client id>``."""
        mt5 = self.mt5
        if msg.ticket:
            t = int(msg.ticket)
            orders = got(mt5.orders_get(ticket=t), "orders_get", mt5)
            every = got(mt5.positions_get(), "positions_get", mt5)
            positions = [p for p in every if t in (p.ticket, p.identifier)]
            history = got(mt5.history_orders_get(ticket=t), "history_orders_get", mt5)
            by_order = got(mt5.history_deals_get(ticket=t), "history_deals_get", mt5)
            deals = {d.ticket: d for d in by_order}
            by_position = got(mt5.history_deals_get(position=t), "history_deals_get", mt5)
            deals.update({d.ticket: d for d in by_position})
            return m.Lookup(
                orders=[mp.order_report(o) for o in orders],
                positions=[mp.position_report(p) for p in positions],
                history_orders=[mp.order_report(o) for o in history],
                deals=[mp.deal_report(d) for d in sorted(deals.values(), key=lambda d: d.ticket)],
            )
        cid = msg.client_id

        def mine(comment: str) -> bool:  # §9: only the prefix and the id's characters count
            return comment_id(comment) == cid

        orders = [o for o in got(mt5.orders_get(), "orders_get", mt5) if mine(o.comment)]
        every = got(mt5.positions_get(), "positions_get", mt5)
        history_all = got(mt5.history_orders_get(0, _FAR), "history_orders_get", mt5)
        history = [o for o in history_all if mine(o.comment)]
        # A deal is the client's when it says so or when its order is: a broker may rewrite
        # deal comments, never the order a deal belongs to.
        tickets = {o.ticket for o in (*orders, *history)}
        # A position is the client's when its comment says so or its identifier is one of
        # the client's orders (the order that opened it).
        positions = [p for p in every if mine(p.comment) or p.identifier in tickets]
        matched = [
            d
            for d in got(mt5.history_deals_get(0, _FAR), "history_deals_get", mt5)
            if mine(d.comment) or d.order in tickets
        ]
        return m.Lookup(
            orders=[mp.order_report(o) for o in orders],
            positions=[mp.position_report(p) for p in positions],
            history_orders=[mp.order_report(o) for o in history],
            deals=[mp.deal_report(d) for d in matched],
        )

    def _trade(self, msg: m.Request) -> m.Response | None:
        """One trade, start to answer (on the worker thread); None: dropped unexecuted and
        unanswered (the session ended before its turn, §4.3 rule 4)."""
        go, answer = self._gate(msg)
        if not go:
            return answer
        try:
            return self._trade_calls(msg)
        except Unreadable as exc:  # a read before order_send failed: nothing was sent
            error = m.Error(code=-3, name="not_ready", message=f"{exc}; nothing was sent")
            return m.Response(id=msg.id, ok=False, error=error)
        except Exception as exc:  # the package raised: it may have executed
            log.error("MetaTrader5 call raised during a trade", error=repr(exc))
            return m.Response(id=msg.id, ok=False, error=mp.send_failure(-1, repr(exc)))

    def _gate(self, msg: m.Request) -> tuple[bool, m.Response | None]:
        """§4.3 rule 4 and §4.4, checked on the worker right before the trade's first call
        (it may have waited behind reads and polls): the session alive, a frame received
        within 3 heartbeat intervals, the deadline not reached. (True, None): go; (False,
        answer): not started, ``answer`` sent if not None."""
        link = self._link
        if self._state != "ready" or link is None or not link.open:
            return False, None
        silent_s = time.monotonic() - self._last_frame_mono
        if silent_s > ea.MISSED_HEARTBEATS * self._heartbeat_ms / 1000:
            reason = f"nothing received for {silent_s * 1000:.0f} ms"
            self._loop.call_soon_threadsafe(self._expire_for_silence, reason)
            return False, None
        deadline = getattr(msg, "deadline_ms", 0)
        now = self.a.ea_clock_ms()
        if deadline and now >= deadline:
            error = m.Error(code=-6, name="deadline_passed",
                            message=f"deadline {deadline} passed ({now - deadline} ms ago)")  # fmt: skip
            return False, m.Response(id=msg.id, ok=False, error=error)
        return True, None

    def _expire_for_silence(self, reason: str) -> None:
        self._trades.clear()
        self.close(reason, code="heartbeat_timeout")

    def _trade_calls(self, msg: m.Request) -> m.Response:
        mt5 = self.mt5
        position = by = pending = None
        if isinstance(msg, m.MarketOrder | m.PendingOrder):
            info = mt5.symbol_info(msg.symbol)
            filling = mp.filling_for(msg, info) if info is not None else mp.ORDER_FILLING_RETURN
            if isinstance(msg, m.MarketOrder):
                request = mp.market_request(msg, filling)
                if not msg.price and mp.needs_price(info):
                    request["price"] = self._market_price(msg.symbol, buy=msg.order_type == 0)
            else:
                request = mp.pending_request(msg, filling)
        elif isinstance(msg, m.ModifyOrder | m.CancelOrder):
            found = got(mt5.orders_get(ticket=int(msg.ticket)), "orders_get", mt5)
            pending = found[0] if found else None
            if isinstance(msg, m.ModifyOrder):
                request = mp.modify_order_request(msg)
            else:
                request = mp.cancel_request(msg)
        elif isinstance(msg, m.CloseBy):
            position, by = self._position(msg.ticket), self._position(msg.opposite)
            if position is None or by is None:
                return self._no_position(msg, msg.ticket if position is None else msg.opposite)
            request = mp.close_by_request(msg)
        else:
            assert isinstance(msg, m.ModifyPosition | m.ClosePosition)
            position = self._position(msg.ticket)
            if position is None:
                return self._no_position(msg, msg.ticket)
            if isinstance(msg, m.ModifyPosition):
                request = mp.sltp_request(msg, position)
            else:
                info = mt5.symbol_info(position.symbol)
                filling = self._close_filling(info)
                request = mp.close_request(msg, position, filling)
                if not msg.price and mp.needs_price(info):  # a close sells a buy at the Bid
                    buy_back = int(position.type) == 1
                    request["price"] = self._market_price(position.symbol, buy=buy_back)
        result = mt5.order_send(request)
        if result is None:
            code, description = self._err()
            return m.Response(id=msg.id, ok=False, error=mp.send_failure(code, description))
        retcode = int(result.retcode)
        if retcode == mp.NO_CHANGES:
            return _ok(msg.id, self._unchanged(msg, result, position, pending))
        if retcode not in mp.DONE_CODES:
            return m.Response(id=msg.id, ok=False, error=mp.refusal(result))
        return _ok(msg.id, self._result(msg, result, position, by, pending))

    def _market_price(self, symbol: str, *, buy: bool) -> float:
        """The current Ask (buy) or Bid (sell): protocol price 0 means "at market" (§5.2),
        which Request and Instant execution need spelled out."""
        tick = got(self.mt5.symbol_info_tick(symbol), "symbol_info_tick", self.mt5)
        return float(tick.ask if buy else tick.bid)

    def _close_filling(self, info: Any) -> int:
        if info is None:
            return mp.ORDER_FILLING_RETURN
        probe = m.MarketOrder(id=0, symbol=info.name, order_type=0, volume=0.0, magic=0, comment="")
        return mp.filling_for(probe, info)

    def _position(self, ticket: int) -> Any:
        """The open position ``ticket``, or None when it is not open; Unreadable when the
        terminal did not answer (never taken for "not open")."""
        found = got(self.mt5.positions_get(ticket=int(ticket)), "positions_get", self.mt5)
        return found[0] if found else None

    def _no_position(self, msg: m.Request, ticket: int) -> m.Response:
        """The position is not open: 10036 if it was and has closed (a close intent treats
        that as done, §11), else the trade server's 10013 for an unknown ticket."""
        mt5 = self.mt5
        held = got(mt5.positions_get(), "positions_get", mt5)
        holder = next((p for p in held if p.identifier == ticket), None)
        if holder is not None:  # a netting position whose ticket changed (reversal)
            error = m.Error(code=10013, name="INVALID",
                            message=f"{ticket} is the identifier of position {holder.ticket}, not its ticket")  # fmt: skip
            return m.Response(id=msg.id, ok=False, error=error)
        deals = got(mt5.history_deals_get(position=int(ticket)), "history_deals_get", mt5)
        if deals:
            error = m.Error(
                code=10036, name="POSITION_CLOSED", message=f"position {ticket} is already closed"
            )
        else:
            error = m.Error(code=10013, name="INVALID", message=f"no position {ticket}")
        return m.Response(id=msg.id, ok=False, error=error)

    def _deal_of(self, order: int) -> Any:
        for pause in (0.0, *DEAL_LOOKUP_PAUSES_S):
            if pause:
                time.sleep(pause)
            found = self.mt5.history_deals_get(ticket=int(order)) or ()
            if found:
                return max(found, key=lambda d: d.ticket)
        return None

    def _result(
        self, msg: m.Request, r: Any, position: Any, by: Any, pending: Any
    ) -> m.TradeResult:
        bid, ask = float(r.bid), float(r.ask)
        order, deal_ticket, volume, price = (
            int(r.order),
            int(r.deal),
            float(r.volume),
            float(r.price),
        )
        pos_id = remainder = 0
        symbol = getattr(msg, "symbol", "") or (position.symbol if position is not None else "")
        time_ms = 0
        if isinstance(msg, m.MarketOrder | m.ClosePosition | m.CloseBy):
            deal = self._deal_of(order) if order else None
            if deal is not None:
                pos_id, time_ms = int(deal.position_id), int(deal.time_msc)
                deal_ticket = deal_ticket or int(deal.ticket)
                self._see(time_ms)
        if isinstance(msg, m.PendingOrder):
            placed = self.mt5.orders_get(ticket=order) or ()
            if placed:
                time_ms = int(placed[0].time_setup_msc)
        elif isinstance(msg, m.ModifyOrder | m.CancelOrder):
            order = int(msg.ticket)
            after = self.mt5.orders_get(ticket=order) or ()
            ref = after[0] if after else pending
            if ref is not None:
                volume, price, symbol = float(ref.volume_current), float(ref.price_open), ref.symbol
        elif isinstance(msg, m.ModifyPosition):
            order, pos_id = int(msg.ticket), int(position.identifier)
            volume, price = float(position.volume), float(position.price_open)
        elif isinstance(msg, m.ClosePosition):
            pos_id = pos_id or int(position.identifier)
            # MT5 (§11): a partial close keeps the position's ticket; a full one leaves none.
            if 0 < msg.volume < float(position.volume) - 1e-9:
                remainder = int(position.ticket)
        elif isinstance(msg, m.CloseBy):
            pos_id = int(position.identifier)
            volume, price = min(float(position.volume), float(by.volume)), float(by.price_open)
            # The larger of the two survives with its own ticket (§11); equal: none left.
            left = float(position.volume) - float(by.volume)
            if abs(left) > 1e-9:
                remainder = int(position.ticket if left > 0 else by.ticket)
        if not time_ms or not (bid and ask):
            tick = self.mt5.symbol_info_tick(symbol) if symbol else None
            if tick is not None:
                time_ms = time_ms or int(tick.time_msc)
                bid, ask = (bid, ask) if bid and ask else (float(tick.bid), float(tick.ask))
        return m.TradeResult(
            code=int(r.retcode),
            order=order,
            volume=volume,
            price=price,
            bid=bid,
            ask=ask,
            time_ms=time_ms or self._server_now_ms(symbol),
            deal=deal_ticket,
            position=pos_id,
            comment=str(r.comment),
            remainder=remainder,
        )

    def _unchanged(self, msg: m.Request, r: Any, position: Any, pending: Any) -> m.TradeResult:
        """10025 NO_CHANGES is a success on the wire (§4.2): what it would have answered."""
        ticket = int(getattr(msg, "ticket", 0))
        volume = price = 0.0
        pos_id = 0
        symbol = ""
        if position is not None:
            volume, price, symbol = (
                float(position.volume),
                float(position.price_open),
                position.symbol,
            )
            pos_id = int(position.identifier)
        elif pending is not None:
            volume, price, symbol = (
                float(pending.volume_current),
                float(pending.price_open),
                pending.symbol,
            )
        tick = self.mt5.symbol_info_tick(symbol) if symbol else None
        bid, ask = (
            (float(tick.bid), float(tick.ask)) if tick is not None else (float(r.bid), float(r.ask))
        )
        time_ms = int(tick.time_msc) if tick is not None else self._server_now_ms()
        return m.TradeResult(
            code=mp.NO_CHANGES, order=ticket, volume=volume, price=price, bid=bid, ask=ask,
            time_ms=time_ms, position=pos_id, comment=str(r.comment),
        )  # fmt: skip

    # --- polling (events) and snapshots -------------------------------------------------------

    def _prime(self) -> None:
        """At ready: what exists now is not an event (§7: no replay between sessions)."""
        self._orders = {o.ticket: mp.order_report(o) for o in self.mt5.orders_get() or ()}
        now = self._server_now_ms()
        self._deal_cursor = mp.HistoryCursor(now)
        self._deal_cursor.take(self._deal_records(self._deal_cursor), 1 << 30)
        self._order_cursor = mp.HistoryCursor(now)
        self._order_cursor.take(self._order_records(self._order_cursor), 1 << 30)

    def _deal_records(self, cursor: mp.HistoryCursor) -> list[tuple[int, int, Any]]:
        found = self.mt5.history_deals_get(cursor.select_from() // 1000, _FAR) or ()
        return [(int(d.time_msc), int(d.ticket), d) for d in found]

    def _order_records(self, cursor: mp.HistoryCursor) -> list[tuple[int, int, Any]]:
        found = self.mt5.history_orders_get(cursor.select_from() // 1000, _FAR) or ()
        return [(int(o.time_done_msc or o.time_setup_msc), int(o.ticket), o) for o in found]

    def _poll(self) -> list[tuple[str, Any]]:
        """The events since the last poll: ``order`` for pending orders placed or changed
        (their price_current aside) and for pending orders that reached the history (filled,
        cancelled, expired, rejected: also those never seen pending between two polls), then
        each new deal with one ``account`` after each order's deals, then quotes."""
        out: list[tuple[str, Any]] = []
        mt5 = self.mt5
        found = mt5.orders_get()
        if found is not None:  # a failed read changes nothing: the next poll sees it all
            now_orders = {o.ticket: mp.order_report(o) for o in found}
            for ticket, report in now_orders.items():
                known = self._orders.get(ticket)
                if known is None or _order_state(known) != _order_state(report):
                    out.append(("order", report))
            self._orders = now_orders
        if self._order_cursor is not None:
            ended = self._order_cursor.take(self._order_records(self._order_cursor), 1 << 30)
            for o in ended:
                if mp.is_pending_type(int(o.type)):  # market and close orders push none (§7)
                    out.append(("order", mp.order_report(o)))
        if self._deal_cursor is not None:
            deals = self._deal_cursor.take(self._deal_records(self._deal_cursor), 1 << 30)
            for i, d in enumerate(deals):
                out.append(("deal", mp.deal_report(d)))
                self._see(d.time_msc)
                if i + 1 == len(deals) or deals[i + 1].order != d.order:
                    account = mt5.account_info()
                    if account is not None:
                        out.append(("account", mp.account_report(account)))
        subscribed = self._ticks
        for symbol in list(self._tick_seen.keys() - subscribed):
            del self._tick_seen[symbol]
        for symbol in sorted(subscribed):
            tick = mt5.symbol_info_tick(symbol)
            if tick is None:
                continue
            seen = (float(tick.bid), float(tick.ask), int(tick.time_msc))
            if seen != self._tick_seen.get(symbol):
                self._tick_seen[symbol] = seen
                out.append(("tick", mp.tick_report(symbol, tick)))
        return out

    def _snapshot(self, deals: mp.HistoryCursor, orders: mp.HistoryCursor) -> m.Snapshot | None:
        mt5 = self.mt5
        account = mt5.account_info()
        positions = mt5.positions_get()
        pending = mt5.orders_get()
        if account is None or positions is None or pending is None:
            return None  # the terminal did not answer: no snapshot this cycle
        symbol = positions[0].symbol if positions else (pending[0].symbol if pending else "")
        return m.Snapshot(
            time_ms=self._server_now_ms(symbol),
            account=mp.account_report(account),
            positions=[mp.position_report(p) for p in positions],
            orders=[mp.order_report(o) for o in pending],
            deals=[
                mp.deal_report(d)
                for d in deals.take(self._deal_records(deals), SNAPSHOT_HISTORY_MAX)
            ],
            history_orders=[
                mp.order_report(o)
                for o in orders.take(self._order_records(orders), SNAPSHOT_HISTORY_MAX)
            ],
        )


def _order_state(report: m.OrderReport) -> m.OrderReport:
    """What makes a pending order's ``order`` event: all but the moving current price."""
    return msgspec.structs.replace(report, price_current=0.0)


def _ok(req_id: int, result: Any) -> m.Response:
    return m.Response(id=req_id, ok=True, result=codec.encode_payload(result))
