"""Configuration: one TOML file, ``MTGATE_*`` environment overrides, validated once at start.

Errors name the key and the file. Terminal keys are :class:`Secret` values: never printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from mtgate.protocol.auth import MIN_KEY_BYTES, Secret


class ConfigError(ValueError):
    pass


class BridgeSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 7788
    heartbeat_ms: Annotated[int, msgspec.Meta(ge=100)] = 1000
    handshake_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    trade_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    read_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0


class StoreSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str = "sqlite:///mtgate.db"
    synchronous: str = "normal"


class SyncSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    interval_ms: Annotated[int, msgspec.Meta(ge=100, le=60_000)] = 1000
    margin_history_interval_ms: Annotated[int, msgspec.Meta(ge=0)] = 10_000
    account_state_interval_ms: Annotated[int, msgspec.Meta(ge=0)] = 5_000
    store_flush_interval_ms: Annotated[int, msgspec.Meta(ge=10, le=10_000)] = 1000


class LogSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    json: bool = False
    level: str = "INFO"


class TerminalEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    key: str = ""
    """Hex of the shared key; prefer ``key_env``, the name of a variable that holds it."""
    key_env: str = ""

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


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    bridge: BridgeSection = BridgeSection()
    store: StoreSection = StoreSection()
    sync: SyncSection = SyncSection()
    log: LogSection = LogSection()
    terminals: list[TerminalEntry] = []

    def keys(self) -> dict[str, Secret]:
        keys: dict[str, Secret] = {}
        for entry in self.terminals:
            if entry.id in keys:
                raise ConfigError(f"terminals: id {entry.id!r} appears twice")
            keys[entry.id] = entry.secret()
        return keys


_SECTIONS = {
    "bridge": BridgeSection,
    "store": StoreSection,
    "sync": SyncSection,
    "log": LogSection,
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
    env = os.environ if env is None else env
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
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        config.keys()  # validates every key now, not at the first connection
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return config
