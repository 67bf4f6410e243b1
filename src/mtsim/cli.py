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


class SimFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    terminals: list[TerminalEntry]
    seed: int = 0
    tick_interval_ms: int = 250
    server_start_ms: int = 0


def load(path: Path) -> SimFile:
    try:
        return msgspec.toml.decode(path.read_bytes(), type=SimFile)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None


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
    return SimWorld(accounts, clock=ServerClock(start), seed=spec.seed)


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
