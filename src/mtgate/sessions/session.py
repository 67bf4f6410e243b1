"""One terminal's session, bridge side: handshake, correlation, deadlines, events, heartbeat.

The session only moves frames and keeps the terminal's cached view (account, symbols, ticks);
what the frames mean for orders is the execution layer's business, reached through
:class:`SessionHost`.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol

from mtgate import logs
from mtgate.domain.clock import Clock
from mtgate.domain.enums import MarginMode, Platform
from mtgate.domain.limits import INT64_MAX, SERVER_MAX
from mtgate.domain.symbols import SymbolSpec
from mtgate.health.meter import TerminalMeter
from mtgate.protocol import auth, codec
from mtgate.protocol import messages as m
from mtgate.protocol.link import FramedLink
from mtgate.sessions.errors import (
    RequestTimeout,
    SessionClosed,
    TerminalRejected,
    TradeWithdrawn,
)

_SEALED_BODY_MAX: Final = m.MAX_FRAME_BYTES - auth.SEAL_BYTES
"""The largest JSON of a request: after the handshake every frame carries its seal."""
log = logs.get("mtgate.session")


class SessionState(enum.StrEnum):
    HANDSHAKE = "handshake"
    AUTHENTICATING = "authenticating"
    SYNCING = "syncing"
    READY = "ready"
    CLOSED = "closed"


class AccountKey(NamedTuple):
    """An account: its login on a trade server. A tuple, so that the dictionaries keyed by
    it on the order path (routing, doubt, sessions) hash it in C."""

    login: int
    server: str

    def __str__(self) -> str:
        return f"{self.login}@{self.server}"

    @classmethod
    def parse(cls, text: str) -> AccountKey:
        """``"<login>@<server>"``; the login fits MT5's ``long`` (and the journal's BIGINT),
        the server name the journal's column."""
        login, sep, server = text.partition("@")
        if not sep or not login.isascii() or not login.isdigit() or not server:
            raise ValueError(f"account {text[:80]!r} is not of the form <login>@<server>")
        if len(login) > 19 or int(login) > INT64_MAX:
            raise ValueError(f"account login {login[:25]} is out of range (at most {INT64_MAX})")
        if len(server) > SERVER_MAX:
            raise ValueError(f"account server name is longer than {SERVER_MAX} characters")
        return cls(int(login), server)


@dataclass(frozen=True, slots=True)
class TerminalGrant:
    """What the bridge knows of a configured terminal: its key and the accounts it may serve.
    A ``hello`` claiming another account is refused like an unknown terminal."""

    key: auth.Secret
    accounts: frozenset[AccountKey]
    priority: int = 1
    """Among the terminals of an account, 1 is the most preferred (:mod:`mtgate.sessions.routing`)."""


def grants_for(
    bindings: Iterable[tuple[str, auth.Secret, int, str]],
    priorities: Mapping[str, int] | None = None,
) -> dict[str, TerminalGrant]:
    """Grants from ``(terminal id, key, login, server)`` rows (several rows of one id add
    accounts to it; they must carry the same key); ``priorities`` by terminal id (default 1)."""
    priorities = priorities or {}
    grants: dict[str, TerminalGrant] = {}
    for terminal_id, key, login, server in bindings:
        known = grants.get(terminal_id)
        if known is not None and known.key != key:
            raise ValueError(f"terminal {terminal_id!r} is given two keys")
        accounts = (known.accounts if known else frozenset()) | {AccountKey(login, server)}
        grants[terminal_id] = TerminalGrant(key, accounts, priorities.get(terminal_id, 1))
    return grants


BRIDGE_FEATURES = frozenset(
    {m.POSITIONS_FEATURE, m.SYNC_FEATURE, m.DEADLINE_FEATURE, m.PIPELINE_FEATURE}
)
"""The features this bridge uses; ``welcome.features`` is their intersection with the EA's."""


@dataclass(frozen=True, slots=True)
class TerminalIdentity:
    """What the EA said about itself in ``hello``."""

    terminal_id: str
    platform: Platform
    account: AccountKey
    company: str
    currency: str
    leverage: int
    margin_mode: MarginMode
    build: int
    ea_version: str
    features: frozenset[str] = frozenset()
    """The features both sides use: the EA's ``hello.features`` that the bridge knows
    (docs/protocol.md §12), sent back in ``welcome.features``."""


