"""Malformed, unauthenticated and duplicate peers are refused; the others keep trading."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import NamedTuple

import pytest
import structlog.testing

from mtgate import logs
from mtgate.bridge import Bridge
from mtgate.domain.enums import MarginMode, Platform
from mtgate.domain.orders import OrderStatus
from mtgate.protocol import auth, codec
from mtgate.protocol import messages as m
from mtgate.protocol.auth import new_key
from mtgate.sessions import session as session_module
from mtgate.sessions.registry import HandshakeLimits
from mtgate.sessions.session import UNKNOWN_TERMINAL, grants_for
from mtgate.store.journal import open_journal
from mtsim.terminal import SimTerminal, TerminalConfig
from mtsim.world import AccountSpec
from tests.integration.conftest import MT4, MT5H, Harness, HarnessFactory, eventually


def _frame(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def _hello(terminal_id: str, **over: object) -> dict[str, object]:
    hello: dict[str, object] = {
        "type": "hello",
        "v": m.PROTOCOL_VERSION,
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


async def _read_until_closed(
    reader: asyncio.StreamReader, rx: auth.FrameSeal | None = None
) -> list[m.Message]:
    """Every frame the bridge sends until it closes the connection (``rx``: opened first)."""
    decoder = codec.FrameDecoder()
    out: list[m.Message] = []
    while True:
        data = await asyncio.wait_for(reader.read(65536), 5)
        if not data:
            return out
        for body in decoder.feed(data):
            out.append(codec.decode_for_terminal(body if rx is None else rx.open(body)))


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
        (_frame(_hello("mt5h", v=1)), "unsupported_version"),  # protocol 1: no sealed frames
        (_frame(_hello("mt5h", v=3)), "unsupported_version"),
        (_frame(_hello("nobody")), "unknown_terminal"),
        (_frame(_hello("x" * 65)), "unknown_terminal"),  # any id without a key (spec §3.3)
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
        "version-1",
        "version-3",
        "unknown-terminal",
        "malformed-terminal-id",
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


async def test_terminal_refuses_a_bridge_without_the_key(
    make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bridge configured with another key gets nothing executed by the terminal."""
    # The refusal log is throttled process-wide: earlier tests' refusals must not hide this one.
    monkeypatch.setattr(session_module, "_refusals", logs.Throttle(per_s=5.0))
    accounts = [AccountSpec("lonely", 3001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING)]
    h = await make_harness(accounts, start=False)
    h.bridge = Bridge(
        terminals=grants_for([("lonely", new_key(), 3001, "Sim-MT5")]),
        journal=open_journal(f"sqlite:///{h.db}"),
    )
    host, port = await h.bridge.start()
    terminal = h.terminal("lonely")
    with structlog.testing.capture_logs() as logged:
        closed = await terminal.connect(host, port)
        await asyncio.wait_for(closed.wait(), 5)
        await eventually(
            lambda: any(e["event"] == "terminal refused the handshake" for e in logged)
        )
    # The operator sees the refusal on the bridge's side too (review D12).
    [refusal] = [e for e in logged if e["event"] == "terminal refused the handshake"]
    assert (refusal["terminal"], refusal["code"], refusal["log_level"]) == (
        "lonely",
        "auth_failed",
        "warning",
    )
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


# --- account identity and what a peer learns before it authenticates --------------------------


class _Seals(NamedTuple):
    tx: auth.FrameSeal
    rx: auth.FrameSeal

    def frame(self, msg: m.Message) -> bytes:
        sealed = self.tx.seal(codec.encode(msg)[codec.HEADER_BYTES :])
        return struct.pack(">I", len(sealed)) + sealed


