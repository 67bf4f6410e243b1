"""`mtgate serve`: the real entry point, as a process, with a configuration file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

import httpx
import pytest

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


TOKEN = "engine-token-" + "9" * 32


async def _wait_http(url: str, timeout_s: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def test_serve_places_an_order_over_http_on_a_simulated_terminal(tmp_path: Path) -> None:
    """The README's quick start: ``mtgate serve`` with an ``[api]`` table, a simulated
    terminal dialling in, and one HTTP call that fills an order."""
    port, api_port = _free_port(), _free_port()
    config = tmp_path / "mtgate.toml"
    config.write_text(
        f'[bridge]\nport = {port}\n[store]\nurl = "sqlite:///{tmp_path / "j.db"}"\n'
        f'[log]\nlevel = "WARNING"\n'
        f"[api]\nport = {api_port}\n"
        '[[api.tokens]]\nname = "engine"\nscopes = ["trade"]\ntoken_env = "ENGINE_TOKEN"\n'
        '[[terminals]]\nid = "served"\nkey_env = "SERVED_KEY"\naccount = "7001@Sim-Serve"\n'
    )
    env = {**os.environ, "SERVED_KEY": KEY, "ENGINE_TOKEN": TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mtgate.cli", "serve", "--config", str(config), env=env,
    )  # fmt: skip
    world = SimWorld(
        [AccountSpec("served", 7001, "Sim-Serve", Platform.MT5, MarginMode.HEDGING,
                     key=Secret.from_hex(KEY))],
        clock=ManualClock(),
    )  # fmt: skip
    base = f"http://127.0.0.1:{api_port}"
    try:
        world.start("127.0.0.1", port)
        await _wait_http(f"{base}/livez")
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(200):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            r = await client.post(
                "/v1/orders/market",
                json={"account": "7001@Sim-Serve", "symbol": "EURUSD", "side": "buy",
                      "volume": 0.1},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )  # fmt: skip
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "filled"
            spec = await client.get("/v1/orders", headers={"Authorization": "Bearer wrong"})
            assert spec.status_code == 401
    finally:
        await world.stop()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


@pytest.mark.parametrize(
    ("api", "expected"),
    [
        ("[api]\n", b"api.tokens"),
        ('[api]\n[[api.tokens]]\nname = "e"\nscopes = ["trade"]\ntoken = "short"\n', b"at least 32"),
        ('[api]\n[[api.tokens]]\nname = "e"\nscopes = ["root"]\ntoken = "' + "x" * 40 + '"\n',
         b"scopes"),
        ('[api]\n[[api.tokens]]\nname = "e"\nscopes = ["read"]\ntoken_env = "NOT_SET_HERE"\n',
         b"NOT_SET_HERE"),
    ],
)  # fmt: skip
async def test_serve_refuses_a_bad_api_config_naming_the_key(
    tmp_path: Path, api: str, expected: bytes
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(api)
    env = {k: v for k, v in os.environ.items() if k != "NOT_SET_HERE"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mtgate.cli", "serve", "--config", str(config),
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2, err
    assert expected in err
    assert b"x" * 40 not in err  # a token is never printed


async def test_the_api_serves_https_when_a_certificate_is_configured(tmp_path: Path) -> None:
    """``tls_cert`` and ``tls_key`` make the API HTTPS (a self-signed certificate here)."""
    from mtgate.api.server import ApiServer
    from mtgate.bridge import Bridge
    from mtgate.config import load
    from mtgate.store.journal import open_journal

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await made.wait() == 0
    config = tmp_path / "tls.toml"
    config.write_text(
        f'[api]\nport = 0\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
        f'[[api.tokens]]\nname = "e"\nscopes = ["read"]\ntoken = "{TOKEN}"\n'
    )
    cfg = load(config)
    bridge = Bridge(terminals={}, journal=open_journal(f"sqlite:///{tmp_path / 'j.db'}"))
    await bridge.start()
    server = ApiServer(bridge, cfg.api)
    try:
        host, port = await server.start()
        trust = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=trust) as client:
            r = await client.get(
                f"https://{host}:{port}/v1/terminals",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        assert (r.status_code, r.json()) == (200, [])
        async with httpx.AsyncClient() as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get(f"http://{host}:{port}/livez")
    finally:
        await server.stop()
        await bridge.stop()


async def _mtgate(*args: str, env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mtgate.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_config_check_says_ok_or_names_the_key(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[store]\nurl = "postgresql+psycopg://u:secret@db/x"\n'
        '[[terminals]]\nid = "t1"\nkey = "' + KEY + '"\naccount = "1@S"\n'
    )
    code, out, _ = await _mtgate("config", "check", str(good))
    assert code == 0 and b"ok: 1 terminal(s)" in out
    assert b"secret" not in out and KEY.encode() not in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[log]\nlevel = "LOUD"\n')
    code, _, err = await _mtgate("config", "check", str(bad))
    assert code == 2 and b"bad.toml" in err and b"level" in err


async def test_db_upgrade_brings_a_new_database_to_the_schema(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    config = tmp_path / "db.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{db}"\n')
    code, out, err = await _mtgate("db", "upgrade", "--config", str(config))
    assert code == 0, err
    assert b"schema up to date" in out
    import sqlite3

    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"execution_orders", "order_events", "alembic_version"} <= tables
    code, _, _ = await _mtgate("db", "upgrade", "--config", str(config))  # idempotent
    assert code == 0


async def test_logs_are_json_lines_when_standard_error_is_not_a_terminal() -> None:
    script = (
        "from mtgate import logs; logs.configure(json=None); "
        "logs.get('t').info('order moved', client_order_id='c1', ticket=5)"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    line = json.loads(err.decode().strip().splitlines()[-1])
    assert line["event"] == "order moved" and line["client_order_id"] == "c1"
    assert line["ticket"] == 5 and line["level"] == "info" and "timestamp" in line