@dataclass(slots=True)
class TerminalView:
    """The bridge's cached view of the terminal, kept fresh by events and snapshots."""

    account: m.AccountReport | None = None
    symbols: dict[str, SymbolSpec] = field(default_factory=dict)
    ticks: dict[str, m.Tick] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionSettings:
    heartbeat_ms: int = 1000
    missed_heartbeats: int = 3
    handshake_timeout_s: float = 5.0
    request_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    max_trade_call_s: float = 180.0
    """The longest a trade call the terminal started can still be executing at the trade
    server: after a trade's deadline plus this, a lookup on any terminal of the account that
    does not find the order proves it absent (docs/protocol.md §4.4)."""
    not_ready_wait_s: float = 30.0
    """How long a start-up read answered -3 ``not_ready`` is asked again in the same session
    before the session ends (``sync_failed``)."""
    pipeline_depth: int = m.PIPELINE_DEPTH
    """Trades written to an EA with the feature ``pipeline`` (MT5) and not yet answered, at
    most; any other EA runs one at a time and gets one (docs/protocol.md §4.3). The rest wait
    in the bridge, where their deadlines are known and a trade that cannot finish in time is
    withdrawn unsent instead of timing out. 1 turns pipelining off."""
    trade_queue_max: int = 256
    """Trades waiting in the bridge for one terminal, at most; beyond, refused at once."""
    trade_queue_wait_s: float = 1.0
    """The longest a trade is let wait in the bridge for its terminal: one that would wait
    longer, at the trades' recent service time, is refused at once (``terminal_busy``)."""

    def __post_init__(self) -> None:
        if not 100 <= self.heartbeat_ms <= 60_000:  # what an EA accepts (docs/protocol.md §8)
            raise ValueError(f"heartbeat_ms {self.heartbeat_ms} is outside 100-60000")
        if not 1 <= self.pipeline_depth <= m.PIPELINE_DEPTH:
            raise ValueError(
                f"pipeline_depth {self.pipeline_depth} is outside 1-{m.PIPELINE_DEPTH}"
            )
        if not 1 <= self.trade_queue_max <= 100_000:
            raise ValueError(f"trade_queue_max {self.trade_queue_max} is outside 1-100000")
        if not 0 < self.trade_queue_wait_s <= 600:
            raise ValueError(f"trade_queue_wait_s {self.trade_queue_wait_s} is outside (0, 600]")


class SessionHost(Protocol):
    """What a session needs from the bridge around it (the registry implements it)."""

    def admit(self, session: TerminalSession) -> bool:
        """A new connection: False refuses it at once (too many handshakes, or its address
        opens connections too fast)."""
        ...

    def handshake_over(self, session: TerminalSession) -> None:
        """The connection left the handshake (authenticated, or closed before that)."""
        ...

    def grant_for(self, terminal_id: str) -> TerminalGrant | None: ...
    def claim(self, session: TerminalSession) -> str | None:
        """Register an authenticated session; the refusal reason, or None when accepted."""
        ...

    def session_authenticated(self, session: TerminalSession) -> None: ...
    def session_event(self, session: TerminalSession, name: str, payload: Any) -> None: ...
    def session_gap(self, session: TerminalSession, expected: int, got: int) -> None: ...
    def session_late_response(
        self, session: TerminalSession, op: type[m.Request], response: m.Response
    ) -> None: ...
    def session_closed(self, session: TerminalSession, reason: str) -> None: ...


_Pending = tuple["asyncio.Future[Any]", type[m.Request], asyncio.TimerHandle, int]
"""A request in flight: its future, its type, its deadline's timer, when it was sent (ns)."""

_SECOND_NS = 1_000_000_000
_EXPIRED_KEPT = 1024
_CLOCK_RATE_MARGIN = 1e-3
SERVER_OFFSET_TTL_NS = 60 * 1_000_000_000
"""How long the best trade-server clock offset stands against a lower one (a clock set back)."""
_TRADE_OPS = {op: str(op.__struct_config__.tag) for op in m.TRADE_OPS}
_RESERVATION_NS = 50_000_000
_LAST_START_NS = 50_000_000
"""A queued trade is written only while it has at least this long (and half again its
terminal's slow recent service time) before its deadline: any later, it would time out."""
"""The trade ops by their wire names (the metrics' ``operation``)."""
PRE_AUTH_MAX_FRAME = 16 * 1024
"""Largest frame accepted before ``ready``: a ``hello`` or ``auth`` is a few hundred bytes,
so an unauthenticated peer cannot make the bridge buffer or decode a megabyte."""
UNKNOWN_TERMINAL = "no terminal with this id is configured for this account"
"""The one refusal for an unknown id and for an id bound to other accounts: an
unauthenticated peer learns nothing about which ids exist."""
_refusals = logs.Throttle(per_s=5.0)
"""Refusals before authentication are logged at most a few per second (a peer could make
the bridge write a line per connection)."""


def ea_clock_at(ping_t_ms: int, ping_rx_ns: int, at_ns: int) -> int:
    """A lower bound of the EA's clock at the bridge's monotonic ``at_ns``, from a ``ping``
    that carried the EA's clock ``ping_t_ms`` and arrived at ``ping_rx_ns`` (≥ 1: 0 means "no
    deadline" on the wire). See :meth:`TerminalSession.ea_deadline_ms`."""
    ahead_ms = (at_ns - ping_rx_ns) / 1e6
    return max(1, int(ping_t_ms + ahead_ms - abs(ahead_ms) * _CLOCK_RATE_MARGIN) - 1)


