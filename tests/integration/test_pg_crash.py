"""`mtgate serve` on PostgreSQL, killed (SIGKILL) between an order's intent and its answer.

The journal commits the intent before the frame leaves and writes the answer behind: a crash in
between leaves the order SUBMITTED in the journal while the terminal has executed it. Restarted
on the same database, the bridge must end the order with the terminal's true outcome (the fill),
executed once, without sending it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from mtgate.client import Client
from mtgate.domain.clock import SystemClock
from mtgate.domain.enums import MarginMode, Platform
from mtgate.execution.requests import MarketOrderRequest, Side
from mtgate.protocol.auth import Secret
from mtsim.faults import Fault, FaultKind
from mtsim.world import AccountSpec, SimWorld
from tests.integration.test_event_sinks import _free_port
from tests.integration.test_serve import _wait_http

pytestmark = pytest.mark.postgres

KEY = "c3" * 32
TOKEN = "engine-token-" + "9" * 32
CID = "pg-crash-1"


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), {"c": CID})]
    finally:
        engine.dispose()


async def _serve(config: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "KEY_A": KEY, "ENGINE_TOKEN": TOKEN}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mtgate.cli", "serve", "--config", str(config), env=env,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _ready(client: Client) -> None:
    for _ in range(200):
        with contextlib.suppress(Exception):
            if (await client.ready()).status == "ok":
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the bridge did not become ready")


async def test_a_bridge_killed_between_intent_and_answer_ends_with_the_fill(
    tmp_path: Path, pg_schema_url: str
) -> None:
    port, api_port = _free_port(), _free_port()
    config = tmp_path / "mtgate.toml"
    config.write_text(
        f'[bridge]\nport = {port}\n[store]\nurl = "{pg_schema_url}"\n[log]\nlevel = "WARNING"\n'
        f"[api]\nport = {api_port}\n"
        '[[api.tokens]]\nname = "engine"\nscopes = ["trade", "read"]\ntoken_env = "ENGINE_TOKEN"\n'
        '[[terminals]]\nid = "a"\nkey_env = "KEY_A"\naccount = "7301@Sim-PG"\n'
    )
    world = SimWorld(
        [AccountSpec("a", 7301, "Sim-PG", Platform.MT5, MarginMode.HEDGING,
                     key=Secret.from_hex(KEY))],
        clock=SystemClock(),
    )  # fmt: skip
    terminal = world.terminals["a"]
    base = f"http://127.0.0.1:{api_port}"
    first = await _serve(config)
    second: asyncio.subprocess.Process | None = None
    try:
        await _wait_http(f"{base}/livez")
        world.start("127.0.0.1", port)
        async with Client(base, TOKEN) as client:
            await _ready(client)
            # Executed at once on the server; the answer never comes back.
            terminal.plan.script(Fault(FaultKind.LATE_ANSWER, delay_ms=0))
            placing = asyncio.create_task(
                client.place_market_order(
                    MarketOrderRequest(account="7301@Sim-PG", symbol="EURUSD", side=Side.BUY,
                                       volume=0.1, client_order_id=CID)
                )
            )  # fmt: skip
            for _ in range(200):
                if world.servers["Sim-PG"].positions(7301):
                    break
                await asyncio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            with contextlib.suppress(Exception):
                await placing
        # The intent was durable, the answer never journalled: what the crash left.
        assert _rows(pg_schema_url, "SELECT order_status FROM execution_orders "
                     "WHERE client_order_id = :c") == [("submitted",)]  # fmt: skip
        assert len(world.servers["Sim-PG"].positions(7301)) == 1

        second = await _serve(config)
        await _wait_http(f"{base}/livez")
        async with Client(base, TOKEN) as client:
            await _ready(client)
            found = None
            for _ in range(200):
                found = await client.get_order("7301@Sim-PG", client_order_id=CID)
                if found is not None and found.status == "filled":
                    break
                await asyncio.sleep(0.05)
            assert found is not None and found.status == "filled", found
        positions = world.servers["Sim-PG"].positions(7301)
        assert len(positions) == 1  # executed once: no second order was sent
        assert found.position_id == positions[0].ticket
        trail = _rows(
            pg_schema_url,
            "SELECT from_status, to_status FROM order_events WHERE client_order_id = :c "
            "ORDER BY id",
        )
        assert trail[-1][1] == "filled" and ("new", "submitted") in trail
    finally:
        await world.stop()
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
