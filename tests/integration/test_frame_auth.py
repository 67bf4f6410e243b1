"""Frames injected into a live session by a third party on the path (docs/protocol.md §3.5).

A relay on loopback sits between a simulated terminal and the bridge, passing whole frames
both ways, and injects its own once the session is ready: a trade toward the terminal, a fill
toward the bridge, a replayed frame. Each ends the session (``bad_mac`` / ``out_of_order``) and
nothing is executed; the terminal then reconnects and trades as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
from collections.abc import Callable

import structlog.testing

from mtgate.domain.enums import MarginMode, Platform
from mtgate.domain.orders import OrderStatus
from mtgate.protocol import auth, codec
from mtgate.protocol import messages as m
from mtsim.world import AccountSpec
from tests.integration.conftest import MT5H, Harness, HarnessFactory, eventually

_LEN = struct.Struct(">I")


class Relay:
    """A man in the middle: accepts the terminal, dials the bridge, relays whole frames, and
    writes its own between them."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.to_ea: asyncio.StreamWriter | None = None
        self.to_bridge: asyncio.StreamWriter | None = None
        self.from_ea: list[bytes] = []
        """Every frame body the terminal sent, in order (sealed after the handshake)."""
        self.connections = 0
        self.rewrite_hello: Callable[[bytes], bytes] | None = None
        """Changes the terminal's first frame (its ``hello``) on the way."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, ea_r: asyncio.StreamReader, ea_w: asyncio.StreamWriter) -> None:
        br_r, br_w = await asyncio.open_connection(*self.target)
        self.connections += 1
        self.to_ea, self.to_bridge = ea_w, br_w
        self.from_ea = []

        async def pipe(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, seen: list[bytes] | None
        ) -> None:
            decoder = codec.FrameDecoder()
            with contextlib.suppress(Exception):
                while chunk := await r.read(65536):
                    for body in decoder.feed(chunk):
                        if seen is not None:
                            if not seen and self.rewrite_hello is not None:
                                body = self.rewrite_hello(body)
                            seen.append(body)
                        w.write(_LEN.pack(len(body)) + body)
            w.close()

        for task in (
            asyncio.create_task(pipe(ea_r, br_w, self.from_ea)),
            asyncio.create_task(pipe(br_r, ea_w, None)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def _through_relay(make_harness: HarnessFactory) -> tuple[Harness, Relay]:
    harness = await make_harness(
        [AccountSpec(MT5H, 2001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING)], start=False
    )
    host, port = await harness.bridge.start()
    relay = Relay((host, port))
    await relay.start()
    harness.world.start("127.0.0.1", relay.port)
    await harness.ready()
    return harness, relay


def _forged_trade() -> bytes:
    """A market order as the bridge would encode it, without the session key."""
    order = m.MarketOrder(id=90_001, symbol="EURUSD", order_type=0, volume=0.1, magic=1,
                          comment="mg:injected", deviation=10)  # fmt: skip
    return codec.encode(order)


async def _session_ends(harness: Harness, relay: Relay) -> None:
    """The first session dies and the terminal comes back through the relay, ready."""
    await eventually(lambda: relay.connections >= 2, timeout_s=10)
    await harness.ready()


async def test_a_trade_injected_toward_the_terminal_ends_the_session_unexecuted(
    make_harness: HarnessFactory,
) -> None:
    harness, relay = await _through_relay(make_harness)
    try:
        terminal = harness.terminal(MT5H)
        assert relay.to_ea is not None
        for frame in (_forged_trade(), _sealed_with(auth.new_key(), _forged_trade())):
            relay.to_ea.write(frame)
            await _session_ends(harness, relay)
            assert terminal.last_bye == ""  # the terminal closed, it was not told to
            assert harness.trades_seen(MT5H) == 0
            assert not harness.server(MT5H).positions(2001)
            relay.connections = 1
        r = await harness.bridge.place_market_order(
            account=harness.account(MT5H), symbol="EURUSD", side="buy", volume=0.1
        )
        assert r.status == OrderStatus.FILLED
        assert harness.trades_seen(MT5H) == 1
    finally:
        await relay.stop()


async def test_a_frame_injected_toward_the_bridge_ends_the_session(
    make_harness: HarnessFactory,
) -> None:
    harness, relay = await _through_relay(make_harness)
    try:
        fill = m.Event(name="order", seq=999, data=codec.encode_payload({"ticket": 1}))
        assert relay.to_bridge is not None
        with structlog.testing.capture_logs() as logs:
            relay.to_bridge.write(codec.encode(fill))
            await _session_ends(harness, relay)
        closes = [e for e in logs if e["event"] == "protocol error"]
        assert closes and closes[0]["code"] == "bad_mac", logs
        assert harness.trades_seen(MT5H) == 0
    finally:
        await relay.stop()


async def test_a_replayed_frame_is_out_of_order_and_ends_the_session(
    make_harness: HarnessFactory,
) -> None:
    harness, relay = await _through_relay(make_harness)
    try:
        await eventually(lambda: len(relay.from_ea) >= 4)  # hello, auth and sealed frames
        replayed = relay.from_ea[2]  # the terminal's first sealed frame
        assert relay.to_bridge is not None
        with structlog.testing.capture_logs() as logs:
            relay.to_bridge.write(_LEN.pack(len(replayed)) + replayed)
            await _session_ends(harness, relay)
        closes = [e for e in logs if e["event"] == "protocol error"]
        assert closes and closes[0]["code"] == "out_of_order", logs
    finally:
        await relay.stop()


def _sealed_with(key: auth.Secret, frame: bytes) -> bytes:
    """``frame`` sealed as frame 0 under a key of the attacker's own."""
    seal = auth.FrameSeal(auth.session_key(key, MT5H, "0" * 32, "1" * 32, b"", b""), auth.TO_EA)
    sealed = seal.seal(frame[codec.HEADER_BYTES :])
    return _LEN.pack(len(sealed)) + sealed