async def _handshake(
    harness: Harness, hello: dict[str, object], key: auth.Secret
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, codec.FrameDecoder, _Seals]:
    """A hand-made EA: hello, check the bridge's proof, auth; then the session's seals."""
    assert harness.bridge.address is not None
    reader, writer = await asyncio.open_connection(*harness.bridge.address)
    hello_frame = _frame(hello)
    writer.write(hello_frame)
    decoder = codec.FrameDecoder()
    bodies: list[bytes] = []
    while not bodies:
        bodies += decoder.feed(await reader.read(65536))
    welcome = codec.decode_for_terminal(bodies[0])
    assert isinstance(welcome, m.Welcome)
    tid, nonce = str(hello["terminal_id"]), str(hello["nonce"])
    assert welcome.proof == auth.bridge_proof(key, tid, nonce, welcome.nonce)
    writer.write(codec.encode(m.Auth(proof=auth.ea_proof(key, tid, nonce, welcome.nonce))))
    frames = auth.session_key(key, tid, nonce, welcome.nonce, hello_frame[4:], bodies[0])
    seals = _Seals(auth.FrameSeal(frames, auth.TO_BRIDGE), auth.FrameSeal(frames, auth.TO_EA))
    return reader, writer, decoder, seals


async def test_f1_hello_for_an_account_the_key_is_not_bound_to_is_refused(
    harness: Harness,
) -> None:
    """mt5n's key is bound to 2002@Sim-MT5: its holder cannot say hello for 2001 (mt5h's
    account), and is refused before any welcome, exactly like an unknown terminal id."""
    other_account = await _send_raw(harness, _frame(_hello("mt5n", login=2001)))
    unknown_id = await _send_raw(harness, _frame(_hello("nobody")))
    assert not any(isinstance(f, m.Welcome) for f in other_account)
    for frames in (other_account, unknown_id):
        byes = [f for f in frames if isinstance(f, m.Bye)]
        assert [(b.code, b.reason) for b in byes] == [("unknown_terminal", UNKNOWN_TERMINAL)]
    await _still_trades(harness)


async def test_f1_a_key_holder_cannot_trade_or_report_for_another_account(
    harness: Harness,
) -> None:
    """A real terminal with mt5n's valid key, logged into mt5h's account: it gets no session,
    so orders for 2001 still go to mt5h and nothing it says reaches 2001's orders."""
    harness.terminal("mt5n").stop()
    await eventually(lambda: harness.bridge.registry.ready_session("mt5n") is None)
    impostor = SimTerminal(
        harness.server(MT5H),
        TerminalConfig(terminal_id="mt5n", key=harness.terminal("mt5n").config.key, login=2001),
    )
    assert harness.bridge.address is not None
    closed = await impostor.connect(*harness.bridge.address)
    await asyncio.wait_for(closed.wait(), 5)
    assert impostor.sessions == 0
    assert impostor.last_bye.startswith("unknown_terminal")
    r = await harness.bridge.place_market_order(
        account=harness.account(MT5H), symbol="EURUSD", side="buy", volume=0.01
    )
    assert (r.status, r.terminal_id) == (OrderStatus.FILLED, MT5H)


async def test_f1_a_terminal_reporting_another_account_never_becomes_ready(
    harness: Harness,
) -> None:
    """The hello names the bound account, the terminal's own account report another one:
    the session is closed at onboarding, before any order is routed to it."""
    harness.terminal(MT5H).stop()
    await eventually(lambda: harness.bridge.registry.ready_session(MT5H) is None)
    key = harness.terminal(MT5H).config.key
    reader, writer, decoder, seals = await _handshake(harness, _hello(MT5H), key)
    report = harness.server(MT5H).account(2002)  # the netting account's figures
    frames: list[m.Message] = []
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                break
            for body in decoder.feed(data):
                msg = codec.decode_for_terminal(seals.rx.open(body))
                frames.append(msg)
                if isinstance(msg, m.AccountInfo):
                    payload = codec.encode_payload(report)
                    writer.write(seals.frame(m.Response(id=msg.id, ok=True, result=payload)))
    finally:
        writer.close()
    assert _bye_code(frames) == "sync_failed"
    assert not any(isinstance(f, m.TRADE_OPS) for f in frames)
    assert harness.bridge.registry.ready_session(MT5H) is None


