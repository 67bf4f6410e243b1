"""A property-based run of schemathesis against the OpenAPI document of a running bridge.

``mtgate serve`` runs as a process with two simulated terminals; ``st run`` generates requests
from ``/v1/openapi.json`` (valid and invalid ones, on every operation) and checks that no
response is a 5xx and every response conforms to the document (status, content type, body
schema). Orders it generates really go to the simulated terminals.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from mtgate.domain.clock import ManualClock
from mtgate.domain.enums import MarginMode, Platform
from mtgate.protocol.auth import Secret
from mtsim.world import AccountSpec, SimWorld
from tests.integration.test_event_sinks import _free_port
from tests.integration.test_serve import _wait_http

KEY_A, KEY_B = "c3" * 32, "d4" * 32
TOKEN = "admin-token-" + "5" * 32


async def test_no_generated_request_gets_a_5xx_or_breaks_the_schema(tmp_path: Path) -> None:
    st = shutil.which(str(Path(sys.executable).with_name("st"))) or shutil.which("st")
    if st is None:
        pytest.fail("schemathesis (st) is not installed: make install installs it", pytrace=False)
    port, api_port = _free_port(), _free_port()
    config = tmp_path / "mtgate.toml"
    config.write_text(
        f'[bridge]\nport = {port}\n[store]\nurl = "sqlite:///{tmp_path / "j.db"}"\n'
        f'[log]\nlevel = "ERROR"\n'
        f"[api]\nport = {api_port}\n"
        '[[api.tokens]]\nname = "ops"\nscopes = ["admin"]\ntoken_env = "OPS_TOKEN"\n'
        '[[terminals]]\nid = "a"\nkey_env = "KEY_A"\naccount = "7301@Sim-A"\n'
        '[[terminals]]\nid = "b"\nkey_env = "KEY_B"\naccount = "7401@Sim-B"\n'
    )
    env = {**os.environ, "KEY_A": KEY_A, "KEY_B": KEY_B, "OPS_TOKEN": TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mtgate.cli", "serve", "--config", str(config), env=env,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    world = SimWorld(
        [
            AccountSpec("a", 7301, "Sim-A", Platform.MT4, MarginMode.HEDGING,
                        key=Secret.from_hex(KEY_A)),
            AccountSpec("b", 7401, "Sim-B", Platform.MT5, MarginMode.NETTING,
                        key=Secret.from_hex(KEY_B)),
        ],
        clock=ManualClock(),
    )  # fmt: skip
    try:
        await _wait_http(f"http://127.0.0.1:{api_port}/livez")
        world.start("127.0.0.1", port)
        for tid in ("a", "b"):
            await asyncio.wait_for(world.terminals[tid].connected.wait(), 20)
        run = await asyncio.create_subprocess_exec(
            st, "run", f"http://127.0.0.1:{api_port}/v1/openapi.json",
            "-H", f"Authorization: Bearer {TOKEN}",
            "--checks", "not_a_server_error,status_code_conformance,"
            "content_type_conformance,response_schema_conformance",
            "--max-examples", "25", "--seed", "1", "--request-timeout", "30",
            "--phases", "examples,fuzzing",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
            cwd=tmp_path,  # its cache (.schemathesis/) stays out of the repository
        )  # fmt: skip
        out, _ = await asyncio.wait_for(run.communicate(), 600)
        report = out.decode(errors="replace")
        assert run.returncode == 0, report[-8000:]
        assert "passed" in report.lower(), report[-3000:]
    finally:
        await world.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            raise
