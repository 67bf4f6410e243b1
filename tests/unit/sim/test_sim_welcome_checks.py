"""The simulated EA checks a ``welcome`` as docs/protocol.md §3.3 says: version, proof, then
its values (nonce, heartbeat range, features it offered); a bad value is ``bye
invalid_message`` and no ``auth`` is sent. And the handshake's other EA rules (§3.1)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mtgate.domain.enums import Platform
from mtgate.protocol import messages as m
from mtgate.protocol.auth import bridge_proof, new_key, new_nonce
from mtsim.server import TradeServer
from mtsim.terminal import SimTerminal, TerminalConfig
from tests.unit.sim.simdesk import MakeDesk
from tests.unit.sim.simwire import BridgeEnd, WireBridge


@contextlib.asynccontextmanager
async def _after_hello(
    server: TradeServer, config: TerminalConfig
) -> AsyncIterator[tuple[WireBridge, m.Hello]]:
    """A terminal dialed in; its ``hello`` read, nothing answered yet."""
    async with BridgeEnd() as end:
        terminal = SimTerminal(server, config)
        closed = await terminal.connect("127.0.0.1", end.port)
        try:
            bridge = await end.accepted()
            hello = await bridge.receive()
            assert isinstance(hello, m.Hello)
            yield bridge, hello
        finally:
            terminal.stop()
            await asyncio.wait_for(closed.wait(), 5)


async def _answer_hello_with(make_desk: MakeDesk, **welcome: Any) -> list[Any]:
    """The frames the terminal sends after ``hello`` when it gets a welcome with ``welcome``
    (over the good values), until it closes or 1 s passes."""
    desk = make_desk(Platform.MT5)
    key = new_key()
    config = TerminalConfig(terminal_id="t1", key=key, login=desk.login)
    async with _after_hello(desk.server, config) as (bridge, hello):
        nonce = welcome.pop("nonce", new_nonce())
        values: dict[str, Any] = {
            "v": m.PROTOCOL_VERSION,
            "nonce": nonce,
            "proof": bridge_proof(key, "t1", hello.nonce, nonce),
            "session": "s1",
            "heartbeat_ms": 1000,
            "features": [],
        }
        values.update(welcome)
        bridge.send(m.Welcome(**values))
        try:
            return await bridge.until_closed(1.0)
        except TimeoutError:
            return bridge.frames[1:]


@pytest.mark.parametrize(
    ("welcome", "why"),
    [
        ({"heartbeat_ms": 70_000}, "heartbeat_ms 70000"),
        ({"heartbeat_ms": 99}, "heartbeat_ms 99"),
        ({"nonce": "AB" * 16}, "nonce"),
        ({"features": ["sync", "teleport"]}, "not offered"),
    ],
)
async def test_a_welcome_with_a_bad_value_is_refused_before_auth(
    make_desk: MakeDesk, welcome: dict[str, Any], why: str
) -> None:
    frames = await _answer_hello_with(make_desk, **welcome)
    assert not [f for f in frames if isinstance(f, m.Auth)]
    [bye] = [f for f in frames if isinstance(f, m.Bye)]
    assert bye.code == "invalid_message" and why in bye.reason


@pytest.mark.parametrize("heartbeat_ms", [100, 60_000])
async def test_the_heartbeat_range_is_inclusive(make_desk: MakeDesk, heartbeat_ms: int) -> None:
    frames = await _answer_hello_with(make_desk, heartbeat_ms=heartbeat_ms)
    assert [type(f) for f in frames[:1]] == [m.Auth]
    assert not [f for f in frames if isinstance(f, m.Bye)]


async def test_a_bridge_that_never_answers_hello_is_left_at_the_handshake_deadline(
    make_desk: MakeDesk,
) -> None:
    """§3.1: the deadline binds either side; the EA's own runs from the connection."""
    desk = make_desk(Platform.MT4)
    config = TerminalConfig(
        terminal_id="t1", key=new_key(), login=desk.login, handshake_timeout_s=0.3
    )
    started = asyncio.get_running_loop().time()
    async with _after_hello(desk.server, config) as (bridge, _):  # the bridge says nothing
        frames = await bridge.until_closed(3.0)
        waited = asyncio.get_running_loop().time() - started
    [bye] = [f for f in frames if isinstance(f, m.Bye)]
    assert bye.code == "handshake_timeout" and 0.3 <= waited < 2.0


async def test_a_request_before_ready_is_refused_and_never_executed(make_desk: MakeDesk) -> None:
    """§3.1: an EA MUST NOT execute or even queue a request before ``ready``."""
    desk = make_desk(Platform.MT5)
    config = TerminalConfig(terminal_id="t1", key=new_key(), login=desk.login)
    async with _after_hello(desk.server, config) as (bridge, _):
        bridge.send(
            m.MarketOrder(id=1, symbol="EURUSD", order_type=0, volume=0.1, magic=1, comment="x")
        )
        frames = await bridge.until_closed(3.0)
    [bye] = [f for f in frames if isinstance(f, m.Bye)]
    assert bye.code == "not_ready"
    assert not [f for f in frames if isinstance(f, m.Response)]
    assert not [e for e in desk.server.executed if isinstance(e.request, m.MarketOrder)]
