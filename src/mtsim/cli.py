"""Standalone simulated terminals: `mtsim terminals.toml --bridge host:port`."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import msgspec

from mtgate.domain.enums import MarginMode, Platform
from mtgate.protocol.auth import Secret
from mtsim.clock import ServerClock
from mtsim.faults import FaultKind, RandomFaults
from mtsim.world import AccountSpec, SimWorld


class TerminalEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    key: str
    login: int
    server: str
    platform: Platform
    margin_mode: Annotated[str, msgspec.Meta(pattern="^(hedging|netting)$")] = "hedging"
    balance: float = 100_000.0
    leverage: int = 100


class FaultsEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[faults]``: random trade faults of every terminal, drawn under the file's ``seed``
    (per terminal: seed + its index). ``rates`` maps a kind of :class:`mtsim.faults.FaultKind`
    to its probability per trade."""

    rates: dict[FaultKind, Annotated[float, msgspec.Meta(ge=0, le=1)]] = {}
    duration_ms: tuple[int, int] = (200, 2_000)
    delay_ms: tuple[int, int] = (50, 500)
    hold_ms: tuple[int, int] = (0, 0)
    ratio: tuple[float, float] = (0.1, 0.9)


class SimFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    terminals: list[TerminalEntry]
    seed: int = 0
    tick_interval_ms: int = 250
    server_start_ms: int = 0
    faults: FaultsEntry | None = None


def load(path: Path) -> SimFile:
    try:
        spec = msgspec.toml.decode(path.read_bytes(), type=SimFile)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        random_faults(spec.faults)
    except ValueError as exc:
        raise ValueError(f"{path}: [faults]: {exc}") from None
    return spec


def random_faults(entry: FaultsEntry | None) -> RandomFaults | None:
    """The terminals' random faults from ``[faults]`` (ValueError: a bad range or sum)."""
    if entry is None:
        return None
    return RandomFaults(
        rates=entry.rates,
        duration_ms=entry.duration_ms,
        delay_ms=entry.delay_ms,
        hold_ms=entry.hold_ms,
        ratio=entry.ratio,
    )


def world_from(spec: SimFile) -> SimWorld:
    accounts = [
        AccountSpec(
            t.id,
            t.login,
            t.server,
            t.platform,
            MarginMode.HEDGING if t.margin_mode == "hedging" else MarginMode.NETTING,
            balance=t.balance,
            leverage=t.leverage,
            key=Secret.from_hex(t.key),
        )
        for t in spec.terminals
    ]
    start = spec.server_start_ms or time.time_ns() // 1_000_000
    faults = random_faults(spec.faults)
    return SimWorld(accounts, clock=ServerClock(start), seed=spec.seed, random_faults=faults)


async def run_from_file(path: Path, host: str, port: int) -> int:
    try:
        spec = load(path)
        world = world_from(spec)
    except ValueError as exc:
        print(f"mtsim: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    world.start(host, port, tick_interval_s=spec.tick_interval_ms / 1000 or None)
    await stop.wait()
    await world.stop()
    return 0


def main() -> None:
    import typer

    def command(
        config: Annotated[Path, typer.Argument(help="TOML file describing the terminals")],
        bridge: Annotated[str, typer.Option(help="bridge address host:port")] = "127.0.0.1:7788",
    ) -> None:
        host, _, port = bridge.rpartition(":")
        raise typer.Exit(asyncio.run(run_from_file(config, host, int(port))))

    typer.run(command)
