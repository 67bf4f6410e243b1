"""The WebSocket event stream and the client's resume (docs/events.md, "WebSocket")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from mtgate.api.server import ApiServer
from mtgate.client import ApiError, Client, StreamEvent
from mtgate.config import ApiSection, ApiToken, EventsSection
from mtgate.events.model import EventType
from tests.integration.conftest import MT4, MT5H, Harness, HarnessFactory, eventually

TOKEN = "s" * 40
WEAK = "w" * 40  # no token of this bridge (every scope includes read: no 4403 to test)


def _section(port: int = 0) -> ApiSection:
    return ApiSection(
        port=port,
        tokens=[
            ApiToken(name="engine", scopes=["read", "trade"], token=TOKEN),
        ],
    )


@pytest.fixture
async def served(make_harness: HarnessFactory) -> AsyncIterator[tuple[Harness, ApiServer, str]]:
    h = await make_harness(events=EventsSection(poll_ms=5))
    server = ApiServer(h.bridge, _section())
    host, port = await server.start()
    try:
        yield h, server, f"http://{host}:{port}"
    finally:
        await server.stop()


async def _take(stream: AsyncIterator[StreamEvent], n: int) -> list[StreamEvent]:
    out = []
    async for event in stream:
        out.append(event)
        if len(out) == n:
            break
    return out


async def _order_events(client: Client, after: int, count: int) -> list[StreamEvent]:
    stream = client.events(after, types=["execution.order."])
    try:
        return await asyncio.wait_for(_take(stream, count), 10)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_stream_sends_the_orders_events_and_resumes_after_a_seq(
    served: tuple[Harness, ApiServer, str],
) -> None:
    h, _, url = served
    async with Client(url, TOKEN) as client:
        await h.bridge.place_market_order(
            account=h.account(MT4), symbol="EURUSD", side="buy", volume=0.1, client_order_id="w-1"
        )
        first = await _order_events(client, 0, 2)
        assert [e.type for e in first] == ["execution.order.submitted", "execution.order.filled"]
        assert first[1].data["order"]["client_order_id"] == "w-1"
        assert first[0].seq < first[1].seq

        await h.bridge.place_market_order(
            account=h.account(MT5H), symbol="EURUSD", side="buy", volume=0.1, client_order_id="w-2"
        )
        resumed = await _order_events(client, first[1].seq, 2)
        assert [e.data["order"]["client_order_id"] for e in resumed] == ["w-2", "w-2"]
        assert all(e.seq > first[1].seq for e in resumed)


async def test_filters_by_account_and_type(served: tuple[Harness, ApiServer, str]) -> None:
    h, _, url = served
    mt5 = h.account(MT5H)
    for i, tid in enumerate([MT4, MT5H]):
        await h.bridge.place_market_order(
            account=h.account(tid), symbol="EURUSD", side="buy", volume=0.1,
            client_order_id=f"f-{i}",
        )  # fmt: skip
    async with Client(url, TOKEN) as client:
        stream = client.events(0, types=[EventType.ORDER_FILLED.value], account=mt5)
        got = await asyncio.wait_for(_take(stream, 1), 10)
        await stream.aclose()  # type: ignore[attr-defined]
    assert [(e.type, e.account) for e in got] == [(EventType.ORDER_FILLED.value, mt5)]


async def test_client_reconnects_and_misses_nothing_across_a_server_restart(
    served: tuple[Harness, ApiServer, str],
) -> None:
    """The API goes away mid-stream and comes back on the same port: the client dials again
    with backoff and resumes after the last seq it saw; every order's two events arrive once."""
    h, server, url = served
    port = int(url.rsplit(":", 1)[1])
    drops: list[int] = []
    async with Client(url, TOKEN) as client:
        stream = client.events(
            0, types=["execution.order."], backoff_base_s=0.05, backoff_cap_s=0.2,
            on_reconnect=lambda attempt, _: drops.append(attempt),
        )  # fmt: skip
        got: list[StreamEvent] = []
        four = asyncio.Event()

        async def consume() -> None:
            async for event in stream:
                got.append(event)
                if len(got) == 4:
                    four.set()
                if len(got) == 8:
                    return

        consumer = asyncio.create_task(consume())
        for i in range(2):
            await h.bridge.place_market_order(
                account=h.account(MT4), symbol="EURUSD", side="buy", volume=0.1,
                client_order_id=f"rc-{i}",
            )  # fmt: skip
        await asyncio.wait_for(four.wait(), 10)
        await server.stop()
        for i in range(2, 4):  # while the API is down: written to the outbox, not streamed
            await h.bridge.place_market_order(
                account=h.account(MT4), symbol="EURUSD", side="buy", volume=0.1,
                client_order_id=f"rc-{i}",
            )  # fmt: skip
        again = ApiServer(h.bridge, _section(port))
        await again.start()
        try:
            await asyncio.wait_for(consumer, 15)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            await again.stop()
    assert drops, "the client never saw the drop"
    cids = [e.data["order"]["client_order_id"] for e in got]
    assert cids == ["rc-0", "rc-0", "rc-1", "rc-1", "rc-2", "rc-2", "rc-3", "rc-3"]
    assert [e.seq for e in got] == sorted({e.seq for e in got})


