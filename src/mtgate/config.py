"""Configuration: one TOML file, ``MTGATE_*`` environment overrides, validated once at start.

Errors name the key and the file. Terminal keys are :class:`Secret` values: never printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from mtgate.api.auth import MIN_TOKEN_CHARS, Scope, Tokens
from mtgate.domain.enums import Platform
from mtgate.domain.limits import INT32_MAX
from mtgate.domain.orders import ATTEMPT_MAX
from mtgate.domain.retry import DEFAULT_STRATEGIES, RetryPolicy, Strategy, strategy_allowed
from mtgate.health.settings import BOUNDS, HealthSettings
from mtgate.protocol.auth import MIN_KEY_BYTES, Secret
from mtgate.sessions.session import AccountKey, TerminalGrant


class ConfigError(ValueError):
    pass


DEFAULT_MAGIC = 20250101
"""The magic number of the bridge's orders when the caller gives none (docs/protocol.md §9)."""


class BridgeSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 7788
    heartbeat_ms: Annotated[int, msgspec.Meta(ge=100, le=60_000)] = 1000
    handshake_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    trade_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0
    read_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0
    max_trade_call_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 180.0
    """The longest a trade call a terminal started can still be executing at the trade
    server. After a trade's deadline (``trade_timeout_s``) plus this, a lookup on any terminal
    of the account proves an order absent (docs/protocol.md §4.4). Too short a value can
    double an order: keep it above the longest execution the broker has ever shown."""
    trade_queue_wait_ms: Annotated[int, msgspec.Meta(ge=1, le=600_000)] = 1000
    """The longest an order may wait in the bridge for its terminal, which runs one trade at a
    time: an order that would wait longer, at the recent service time, is refused at once
    with ``terminal_busy`` (docs/operations.md, "Overload")."""
    trade_queue_max: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    """Orders waiting in the bridge for one terminal, at most."""
    magic: Annotated[int, msgspec.Meta(ge=1, le=INT32_MAX)] = DEFAULT_MAGIC
    """Magic number of orders placed without one. Non-zero: MT4 EAs report the deals of a
    magic-0 order with reason 0, as they do manual trades (docs/protocol.md §10)."""
    failback_after_s: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 30.0
    """After a failover, how long a better-priority terminal must stay ready before orders
    go back to it (mtgate.sessions.routing)."""
    failover_wait_s: Annotated[float, msgspec.Meta(ge=0, le=600)] = 5.0
    """How long a new order waits while orders of its account that another terminal carried
    are still unknown (DESIGN §4), before it is refused."""
    max_pending_handshakes: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    """Connections allowed to be in the handshake at once; more are closed at once."""
    handshakes_per_s: Annotated[float, msgspec.Meta(gt=0, le=100_000)] = 50.0
    """Sustained rate of new connections accepted from one address."""
    handshake_burst: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 200
    """Connections one address may open at once (a host whose terminals all reconnect after
    a bridge restart) before the rate applies."""


class StoreSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str = "sqlite:///mtgate.db"
    synchronous: str = "normal"


class SyncSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    interval_ms: Annotated[int, msgspec.Meta(ge=100, le=60_000)] = 1000
    margin_history_interval_ms: Annotated[int, msgspec.Meta(ge=0)] = 10_000
    account_state_interval_ms: Annotated[int, msgspec.Meta(ge=0)] = 5_000
    store_flush_interval_ms: Annotated[int, msgspec.Meta(ge=10, le=10_000)] = 1000


def _bounds(name: str) -> msgspec.Meta:
    """The bounds :class:`HealthSettings` holds ``name`` to, as the file's validation."""
    low, high = BOUNDS[name]
    return msgspec.Meta(ge=low, le=high)


class HealthSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Connection health and alerts (docs/operations.md): the fields of :class:`HealthSettings`."""

    enabled: bool = True
    interval_ms: Annotated[int, _bounds("interval_ms")] = 5000
    latency_window_s: Annotated[float, _bounds("latency_window_s")] = 300.0
    latency_samples: Annotated[int, _bounds("latency_samples")] = 1024
    max_execution_latency_ms: Annotated[float, _bounds("max_execution_latency_ms")] = 100.0
    flap_disconnects: Annotated[int, _bounds("flap_disconnects")] = 3
    flap_window_s: Annotated[float, _bounds("flap_window_s")] = 300.0
    down_after_ms: Annotated[int, _bounds("down_after_ms")] = 10_000
    stale_after_intervals: Annotated[int, _bounds("stale_after_intervals")] = 3
    max_rejection_rate_pct: Annotated[float, _bounds("max_rejection_rate_pct")] = 20.0
    rejection_window_s: Annotated[float, _bounds("rejection_window_s")] = 300.0
    rejection_min_trades: Annotated[int, _bounds("rejection_min_trades")] = 5

    def settings(self) -> HealthSettings:
        return HealthSettings(**msgspec.structs.asdict(self))


class LogSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    json: bool | None = None
    """JSON lines; None: JSON unless standard error is a terminal (a service's logs go to a
    collector, a person at a terminal reads them)."""
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"


class TerminalEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    key: str = ""
    """Hex of the shared key; prefer ``key_env``, the name of a variable that holds it."""
    key_env: str = ""
    account: str | list[str] = ""
    priority: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    """Among the terminals of one account, 1 is the most preferred (the primary)."""
    """The account(s) this terminal may serve, ``"<login>@<server>"``: a ``hello`` claiming
    any other account is refused, so a key cannot act for someone else's account."""

    def accounts(self) -> frozenset[AccountKey]:
        listed = [self.account] if isinstance(self.account, str) else self.account
        if not listed or not all(listed):
            raise ConfigError(
                f"terminals[{self.id}].account: missing; bind the terminal to the account(s) "
                'it serves, e.g. account = "51234567@Broker-Live"'
            )
        try:
            return frozenset(AccountKey.parse(text) for text in listed)
        except ValueError as exc:
            raise ConfigError(f"terminals[{self.id}].account: {exc}") from None

    def grant(self) -> TerminalGrant:
        return TerminalGrant(self.secret(), self.accounts(), self.priority)

    def secret(self) -> Secret:
        text = os.environ.get(self.key_env, "") if self.key_env else self.key
        if not text:
            where = f"environment variable {self.key_env}" if self.key_env else "key"
            raise ConfigError(f"terminals[{self.id}]: no key ({where} is empty)")
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise ConfigError(f"terminals[{self.id}]: key is not hex") from None
        if len(value) < MIN_KEY_BYTES:
            raise ConfigError(
                f"terminals[{self.id}]: key has {len(value)} bytes, at least {MIN_KEY_BYTES} needed"
            )
        return Secret(value)

    def __repr__(self) -> str:
        return f"TerminalEntry(id={self.id!r}, key=****)"


class ApiToken(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A caller of the HTTP API: its name (in logs), its token and what it may do."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    scopes: Annotated[list[Literal["read", "trade", "admin"]], msgspec.Meta(min_length=1)]
    token: str = ""
    """The token itself; prefer ``token_env``, the name of a variable that holds it."""
    token_env: str = ""

    def secret(self) -> str:
        text = os.environ.get(self.token_env, "") if self.token_env else self.token
        if not text:
            where = f"environment variable {self.token_env}" if self.token_env else "token"
            raise ConfigError(f"api.tokens[{self.name}]: no token ({where} is empty)")
        if len(text) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"api.tokens[{self.name}]: the token has {len(text)} characters, "
                f"at least {MIN_TOKEN_CHARS} needed"
            )
        return text

    def __repr__(self) -> str:
        return f"ApiToken(name={self.name!r}, scopes={self.scopes!r}, token=****)"


class ApiSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[api]``: the HTTP API the execution engine calls (docs/api.md)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """Loopback unless configured: another address exposes trading to the network."""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8780
    tls_cert: str = ""
    """A PEM certificate (chain) file: the API is served over HTTPS when set."""
    tls_key: str = ""
    tokens: list[ApiToken] = []

    def auth(self) -> Tokens:
        """The configured tokens; a bad one is a ConfigError naming it."""
        if self.enabled and not self.tokens:
            raise ConfigError(
                "api.tokens: no token configured; add [[api.tokens]] (name, scopes, token_env) "
                "or set api.enabled = false"
            )
        names = [t.name for t in self.tokens]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"api.tokens: name {name!r} appears twice")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("api: tls_cert and tls_key are given together or not at all")
        return Tokens((t.name, t.secret(), [Scope(s) for s in t.scopes]) for t in self.tokens)


class EventsSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[events]``: the outbox and its sinks (docs/events.md). The WebSocket stream needs no
    setting; NATS and Kafka are on when their address is set."""

    enabled: bool = True
    """Write the outbox. Off: no event anywhere (the WebSocket stream stays empty)."""
    retention_hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 365)] = 72.0
    """How long relayed events stay for a WebSocket client to resume from."""
    poll_ms: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 25
    nats_url: str = ""
    """``nats://host:4222``: publish to JetStream (empty: no NATS sink)."""
    nats_stream: Annotated[
        str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    ] = "MTGATE"
    nats_subject_prefix: Annotated[
        str,
        msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"),
    ] = "mtgate"
    kafka_bootstrap: str = ""
    """``host:9092[,host:9092]``: produce to Kafka (empty: no Kafka sink)."""
    kafka_topic_prefix: Annotated[
        str, msgspec.Meta(max_length=64, pattern=r"^[A-Za-z0-9._-]*$")
    ] = ""
    kafka_partitions: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    kafka_idempotence: bool = False
    """The idempotent producer, where the broker supports it (Apache Kafka does)."""


