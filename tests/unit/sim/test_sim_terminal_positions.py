"""The simulated EA carries the position operations over the wire like every trade request,
and announces them with the "positions" feature (docs/protocol.md §5.2, §12)."""

from __future__ import annotations

import asyncio
import contextlib

from mtgate.domain.enums import OrderType, Platform
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.protocol.auth import bridge_proof, new_key, new_nonce
from mtsim.terminal import SimTerminal, TerminalConfig
from tests.unit.sim.simdesk import BID, make_desk, px
from tests.unit.sim.simwire import WireBridge


async def test_position_operations_through_the_terminal() -> None:
    desk = make_desk(Platform.MT4)
    opened = desk.market(OrderType.BUY, volume=0.5)
    key = new_key()
    connected: asyncio.Queue[WireBridge] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await connected.put(WireBridge(reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    terminal = SimTerminal(desk.server, TerminalConfig(terminal_id="t1", key=key, login=1))
    await terminal.connect("127.0.0.1", port)
    bridge = await asyncio.wait_for(connected.get(), 5)
    try:
        hello = await bridge.receive()
        assert isinstance(hello, m.Hello)
        assert hello.features == [m.POSITIONS_FEATURE, m.SYNC_FEATURE, m.DEADLINE_FEATURE]
        nonce = new_nonce()
        proof = bridge_proof(key, "t1", hello.nonce, nonce)
        bridge.send(
            m.Welcome(
                v=m.PROTOCOL_VERSION,
                nonce=nonce,
                proof=proof,
                session="s1",
                heartbeat_ms=60_000,
                features=[m.POSITIONS_FEATURE],
            )
        )
        assert isinstance(await bridge.receive(), m.Auth)
        bridge.seal(key, hello.nonce, nonce)
        bridge.send(m.Ready())
        await asyncio.wait_for(terminal.connected.wait(), 5)

        modify = await bridge.request(m.ModifyPosition(id=1, ticket=opened.order, sl=px(BID, -50)))
        assert modify.ok
        assert codec.decode_result(m.ModifyPosition, modify.result).order == opened.order
        close = await bridge.request(m.ClosePosition(id=2, ticket=opened.order, volume=0.2))
        assert close.ok
        closed = codec.decode_result(m.ClosePosition, close.result)
        assert closed.volume == 0.2
        assert desk.position(closed.remainder).comment == f"from #{opened.order}"
        refused = await bridge.request(m.CloseBy(id=3, ticket=closed.remainder, opposite=99))
        assert not refused.ok
        assert refused.error is not None
        assert (refused.error.code, refused.error.name) == (4108, "ERR_INVALID_TICKET")
    finally:
        terminal.stop()
        bridge.writer.close()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