async def test_refusals_close_with_a_code_the_client_raises(
    served: tuple[Harness, ApiServer, str],
) -> None:
    _, _, url = served
    ws = "ws" + url[4:] + "/v1/events"
    cases = [
        ({}, "", 4401),
        ({"Authorization": f"Bearer {WEAK}"}, "", 4401),
        ({"Authorization": f"Bearer {TOKEN}"}, "?after=-1", 4400),
        ({"Authorization": f"Bearer {TOKEN}"}, "?after=99999999999999999999", 4400),
        ({"Authorization": f"Bearer {TOKEN}"}, "?account=nobody", 4400),
        ({"Authorization": f"Bearer {TOKEN}"}, "?since=1", 4400),
    ]
    for headers, query, code in cases:
        async with websockets.connect(ws + query, additional_headers=headers) as conn:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(conn.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code, (query, headers)
    async with Client(url, WEAK) as unknown:
        stream = unknown.events(0)
        with pytest.raises(ApiError) as refused:
            await asyncio.wait_for(stream.__anext__(), 5)
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


async def test_an_idle_stream_sends_heartbeats_with_its_position(
    served: tuple[Harness, ApiServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mtgate.api.stream as stream_module

    monkeypatch.setattr(stream_module, "IDLE_S", 0.05)
    h, _, url = served
    head = h.bridge.relay.head
    ws = "ws" + url[4:] + f"/v1/events?after={head}&types=nothing."
    async with websockets.connect(ws, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        frame = await asyncio.wait_for(c.recv(), 5)
    beat = msgspec.json.decode(frame)
    assert beat["control"] == "heartbeat" and beat["seq"] >= head  # sync events may follow


async def test_metrics_report_the_relay_and_promtool_accepts_them(
    served: tuple[Harness, ApiServer, str],
) -> None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from mtgate.events import model as events_model
    from tests.integration.test_api import _promtool

    h, _, url = served
    await h.bridge.place_market_order(
        account=h.account(MT4), symbol="EURUSD", side="buy", volume=0.1, client_order_id="m-1"
    )
    await eventually(lambda: h.bridge.relay.head >= 1)  # no consumer: the head, once a second
    async with httpx.AsyncClient() as http:
        scraped = await http.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    head = families["mtgate_events_head_seq"].samples[0].value
    assert head >= 1 and head <= h.bridge.relay.head
    assert "mtgate_events_outbox_lag" in families  # no durable sink here: no samples
    # Process-wide (an earlier test may have broken a builder on purpose): what was counted.
    assert families["mtgate_events_unmade"].samples[0].value == events_model.unmade.count
    proc = await asyncio.create_subprocess_exec(
        _promtool(), "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(scraped.content), 30)
    assert proc.returncode == 0, out + err

    # Every metric the Grafana dashboard queries is one the bridge exports.
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parents[2] / "docs/grafana-dashboard.json").read_text())
    queried = {
        re.sub(r"_(bucket|total|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"mtgate_[a-z_]+", target["expr"])
    }
    exported = {
        re.sub(r"_total$", "", name)
        for name in re.findall(r"^# TYPE (mtgate_[a-z_]+) ", scraped.text, re.M)
    }
    assert queried and queried <= exported, queried - exported