async def test_f15_frames_before_authentication_are_small(harness: Harness) -> None:
    """A header announcing 64 KiB before hello is refused at once (after ready the limit is
    1 MiB): an unauthenticated peer cannot make the bridge buffer or decode a megabyte."""
    frames = await _send_raw(harness, struct.pack(">I", 64 * 1024) + b"{")
    assert _bye_code(frames) == "frame_too_large"
    await _still_trades(harness)


async def test_f15_a_peer_without_the_key_learns_nothing_about_live_terminals(
    harness: Harness,
) -> None:
    """A hello for a terminal that is online is answered like any other (welcome), not with
    duplicate_terminal and its address: who is online is said only after the proofs."""
    assert harness.bridge.address is not None
    reader, writer = await asyncio.open_connection(*harness.bridge.address)
    hello = _hello(MT5H)
    writer.write(_frame(hello))
    decoder = codec.FrameDecoder()
    frames: list[m.Message] = []
    while not frames:
        frames += [codec.decode_for_terminal(b) for b in decoder.feed(await reader.read(65536))]
    assert isinstance(frames[0], m.Welcome)
    writer.write(codec.encode(m.Auth(proof="0" * 64)))
    frames += await _read_until_closed(reader)
    writer.close()
    byes = [f for f in frames if isinstance(f, m.Bye)]
    assert [b.code for b in byes] == ["auth_failed"]
    assert "127.0.0.1" not in byes[0].reason
    assert harness.terminal(MT5H).connected.is_set()


async def test_f15_duplicate_terminal_names_no_address(harness: Harness) -> None:
    """The key holder of a live terminal is told the id is busy, not where from."""
    key = harness.terminal(MT5H).config.key
    reader, writer, _, seals = await _handshake(harness, _hello(MT5H), key)
    frames = await _read_until_closed(reader, seals.rx)
    writer.close()
    byes = [f for f in frames if isinstance(f, m.Bye)]
    assert [b.code for b in byes] == ["duplicate_terminal"]
    assert "127.0.0.1" not in byes[0].reason


async def _silent_connection(harness: Harness) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert harness.bridge.address is not None
    return await asyncio.open_connection(*harness.bridge.address)


async def _closed_without_a_word(reader: asyncio.StreamReader) -> bool:
    data = await asyncio.wait_for(reader.read(65536), 2)
    return data == b""


async def test_f15_connections_in_the_handshake_are_capped(make_harness: HarnessFactory) -> None:
    """With 2 handshakes allowed at once, a third silent connection is closed at once (and
    the terminals already in keep trading)."""
    h = await make_harness(handshake_limits=HandshakeLimits(max_pending=2))
    first = [await _silent_connection(h) for _ in range(2)]
    await eventually(lambda: h.bridge.registry.handshakes_in_progress() == 2)
    refused = h.bridge.registry.refused_connections  # the harness's start may have hit it too
    reader, writer = await _silent_connection(h)
    assert await _closed_without_a_word(reader)
    assert h.bridge.registry.refused_connections == refused + 1
    for _, w in [*first, (reader, writer)]:
        w.close()
    await eventually(lambda: h.bridge.registry.handshakes_in_progress() == 0)
    await _still_trades(h)


async def test_f15_connections_per_address_are_rate_limited(make_harness: HarnessFactory) -> None:
    """One address may open ``burst`` connections at once, then ``per_s``."""
    solo = [AccountSpec("solo", 3001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING)]
    h = await make_harness(solo, handshake_limits=HandshakeLimits(burst=1, per_s=0.01))
    # The harness's terminal took the only token.
    reader, writer = await _silent_connection(h)
    assert await _closed_without_a_word(reader)
    writer.close()
    assert h.bridge.registry.refused_connections >= 1
