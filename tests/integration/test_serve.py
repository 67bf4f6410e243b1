"""`mtgate serve`: the real entry point, as a process, with a configuration file."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from mtgate.domain.clock import ManualClock
from mtgate.domain.enums import MarginMode, Platform
from mtgate.protocol.auth import Secret
from mtsim.world import AccountSpec, SimWorld

KEY = "ef" * 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_serve_accepts_a_configured_terminal_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "mtgate.toml"
    config.write_text(
        f'[bridge]\nport = {port}\n[store]\nurl = "sqlite:///{tmp_path / "j.db"}"\n'
        f'[log]\nlevel = "WARNING"\n[[terminals]]\nid = "served"\nkey_env = "SERVED_KEY"\naccount = "7001@Sim-Serve"\n'
    )
    env = {**os.environ, "SERVED_KEY": KEY}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mtgate.cli",
        "serve",
        "--config",
        str(config),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    world = SimWorld(
        [
            AccountSpec(
                "served",
                7001,
                "Sim-Serve",
                Platform.MT5,
                MarginMode.HEDGING,
                key=Secret.from_hex(KEY),
            )
        ],
        clock=ManualClock(),
    )
    try:
        world.start("127.0.0.1", port)
        await asyncio.wait_for(world.terminals["served"].connected.wait(), 20)
        assert world.terminals["served"].sessions == 1
    finally:
        await world.stop()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_serve_refuses_a_bad_config_with_exit_code_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[bridge]\nport = -1\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mtgate.cli",
        "serve",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"bad.toml" in err and b"port" in err