async def _broken_terminal_refusals(
    make_harness: HarnessFactory, *, once: bool = False, **faults: object
) -> list[str]:
    """Start a terminal with ``faults``; the codes the bridge closed its sessions with.
    ``once``: a fault that fires once, after which the terminal must come back ready."""
    harness = await make_harness(
        [AccountSpec(MT5H, 2001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING)], start=False
    )
    terminal = harness.terminal(MT5H)
    for name, value in faults.items():
        setattr(terminal.faults, name, value)
    with structlog.testing.capture_logs() as logs:
        host, port = await harness.bridge.start()
        harness.world.start(host, port)
        await eventually(
            lambda: any(e.get("code") for e in logs if "refused" in e["event"] or
                        e["event"] == "protocol error"),
            timeout_s=10,
        )  # fmt: skip
        await asyncio.sleep(0.3)
    if once:
        await harness.ready()
        assert terminal.sessions >= 1
    else:
        assert harness.bridge.registry.ready_session(MT5H) is None
    assert harness.trades_seen(MT5H) == 0
    return [e["code"] for e in logs if e["event"] in ("protocol error", "handshake refused")]


async def test_a_protocol_1_terminal_is_refused_with_a_reason(
    make_harness: HarnessFactory,
) -> None:
    codes = await _broken_terminal_refusals(make_harness, protocol_version=1)
    assert codes and set(codes) == {"unsupported_version"}


async def test_a_terminal_that_does_not_seal_is_closed_before_it_is_ready(
    make_harness: HarnessFactory,
) -> None:
    codes = await _broken_terminal_refusals(make_harness, unsealed_frames=True)
    assert codes and set(codes) == {"bad_mac"}


async def test_a_terminal_whose_frames_arrive_out_of_order_is_closed(
    make_harness: HarnessFactory,
) -> None:
    codes = await _broken_terminal_refusals(make_harness, once=True, swap_next_frames=True)
    assert codes == ["out_of_order"]


async def test_a_handshake_changed_on_the_path_never_becomes_a_session(
    make_harness: HarnessFactory,
) -> None:
    """The relay strips every feature from the terminal's offer (the proofs do not cover
    them): the bridge and the terminal derive different frame keys, so the first sealed frame
    fails and no session is ever ready, however often the terminal comes back."""
    harness = await make_harness(
        [AccountSpec(MT5H, 2001, "Sim-MT5", Platform.MT5, MarginMode.HEDGING)], start=False
    )
    host, port = await harness.bridge.start()
    relay = Relay((host, port))
    relay.rewrite_hello = lambda body: re.sub(rb'"features":\[[^\]]*\]', b'"features":[]', body)
    await relay.start()
    try:
        with structlog.testing.capture_logs() as logs:
            harness.world.start("127.0.0.1", relay.port)
            await eventually(lambda: relay.connections >= 2, timeout_s=10)
        assert b'"features":[]' in relay.from_ea[0]
        assert harness.bridge.registry.ready_session(MT5H) is None
        assert harness.terminal(MT5H).sessions == 0
        assert {e["code"] for e in logs if e["event"] == "protocol error"} <= {"bad_mac"}
        assert harness.trades_seen(MT5H) == 0
    finally:
        await relay.stop()