def _features_for(hello: m.Hello) -> frozenset[str]:
    """The features of ``hello`` the bridge uses: those it knows, ``pipeline`` on MT5 only
    (MT4 has one trade context)."""
    features = frozenset(hello.features) & BRIDGE_FEATURES
    if hello.platform != Platform.MT5.value:
        features -= {m.PIPELINE_FEATURE}
    return features


class TerminalSession:
    """Bridge end of one connection. Created by the listener for every accepted socket."""

    def __init__(
        self, host: SessionHost, settings: SessionSettings, clock: Clock, session_id: str
    ) -> None:
        self._host = host
        self.settings = settings
        self._clock = clock
        self.session_id = session_id
        self.state = SessionState.HANDSHAKE
        self.identity: TerminalIdentity | None = None
        self.terminal_id = "?"
        """The identity's terminal id once the ``hello`` is accepted ("?" before)."""
        self.deadlines = False
        """Whether trade requests on this session carry a deadline (feature ``deadline``)."""
        self.view = TerminalView()
        self.close_reason = ""
        self._link: FramedLink | None = None
        self._loop = asyncio.get_running_loop()
        self._next_id = 1
        self._pending: dict[int, _Pending] = {}
        self._expired: dict[int, type[m.Request]] = {}
        self._seq = 0
        self._ea_nonce = ""
        self._bridge_nonce = ""
        self._hello_body = b""
        self._welcome_body = b""
        """The handshake's two bodies as they crossed the wire: the session key covers them."""
        self._key: auth.Secret | None = None
        self._last_rx_ns = clock.monotonic_ns()
        self._timer: asyncio.TimerHandle | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.rtt_ms: float | None = None
        self.meter: TerminalMeter | None = None
        """Where this terminal's answered requests are measured (the registry's meter of the
        terminal id, set when the session is claimed; mtgate.health)."""
        self._trades_in_flight = 0
        self._on_wire: set[int] = set()
        """Trades written and not answered (nor expired): at most ``_wire_limit``."""
        self._wire_limit = 1
        """1, or ``pipeline_depth`` with the feature ``pipeline``."""
        self._queued: deque[int] = deque()
        """Trades waiting for a free slot, oldest first; their frames in ``_frames``."""
        self._frames: dict[int, tuple[m.Request, bytes, int]] = {}
        """A queued trade's request and its deadline (monotonic ns). Its id on the wire is
        taken when it is written (ids on the wire only increase, §4.1); until then it is
        known by the id :meth:`request` gave it, which stays its caller's (``_caller_ids``)."""
        self._caller_ids: dict[int, int] = {}
        """Wire id → the id the caller was given, for trades written from the queue."""
        self._reserved: deque[int] = deque()
        """When each trade admitted but not yet handed to :meth:`request` was admitted
        (monotonic ns): orders admitted in the same instant see each other. One lapses after
        ``_RESERVATION_NS`` (an order refused after admission never comes)."""
        self._last_wire_id = 0
        """The id of the last request written: a queued trade whose own id is above it goes
        out as it was encoded; one below it takes a new id first."""
        self.trade_service_ns = 0.0
        """Recent time from writing a trade to its answer (moving average; 0: none yet)."""
        self.trade_service_high_ns = 0.0
        """The slow end of recent service times (a maximum that decays toward them): a trade
        is written only while it has this long, and a half more, before its deadline."""
        self._trade_ids: dict[asyncio.Future[Any], int] = {}
        self._after_cancel: dict[int, asyncio.Future[Any]] = {}
        self.ready = asyncio.Event()
        self.ready_since_ns = 0
        """Monotonic time the session became READY (0 before)."""
        self.server_time_ms = 0
        """The latest trade-server time seen on this session (ticks, snapshots, deals, trade
        results): a lower bound of the server's clock, which is not the bridge's."""
        self.account_at_ns = 0
        """Monotonic time of the latest account report from the terminal (0: none yet)."""
        self._server_offset: tuple[int, int] | None = None
        """(server ms minus the bridge's monotonic ms, monotonic ns it was taken at): the best
        (largest) offset seen lately, for :meth:`server_now_ms`."""
        self._ea_clock: tuple[int, int] | None = None
        """Feature ``deadline``: the EA's clock in its latest ``ping`` and the bridge's
        monotonic ns when that ping arrived (docs/protocol.md §4.4)."""

    # --- identity helpers --------------------------------------------------------------------

    @property
    def platform(self) -> Platform:
        assert self.identity is not None
        return self.identity.platform

    @property
    def peer(self) -> str:
        return self._link.peer if self._link else "?"

    @property
    def last_rx_ns(self) -> int:
        """Monotonic time the last frame arrived from the terminal."""
        return self._last_rx_ns

    # --- FrameHandler ------------------------------------------------------------------------

    def on_connected(self, link: FramedLink) -> None:
        self._link = link
        if not self._host.admit(self):
            self.state = SessionState.CLOSED
            self.close_reason = "refused: too many handshakes"
            link.abort()  # nothing is said to a peer that has not authenticated
            return
        link.max_frame = PRE_AUTH_MAX_FRAME
        self._timer = self._loop.call_later(
            self.settings.handshake_timeout_s, self._handshake_expired
        )

    def on_frame(self, body: bytes) -> None:
        self._last_rx_ns = self._clock.monotonic_ns()
        try:
            msg = codec.decode_for_bridge(body)
        except codec.ProtocolError as exc:
            self.on_protocol_error(exc)
            return
        if self.state in (SessionState.SYNCING, SessionState.READY):
            self._on_message(msg)
        elif self.state == SessionState.HANDSHAKE:
            self._hello_body = body  # as it crossed the wire: part of the session key
            self._on_hello(msg)
        elif self.state == SessionState.AUTHENTICATING:
            self._on_auth(msg)

    def on_protocol_error(self, error: codec.ProtocolError) -> None:
        log.warning(
            "protocol error",
            terminal=self.terminal_id,
            peer=self.peer,
            code=error.code,
            detail=error.message,
        )
        self.close(f"protocol error: {error.message}", code=error.code)

    def on_closed(self, exc: Exception | None) -> None:
        if self.state != SessionState.CLOSED:
            self._shutdown(
                self.close_reason
                or (f"connection lost: {exc}" if exc else "connection closed by peer")
            )

    # --- handshake ---------------------------------------------------------------------------

    def _handshake_expired(self) -> None:
        if self.state in (SessionState.HANDSHAKE, SessionState.AUTHENTICATING):
            self.close("handshake not completed in time", code="handshake_timeout")

    def _on_hello(self, msg: m.BridgeInbound) -> None:
        if not isinstance(msg, m.Hello):
            self.close(f"expected hello, got {type(msg).__name__}", code="not_ready")
            return
        if msg.v != m.PROTOCOL_VERSION:
            self.close(
                f"protocol version {msg.v} is not supported: this bridge speaks "
                f"{m.PROTOCOL_VERSION} (every frame after the handshake authenticated, "
                "docs/protocol.md §3.5); update the terminal side",
                code="unsupported_version",
            )
            return
        if not auth.valid_nonce(msg.nonce):
            self.close("nonce must be 32 hex characters", code="invalid_message")
            return
        try:
            identity = TerminalIdentity(
                terminal_id=msg.terminal_id,
                platform=Platform(msg.platform),
                account=AccountKey(msg.login, msg.server),
                company=msg.company,
                currency=msg.currency,
                leverage=msg.leverage,
                margin_mode=MarginMode(msg.margin_mode),
                build=msg.build,
                ea_version=msg.ea_version,
                features=_features_for(msg),
            )
        except ValueError as exc:
            self.close(f"bad hello: {exc}", code="invalid_message")
            return
        grant = self._host.grant_for(msg.terminal_id)
        if grant is None or identity.account not in grant.accounts:
            self.close(UNKNOWN_TERMINAL, code="unknown_terminal")
            return
        key = grant.key
        self.identity = identity
        self.terminal_id = identity.terminal_id
        self.deadlines = m.DEADLINE_FEATURE in identity.features
        if m.PIPELINE_FEATURE in identity.features:
            self._wire_limit = self.settings.pipeline_depth
        self._key = key
        self._ea_nonce = msg.nonce
        self._bridge_nonce = auth.new_nonce()
        proof = auth.bridge_proof(key, msg.terminal_id, msg.nonce, self._bridge_nonce)
        self.state = SessionState.AUTHENTICATING
        self._send_welcome(
            m.Welcome(
                v=m.PROTOCOL_VERSION,
                nonce=self._bridge_nonce,
                proof=proof,
                session=self.session_id,
                heartbeat_ms=self.settings.heartbeat_ms,
                features=sorted(identity.features),
            )
        )

    def _on_auth(self, msg: m.BridgeInbound) -> None:
        if isinstance(msg, m.Bye):
            # The EA refused the bridge (its proof, the welcome's values): the operator must
            # see it here, since the terminal's log is on another machine (review D12).
            suppressed = _refusals.allow()
            if suppressed is not None:
                log.warning(
                    "terminal refused the handshake",
                    terminal=self.terminal_id,
                    peer=self.peer,
                    code=msg.code[:64],
                    reason=msg.reason[:500],
                    suppressed=suppressed,
                )
            self._shutdown(f"terminal refused the handshake: {msg.reason}")
            return
        if not isinstance(msg, m.Auth):
            self.close(f"expected auth, got {type(msg).__name__}", code="not_ready")
            return
        assert self._key is not None and self.identity is not None
        expected = auth.ea_proof(
            self._key, self.identity.terminal_id, self._ea_nonce, self._bridge_nonce
        )
        if not auth.proofs_match(expected, msg.proof):
            self.close("terminal failed to prove its key", code="auth_failed")  # unsealed
            return
        if self._link is not None:  # every frame from here on is sealed (protocol §3.5)
            frames = auth.session_key(
                self._key,
                self.identity.terminal_id,
                self._ea_nonce,
                self._bridge_nonce,
                self._hello_body,
                self._welcome_body,
            )
            self._link.seal(
                auth.FrameSeal(frames, auth.TO_EA), auth.FrameSeal(frames, auth.TO_BRIDGE)
            )
        refusal = self._host.claim(self)
        if refusal is not None:
            self.close(refusal, code="duplicate_terminal")
            return
        if self._timer is not None:
            self._timer.cancel()
        self.state = SessionState.SYNCING
        self._host.handshake_over(self)
        if self._link is not None:
            self._link.max_frame = m.MAX_FRAME_BYTES
        self._send(m.Ready())
        self._heartbeat = self._loop.create_task(
            self._heartbeat_loop(), name=f"heartbeat:{self.terminal_id}"
        )
        log.info(
            "terminal authenticated",
            terminal=self.terminal_id,
            account=str(self.identity.account),
            peer=self.peer,
        )
        self._host.session_authenticated(self)

    def saw_account(self, report: m.AccountReport) -> None:
        """The terminal reported its account (an event, a read, a snapshot): the view takes it,
        and :attr:`account_at_ns` says when, so that an estimate made for a fill is not laid
        over a report that already holds it."""
        self.view.account = report
        self.account_at_ns = self._clock.monotonic_ns()

    # --- the trade server's clock -----------------------------------------------------------

    def _saw_server_time(self, seen_ms: int) -> None:
        """A report carried the trade server's time ``seen_ms`` (docs/protocol.md §5: not
        UTC, the broker's own clock, often hours off the bridge's)."""
        if seen_ms <= 0:
            return
        if seen_ms > self.server_time_ms:
            self.server_time_ms = seen_ms
        now_ns = self._clock.monotonic_ns()
        offset = seen_ms - now_ns // 1_000_000
        best = self._server_offset
        # The largest offset is the freshest report (each lags the instant it was made); one
        # older than a minute gives way, so that a server clock set back (a broker's DST
        # change) is followed within a minute of reports.
        if best is None or offset >= best[0] or now_ns - best[1] > SERVER_OFFSET_TTL_NS:
            self._server_offset = (offset, now_ns)

    def server_now_ms(self) -> int | None:
        """The trade server's clock now, as this session has seen it: its freshest report
        carried forward by the time elapsed since. Never ahead of the server's clock by more
        than it drifts (a report lags the instant it was made); None before the first report.
        Checks of server times (an expiration in the past) compare with this, never with
        the bridge's own clock (protocol review D7)."""
        best = self._server_offset
        if best is None:
            return None
        return best[0] + self._clock.monotonic_ns() // 1_000_000

    # --- after the handshake -----------------------------------------------------------------

    def _on_message(self, msg: m.BridgeInbound) -> None:
        if isinstance(msg, m.Response):
            self._on_response(msg)
        elif isinstance(msg, m.Event):
            self._on_event(msg)
        elif isinstance(msg, m.Ping):
            self._send(m.Pong(t_ms=msg.t_ms))
            if self.deadlines:
                self._ea_clock = (msg.t_ms, self._clock.monotonic_ns())
        elif isinstance(msg, m.Pong):
            self.rtt_ms = max(0.0, (self._clock.monotonic_ns() / 1e6) - msg.t_ms)
        elif isinstance(msg, m.Bye):
            self._shutdown(f"terminal said bye: {msg.reason}")
        else:
            self.close(
                f"{type(msg).__name__} is not valid after the handshake", code="invalid_message"
            )

    def _on_response(self, msg: m.Response) -> None:
        pending = self._pending.pop(msg.id, None)
        if pending is None:
            op = self._expired.pop(msg.id, None)
            if op is None:
                self.close(f"response to unknown request id {msg.id}", code="invalid_message")
            else:
                self._trade_over(msg.id, None)
                self._host.session_late_response(self, op, msg)
            return
        future, op, timer, sent_ns = pending
        timer.cancel()
        self._trade_over(msg.id, sent_ns)
        if self.meter is not None:
            now_ns = self._clock.monotonic_ns()
            code = None if msg.ok else (msg.error.code if msg.error else -4)
            self.meter.answered(_TRADE_OPS.get(op), now_ns, now_ns - sent_ns, code)
        if future.done():
            return
        if msg.ok:
            try:
                result = codec.decode_result(op, msg.result)
            except codec.ProtocolError as exc:
                future.set_exception(exc)
                self.on_protocol_error(exc)
                return
            self._saw_server_time(getattr(result, "time_ms", 0))
            future.set_result(result)
        else:
            err = msg.error or m.Error(code=-4, name="internal", message="error without details")
            future.set_exception(
                TerminalRejected(err.code, err.name, err.message, err.bid, err.ask)
            )

    def _on_event(self, msg: m.Event) -> None:
        expected = self._seq + 1
        if msg.seq != expected:
            log.warning(
                "event sequence gap", terminal=self.terminal_id, expected=expected, got=msg.seq
            )
            self._host.session_gap(self, expected, msg.seq)
        self._seq = msg.seq
        try:
            payload = codec.decode_event(msg.name, msg.data)
        except codec.ProtocolError as exc:
            self.on_protocol_error(exc)
            return
        if isinstance(payload, m.Tick):
            self.view.ticks[payload.symbol] = payload
        elif isinstance(payload, m.AccountReport):
            self.saw_account(payload)
        self._saw_server_time(getattr(payload, "time_ms", 0))
        try:
            self._host.session_event(self, msg.name, payload)
        except Exception as exc:  # what the bridge makes of an event must not end the session
            log.error(
                "event not applied",
                terminal=self.terminal_id,
                event_name=msg.name,
                error=repr(exc),
            )

    async def _heartbeat_loop(self) -> None:
        interval_s = self.settings.heartbeat_ms / 1000
        dead_ns = self.settings.heartbeat_ms * self.settings.missed_heartbeats * 1_000_000
        while self.state != SessionState.CLOSED:
            await asyncio.sleep(interval_s)
            # A terminal inside a blocking trade call (MT4's OrderSend) sends nothing; while a
            # trade is in flight its own deadline, not the heartbeat, decides.
            silent = self._clock.monotonic_ns() - self._last_rx_ns > dead_ns
            if silent and not self._trades_in_flight:
                self.close(
                    f"no frame for {self.settings.missed_heartbeats} heartbeats",
                    code="heartbeat_timeout",
                )
                return
            self._send(m.Ping(t_ms=self._clock.monotonic_ns() // 1_000_000))

    # --- requests ----------------------------------------------------------------------------

    def ea_deadline_ms(self, deadline_ns: int) -> int:
        """The bridge instant ``deadline_ns`` (monotonic) on the EA's clock, never later than
        the EA's clock really reads at that instant; 0 without the feature or a clock sample.

        The EA's ``ping`` carried its clock ``t`` and arrived at ``r``: at any bridge instant
        ``x >= r`` the EA's clock reads at least ``t + (x - r)``, the ping's time in transit
        only adding to it. The margin covers the two clocks' rates differing (0.1 %, far
        beyond a quartz's tolerance) and the rounding to milliseconds."""
        sample = self._ea_clock  # only ever set with the feature
        if sample is None:
            return 0
        return ea_clock_at(*sample, deadline_ns)

    @property
    def tells_deadlines(self) -> bool:
        """Whether trade requests sent from now on carry a deadline (:meth:`ea_deadline_ms` >
        0): the feature and a clock sample, which once taken is only ever replaced."""
        return self._ea_clock is not None

    def mark_ready(self) -> None:
        if self.state == SessionState.SYNCING:
            self.state = SessionState.READY
            self.ready_since_ns = self._clock.monotonic_ns()
            self.ready.set()

    def request(
        self,
        msg: m.Request,
        timeout_s: float | None = None,
        *,
        deadline_ns: int | None = None,
    ) -> asyncio.Future[Any]:
        """Send ``msg`` now (its ``id`` is assigned here) and return the future of its result.

        The frame is written before this returns, so a caller that journalled the intent and
        then calls this keeps "persist before send" without another suspension point.

        A trade's deadline (monotonic ns; default: now + the timeout) is when the bridge
        stops waiting; with the feature ``deadline`` the EA is told it too, on its own clock,
        and never starts the trade after it (docs/protocol.md §4.4).
        """
        if self.state not in (SessionState.SYNCING, SessionState.READY) or self._link is None:
            raise SessionClosed(f"session {self.terminal_id} is {self.state.value}", sent=False)
        timeout = timeout_s if timeout_s is not None else self.settings.request_timeout_s
        op = type(msg)
        now_ns = self._clock.monotonic_ns()
        if op in _TRADE_OPS:
            if deadline_ns is None:
                deadline_ns = now_ns + int(timeout * 1e9)
            timeout = max(0.0, (deadline_ns - now_ns) / 1e9)
            msg.deadline_ms = self.ea_deadline_ms(deadline_ns)  # type: ignore[attr-defined]
        trade = op in _TRADE_OPS
        if trade:
            if self._reserved:
                self._reserved.popleft()
            self._admit(now_ns, deadline_ns)
        req_id = self._next_id
        self._next_id = req_id + 1
        msg.id = req_id
        # Before anything is registered, with room for the seal: a refused frame leaks nothing.
        frame = codec.encode(msg, _SEALED_BODY_MAX)
        future: asyncio.Future[Any] = self._loop.create_future()
        timer = self._loop.call_later(timeout, self._expire, req_id, timeout)
        self._pending[req_id] = (future, op, timer, now_ns)
        if trade:
            self._trades_in_flight += 1
            self._trade_ids[future] = req_id
            future.add_done_callback(self._trade_done)
            if self._queued or len(self._on_wire) >= self._wire_limit:
                assert deadline_ns is not None
                self._queued.append(req_id)
                self._frames[req_id] = (msg, frame, deadline_ns)
                return future
            self._on_wire.add(req_id)
        self._last_wire_id = req_id
        self._link.write(frame)
        return future

    def _admit(self, now_ns: int, deadline_ns: int | None) -> None:
        """Refuse a trade (unsent) that would wait beyond the queue's bound, or could not
        finish before its deadline behind the trades ahead of it."""
        queued = len(self._queued)
        wait_ns = self.trade_wait_ns(high=True)
        if queued >= self.settings.trade_queue_max:
            why = f"{queued} trades already wait for terminal {self.terminal_id}"
        elif wait_ns > 0 and (
            wait_ns > self.settings.trade_queue_wait_s * 1e9
            or (
                deadline_ns is not None
                and now_ns + wait_ns + self.trade_service_high_ns > deadline_ns
            )
        ):
            why = (
                f"terminal {self.terminal_id} is busy: {queued} trade(s) queued, expected wait "
                f"{wait_ns / 1e6:.0f} ms, beyond the {self.settings.trade_queue_wait_s:g} s bound "
                "or the deadline"
            )
        else:
            return
        raise TradeWithdrawn(why, wait_ms=wait_ns / 1e6)

    def reserve_trade(self) -> None:
        """A trade was admitted for this terminal and is on its way to :meth:`request`."""
        self._reserved.append(self._clock.monotonic_ns())

    def _ahead(self) -> int:
        """Trades waiting for a slot: queued, and admitted on their way here."""
        reserved = self._reserved
        if reserved:
            lapsed = self._clock.monotonic_ns() - _RESERVATION_NS
            while reserved and reserved[0] < lapsed:
                reserved.popleft()
        return len(self._queued) + len(reserved)

    def trade_wait_ns(self, *, high: bool = False) -> float:
        """How long a trade asked for now is expected to wait before it is written: the
        trades ahead of it at the recent service time (``high``: at the slow end of it, what
        admission uses, so that what it lets in does not outwait the queue's bound)."""
        limit = self._wire_limit
        ahead = self._ahead()
        if len(self._on_wire) + ahead < limit:
            return 0.0
        each = self.trade_service_high_ns if high else self.trade_service_ns
        return ((len(self._on_wire) + ahead) // limit) * each

    def trades_queued(self) -> int:
        return self._ahead()

    def _trade_over(self, req_id: int, written_ns: int | None) -> None:
        """A trade on the wire was answered (``written_ns``: when it was written) or stopped
        being waited for: its slot goes to the next queued trade that can still finish."""
        if req_id not in self._on_wire:
            return
        self._on_wire.discard(req_id)
        now_ns = self._clock.monotonic_ns()
        if written_ns is not None:
            took = now_ns - written_ns
            prev = self.trade_service_ns
            self.trade_service_ns = took if prev == 0 else prev + (took - prev) / 8
            high = self.trade_service_high_ns
            self.trade_service_high_ns = took if took > high else high + (took - high) / 32
        self._pump(now_ns)

    def _pump(self, now_ns: int) -> None:
        link = self._link
        while self._queued and len(self._on_wire) < self._wire_limit:
            caller_id = self._queued.popleft()
            msg, frame, deadline_ns = self._frames.pop(caller_id)
            queued = self._pending.get(caller_id)
            if queued is None:
                continue
            if now_ns - queued[3] > self.settings.trade_queue_wait_s * 1e9:
                self._withdraw(caller_id, "it waited beyond the queue's bound")
                continue
            if now_ns + max(self.trade_service_high_ns * 1.5, _LAST_START_NS) > deadline_ns:
                # It would not finish before its deadline: withdrawn unsent, not left to time
                # out on the wire (an unknown outcome) or be refused by the EA.
                self._withdraw(caller_id, "it could not finish before its deadline")
                continue
            if link is None:
                return
            future, op, timer, _ = self._pending.pop(caller_id)
            wire_id = caller_id
            if caller_id < self._last_wire_id:  # a later request went first: a new id
                timer.cancel()
                wire_id = self._next_id
                self._next_id = wire_id + 1
                msg.id = wire_id
                frame = codec.encode(msg)  # it encoded when asked: it encodes again
                timeout_s = max(0.0, (deadline_ns - now_ns) / 1e9)
                timer = self._loop.call_later(timeout_s, self._expire, wire_id, timeout_s)
                self._trade_ids[future] = wire_id
                self._caller_ids[wire_id] = caller_id
            self._pending[wire_id] = (future, op, timer, now_ns)
            self._on_wire.add(wire_id)
            self._last_wire_id = wire_id
            link.write(frame)

    def _withdraw(self, req_id: int, why: str) -> None:
        pending = self._pending.pop(req_id, None)
        if pending is None:
            return
        future, _, timer, queued_ns = pending
        timer.cancel()
        if not future.done():
            waited_ms = (self._clock.monotonic_ns() - queued_ns) / 1e6
            future.set_exception(
                TradeWithdrawn(
                    f"not sent to terminal {self.terminal_id}: {why} "
                    f"(queued {waited_ms:.0f} ms behind other trades)",
                    wait_ms=waited_ms,
                )
            )

    def _trade_done(self, future: asyncio.Future[Any]) -> None:
        req_id = self._trade_ids.pop(future)
        pending = self._pending.get(req_id)
        if future.cancelled() and pending is not None and pending[0] is future:
            # The caller stopped waiting, not the trade: its answer is still the trade's
            # outcome, so it gets a future of its own (answer_after_cancel), and the trade
            # still counts as in flight.
            again: asyncio.Future[Any] = self._loop.create_future()
            self._pending[req_id] = (again, *pending[1:])
            self._trade_ids[again] = req_id
            again.add_done_callback(self._trade_done)
            self._after_cancel[self._caller_ids.get(req_id, req_id)] = again
            return
        self._trades_in_flight -= 1
        self._after_cancel.pop(self._caller_ids.pop(req_id, req_id), None)

    def answer_after_cancel(self, req_id: int) -> asyncio.Future[Any] | None:
        """The future of trade ``req_id``'s answer once the future :meth:`request` returned
        was cancelled (its caller gave up waiting); None when there is none to wait for."""
        return self._after_cancel.pop(req_id, None)

    def _expire(self, req_id: int, timeout_s: float) -> None:
        if req_id in self._frames:  # still queued at its deadline: never written
            self._queued.remove(req_id)
            del self._frames[req_id]
            self._withdraw(req_id, "still queued at its deadline")
            return
        pending = self._pending.pop(req_id, None)
        if pending is None:
            return
        # A trade on the wire keeps its slot past its deadline: the terminal may still be in
        # it (a trade timeout ends the session, which withdraws what is queued; a late answer
        # frees the slot).
        future, op, _, sent_ns = pending
        if self.meter is not None:
            now_ns = self._clock.monotonic_ns()
            self.meter.timed_out(op in _TRADE_OPS, now_ns, now_ns - sent_ns)
        self._expired[req_id] = op
        if len(self._expired) > _EXPIRED_KEPT:  # remember the newest few for late answers
            del self._expired[next(iter(self._expired))]
        if not future.done():
            future.set_exception(RequestTimeout(op.__name__, timeout_s))

    def in_flight(self) -> int:
        return len(self._pending)

    # --- closing -----------------------------------------------------------------------------

    def _send(self, msg: m.Message) -> None:
        if self._link is not None:
            self._link.write(codec.encode(msg))

    def _send_welcome(self, welcome: m.Welcome) -> None:
        frame = codec.encode(welcome)
        self._welcome_body = frame[codec.HEADER_BYTES :]
        if self._link is not None:
            self._link.write(frame)

    def close(self, reason: str, *, code: str = "closed") -> None:
        """Say why, close the socket, and fail every request still in flight."""
        if self.state == SessionState.CLOSED:
            return
        if self.state in (SessionState.HANDSHAKE, SessionState.AUTHENTICATING):
            suppressed = _refusals.allow()
            if suppressed is not None:
                log.warning(
                    "handshake refused",
                    terminal=self.terminal_id,
                    peer=self.peer,
                    code=code,
                    reason=reason,
                    suppressed=suppressed,
                )
        else:
            log.warning(
                "closing session",
                terminal=self.terminal_id,
                peer=self.peer,
                code=code,
                reason=reason,
            )
        self._send(m.Bye(reason=reason, code=code))
        link = self._link
        self._shutdown(reason)
        if link is not None:
            link.close()

    def _shutdown(self, reason: str) -> None:
        if self.state == SessionState.CLOSED:
            return
        was_claimed = self.state in (SessionState.SYNCING, SessionState.READY)
        if not was_claimed:
            self._host.handshake_over(self)
        self.state = SessionState.CLOSED
        self.close_reason = reason
        self.ready.clear()
        if self._timer is not None:
            self._timer.cancel()
        if self._heartbeat is not None and self._heartbeat is not asyncio.current_task():
            self._heartbeat.cancel()
        pending, self._pending = self._pending, {}
        queued, self._frames = self._frames, {}
        self._queued.clear()
        self._on_wire.clear()
        for req_id, (future, _, timer, _) in pending.items():
            timer.cancel()
            if not future.done():  # a trade still queued in the bridge was never written
                future.set_exception(SessionClosed(reason, sent=req_id not in queued))
        if was_claimed:
            try:
                self._host.session_closed(self, reason)
            except Exception as exc:  # the session is closed either way; the others go on
                log.error("closing a session failed", terminal=self.terminal_id, error=repr(exc))
