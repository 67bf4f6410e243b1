"""Malformed, unauthenticated and duplicate peers are refused; the others keep trading."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest

from mtgate.domain.enums import MarginMode, Platform
from mtgate.domain.orders import OrderStatus
from mtgate.protocol import auth, codec
from mtgate.protocol import messages as m
from mtgate.protocol.auth import new_key
from mtsim.terminal import SimTerminal, TerminalConfig
from mtsim.world import AccountSpec
from tests.integration.conftest import MT4, MT5H, Harness, HarnessFactory, eventually


def _frame(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def _hello(terminal_id: str, **over: object) -> dict[str, object]:
    hello: dict[str, object] = {
        "type": "hello",
        "v": 1,
        "platform": "mt5",
        "build": 4000,
        "login": 2001,
        "server": "Sim-MT5",
        "company": "x",
        "currency": "USD",
        "leverage": 100,
        "margin_mode": 2,
        "terminal_id": terminal_id,
        "ea_version": "1",
        "nonce": auth.new_nonce(),
    }
    hello.update(over)
    return hello


async def _read_until_closed(reader: asyncio.StreamReader) -> list[m.Message]:
    """Every frame the bridge sends until it closes the connection."""
    decoder = codec.FrameDecoder()
    out: list[m.Message] = []
    while True:
        data = await asyncio.wait_for(reader.read(65536), 5)
        if not data:
            return out
        for body in decoder.feed(data):
            out.append(codec.decode_for_terminal(body))


async def _send_raw(harness: Harness, payload: bytes) -> list[m.Message]:
    assert harness.bridge.address is not None
    reader, writer = await asyncio.open_connection(*harness.bridge.address)
    writer.write(payload)
    await writer.drain()
    try:
        return await _read_until_closed(reader)
    finally:
        writer.close()


async def _still_trades(harness: Harness) -> None:
    r = await harness.bridge.place_market_order(
        account=harness.account(MT4), symbol="EURUSD", side="buy", volume=0.01
    )
    assert r.status == OrderStatus.FILLED


def _bye_code(frames: list[m.Message]) -> str:
    byes = [f for f in frames if isinstance(f, m.Bye)]
    assert byes, f"no bye in {frames}"
    return byes[-1].code


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (struct.pack(">I", (1 << 20) + 1) + b"{", "frame_too_large"),
        (struct.pack(">I", 7) + b"{nope}}", "bad_json"),
        (_frame({"type": "launch_missiles", "id": 1}), "invalid_message"),
        (_frame(_hello("mt5h", login="2001")), "invalid_message"),
        (_frame(_hello("mt5h", extra=1)), "invalid_message"),
        (_frame(_hello("mt5h", nonce="short")), "invalid_message"),
        (_frame(_hello("mt5h", v=2)), "unsupported_version"),
        (_frame(_hello("nobody")), "unknown_terminal"),
        (
            _frame(
                {
                    "type": "market_order",
                    "id": 1,
                    "symbol": "EURUSD",
                    "order_type": 0,
                    "volume": 1,
                    "magic": 0,
                    "comment": "",
                }
            ),
            "invalid_message",
        ),
        (_frame({"type": "ping", "t_ms": 1}), "not_ready"),
    ],
    ids=[
        "oversize",
        "bad-json",
        "unknown-type",
        "wrong-field-type",
        "unknown-field",
        "bad-nonce",
        "version",
        "unknown-terminal",
        "request-from-terminal",
        "before-hello",
    ],
)
async def test_malformed_peer_is_closed_with_a_reason(
    harness: Harness, payload: bytes, code: str
) -> None:
    frames = await _send_raw(harness, payload)
    assert _bye_code(frames) == code
    await _still_trades(harness)


async def test_peer_that_cannot_prove_the_key_is_refused(harness: Harness) -> None:
    """A known terminal id with the wrong key: the impostor's proof fails at the bridge."""
    assert harness.bridge.address is not None
    harness.terminal(MT5H).stop()  # the id is free: only the key is missing
    await eventually(lambda: all(s.terminal_id != MT5H for s in harness.bridge.registry.sessions()))
    reader, writer = await asyncio.open_connection(*harness.bridge.address)
    hello = _hello("mt5h")
    writer.write(_frame(hello))
    decoder = codec.FrameDecoder()
    welcome = None
    while welcome is None:
        for body in decoder.feed(await asyncio.wait_for(reader.read(65536), 5)):
            welcome = codec.decode_for_terminal(body)
    assert isinstance(welcome, m.Welcome)
    wrong = auth.ea_proof(new_key(), "mt5h", str(hello["nonce"]), welcome.nonce)
    writer.write(codec.encode(m.Auth(proof=wrong)))
    frames = await _read_until_closed(reader)
    writer.close()
    assert _bye_code(frames) == "auth_failed"
    await _still_trades(harness)


async def test_terminal_refuses_a_bridge_without_the_key(make_harness: HarnessFactory) -> None:
    """A bridge configured with another key gets nothing executed by the terminal."""
    accounts = [AccountSpec("lonely", 3001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING)]
    h = await make_harness(accounts, start=False)
    impostor_keys = {"lonely": new_key()}
    h.bridge._keys = impostor_keys
    host, port = await h.bridge.start()
    terminal = h.terminal("lonely")
    closed = await terminal.connect(host, port)
    await asyncio.wait_for(closed.wait(), 5)
    assert terminal.sessions == 0
    assert not [e for e in h.server("lonely").executed if isinstance(e.request, m.TRADE_OPS)]
    assert h.bridge.registry.sessions() == []
    r = await h.bridge.place_market_order(
        account=h.account("lonely"), symbol="EURUSD", side="buy", volume=0.01
    )
    assert (
        r.status == OrderStatus.REJECTED and r.error is not None and r.error.rule == "not_routable"
    )


async def test_second_session_with_the_same_terminal_id_is_refused(harness: Harness) -> None:
    original = harness.terminal(MT5H)
    clone = SimTerminal(
        original.server,
        TerminalConfig(terminal_id=MT5H, key=original.config.key, login=original.config.login),
    )
    assert harness.bridge.address is not None
    closed = await clone.connect(*harness.bridge.address)
    await asyncio.wait_for(closed.wait(), 5)
    assert clone.last_bye.startswith("duplicate_terminal")
    r = await harness.bridge.place_market_order(
        account=harness.account(MT5H), symbol="EURUSD", side="buy", volume=0.01
    )
    assert r.status == OrderStatus.FILLED
    assert original.connected.is_set()


async def test_terminal_that_stops_answering_is_dropped_after_missed_heartbeats(
    harness: Harness,
) -> None:
    terminal = harness.terminal(MT5H)
    terminal.faults.frozen = True
    await eventually(
        lambda: all(s.terminal_id != MT5H for s in harness.bridge.registry.sessions()), timeout_s=5
    )
    r = await harness.bridge.place_market_order(
        account=harness.account(MT5H), symbol="EURUSD", side="buy", volume=0.01
    )
    assert r.status == OrderStatus.REJECTED
    assert r.error is not None and r.error.rule == "not_routable"
    await _still_trades(harness)
