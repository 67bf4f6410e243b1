"""The simulated EA checks a ``welcome`` as docs/protocol.md §3.3 says: version, proof, then
its values (nonce, heartbeat range, features it offered); a bad value is ``bye
invalid_message`` and no ``auth`` is sent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mtgate.domain.enums import Platform
from mtgate.protocol import messages as m
from mtgate.protocol.auth import bridge_proof, new_key, new_nonce
from mtsim.terminal import SimTerminal, TerminalConfig
from tests.unit.sim.simdesk import MakeDesk
from tests.unit.sim.simwire import WireBridge


async def _answer_hello_with(make_desk: MakeDesk, **welcome: Any) -> list[Any]:
    """The frames the terminal sends after ``hello`` when it gets a welcome with ``welcome``
    (over the good values), until it closes or 1 s passes."""
    desk = make_desk(Platform.MT5)
    key = new_key()
    accepted: asyncio.Queue[WireBridge] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(WireBridge(reader, writer))

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    terminal = SimTerminal(desk.server, TerminalConfig(terminal_id="t1", key=key, login=desk.login))
    closed = await terminal.connect("127.0.0.1", port)
    try:
        bridge = await asyncio.wait_for(accepted.get(), 5)
        hello = await bridge.receive()
        assert isinstance(hello, m.Hello)
        nonce = welcome.pop("nonce", new_nonce())
        values: dict[str, Any] = {
            "v": 1,
            "nonce": nonce,
            "proof": bridge_proof(key, "t1", hello.nonce, nonce),
            "session": "s1",
            "heartbeat_ms": 1000,
            "features": [],
        }
        values.update(welcome)
        bridge.send(m.Welcome(**values))
        try:
            frames = await bridge.until_closed(1.0)
        except TimeoutError:
            frames = bridge.frames[1:]
        return frames
    finally:
        terminal.stop()
        await asyncio.wait_for(closed.wait(), 5)
        listener.close()


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
    accepted: asyncio.Queue[WireBridge] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(WireBridge(reader, writer))

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    config = TerminalConfig(
        terminal_id="t1", key=new_key(), login=desk.login, handshake_timeout_s=0.3
    )
    terminal = SimTerminal(desk.server, config)
    started = asyncio.get_running_loop().time()
    closed = await terminal.connect("127.0.0.1", port)
    try:
        bridge = await asyncio.wait_for(accepted.get(), 5)
        assert isinstance(await bridge.receive(), m.Hello)  # and the bridge says nothing
        frames = await bridge.until_closed(3.0)
        waited = asyncio.get_running_loop().time() - started
        [bye] = [f for f in frames if isinstance(f, m.Bye)]
        assert bye.code == "handshake_timeout" and 0.3 <= waited < 2.0
    finally:
        terminal.stop()
        await asyncio.wait_for(closed.wait(), 5)
        listener.close()


async def test_a_request_before_ready_is_refused_and_never_executed(make_desk: MakeDesk) -> None:
    """§3.1: an EA MUST NOT execute or even queue a request before ``ready``."""
    desk = make_desk(Platform.MT5)
    accepted: asyncio.Queue[WireBridge] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(WireBridge(reader, writer))

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    terminal = SimTerminal(
        desk.server, TerminalConfig(terminal_id="t1", key=new_key(), login=desk.login)
    )
    closed = await terminal.connect("127.0.0.1", port)
    try:
        bridge = await asyncio.wait_for(accepted.get(), 5)
        assert isinstance(await bridge.receive(), m.Hello)
        bridge.send(
            m.MarketOrder(id=1, symbol="EURUSD", order_type=0, volume=0.1, magic=1, comment="x")
        )
        frames = await bridge.until_closed(3.0)
    finally:
        terminal.stop()
        await asyncio.wait_for(closed.wait(), 5)
        listener.close()
    [bye] = [f for f in frames if isinstance(f, m.Bye)]
    assert bye.code == "not_ready"
    assert not [f for f in frames if isinstance(f, m.Response)]
    assert not [e for e in desk.server.executed if isinstance(e.request, m.MarketOrder)]