class RetrySection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[retry]``: the bridge's retry strategies (mtgate.domain.retry, docs/operations.md)."""

    enabled: bool = True
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=ATTEMPT_MAX)] = 5
    fresh_price_attempts: Annotated[int, msgspec.Meta(ge=0, le=ATTEMPT_MAX)] = 3
    backoff_base_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = 100
    backoff_cap_ms: Annotated[int, msgspec.Meta(ge=1, le=600_000)] = 2000
    max_age_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    after_absence: bool = True
    absence_wait_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    market_closed_cap_s: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 300.0
    codes: dict[str, str] = {}
    """Per code: ``"mt4:138" = "none"``, ``"mt5:10024" = "backoff"`` (mtgate.domain.retry
    ``Strategy`` values). Only codes that guarantee nothing executed may be retried."""

    def policy(self) -> RetryPolicy:
        """The policy, with ``codes`` over the defaults; a bad entry is a ConfigError."""
        strategies = dict(DEFAULT_STRATEGIES)
        for key, value in self.codes.items():
            platform_name, _, code_text = key.partition(":")
            try:
                platform = Platform(platform_name)
                code = int(code_text)
            except ValueError:
                raise ConfigError(
                    f"retry.codes: key {key[:40]!r}: expected mt4:<code> or mt5:<code>"
                ) from None
            try:
                strategy = Strategy(value)
            except ValueError:
                names = ", ".join(s.value for s in Strategy)
                raise ConfigError(
                    f"retry.codes.{key}: {value[:40]!r} is not one of {names}"
                ) from None
            refused = strategy_allowed(platform, code, strategy)
            if refused is not None:
                raise ConfigError(f"retry.codes.{key}: {refused}")
            strategies[(platform, code)] = strategy
        if self.backoff_cap_ms < self.backoff_base_ms:
            raise ConfigError("retry.backoff_cap_ms must be at least retry.backoff_base_ms")
        return RetryPolicy(
            enabled=self.enabled,
            max_attempts=self.max_attempts,
            fresh_price_attempts=self.fresh_price_attempts,
            backoff_base_ms=self.backoff_base_ms,
            backoff_cap_ms=self.backoff_cap_ms,
            max_age_s=self.max_age_s,
            after_absence=self.after_absence,
            absence_wait_s=self.absence_wait_s,
            market_closed_cap_s=self.market_closed_cap_s,
            strategies=strategies,
        )


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    bridge: BridgeSection = BridgeSection()
    store: StoreSection = StoreSection()
    sync: SyncSection = SyncSection()
    health: HealthSection = HealthSection()
    log: LogSection = LogSection()
    retry: RetrySection = RetrySection()
    api: ApiSection = ApiSection(enabled=False)
    events: EventsSection = EventsSection()
    """Off unless the file has an ``[api]`` table (a library user embeds no HTTP server)."""
    terminals: list[TerminalEntry] = []

    def grants(self) -> dict[str, TerminalGrant]:
        """Each terminal id's key and the accounts it may serve."""
        grants: dict[str, TerminalGrant] = {}
        for entry in self.terminals:
            if entry.id in grants:
                raise ConfigError(f"terminals: id {entry.id!r} appears twice")
            grants[entry.id] = entry.grant()
        return grants


_SECTIONS = {
    "bridge": BridgeSection,
    "store": StoreSection,
    "sync": SyncSection,
    "health": HealthSection,
    "log": LogSection,
    "retry": RetrySection,
    "api": ApiSection,
    "events": EventsSection,
}


def _overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``MTGATE_STORE_URL=...`` → ``{"store": {"url": "..."}}``; values parsed as TOML scalars."""
    out: dict[str, dict[str, Any]] = {}
    for name, raw in env.items():
        if not name.startswith("MTGATE_"):
            continue
        section, _, key = name[len("MTGATE_") :].lower().partition("_")
        kind = _SECTIONS.get(section)
        if kind is None or key not in kind.__struct_fields__:
            continue
        try:
            value: Any = msgspec.toml.decode(f"v = {raw}".encode())["v"]
        except msgspec.DecodeError:
            value = raw
        out.setdefault(section, {})[key] = value
    return out


def load(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or defaults), apply ``MTGATE_*`` overrides, validate."""
    where, data = _read(path, os.environ if env is None else env)
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        config.grants()  # validates every key and binding now, not at the first connection
        config.retry.policy()
        config.api.auth()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return config


def load_store(path: Path | None, env: Mapping[str, str] | None = None) -> StoreSection:
    """Only ``[store]`` of ``path`` (or the defaults), with its ``MTGATE_STORE_*`` overrides:
    what a tool that reads the journal needs, without the terminals' keys."""
    where, data = _read(path, os.environ if env is None else env)
    try:
        return msgspec.convert(data.get("store", {}), StoreSection)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: store: {exc}") from None


def _read(path: Path | None, env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """The file's tables with the environment's overrides applied, and how to name it."""
    where = str(path) if path else "defaults"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = msgspec.toml.decode(path.read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"{where}: file not found") from None
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    for section, values in _overrides(env).items():
        data.setdefault(section, {}).update(values)
    return where, data
