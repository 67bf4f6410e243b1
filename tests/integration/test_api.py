"""The HTTP API over a bridge and simulated terminals (docs/api.md): the same results as the
Python API, tokens and scopes, and a 4xx naming the field for every bad input."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mtgate.api.app import MAX_BODY_BYTES, create_app
from mtgate.api.auth import Scope, Tokens
from mtgate.api.openapi import render
from mtgate.domain.orders import OrderStatus
from mtgate.execution.service import account_key as _key
from mtsim.faults import Fault, FaultKind
from tests.integration.conftest import MT4, MT5H, MT5N, Harness, eventually, open_tickets

READ = "r" * 40
TRADE = "t" * 40
ADMIN = "a" * 40
TOKENS = Tokens(
    [
        ("reader", READ, [Scope.READ]),
        ("engine", TRADE, [Scope.TRADE]),
        ("ops", ADMIN, [Scope.ADMIN]),
    ]
)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """In the bridge's own event loop, as ``mtgate serve`` runs it."""
    transport = httpx.ASGITransport(app=create_app(harness.bridge, TOKENS))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


@pytest.mark.parametrize("tid", [MT4, MT5H, MT5N])
async def test_a_market_order_over_http_fills_as_through_the_python_api(
    harness: Harness, client: httpx.AsyncClient, tid: str
) -> None:
    account = harness.account(tid)
    body = {"account": account, "symbol": "EURUSD", "side": "buy", "volume": 0.1,
            "client_order_id": f"http-{tid}"}  # fmt: skip
    r = await client.post("/v1/orders/market", json=body, headers=auth(TRADE))
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "filled"
    assert result["ticket"] > 0 and result["fill_volume"] == 0.1
    assert "slippage_points" in result
    stored = await harness.bridge.get_order(account, client_order_id=f"http-{tid}")
    assert stored is not None and stored.status == OrderStatus.FILLED
    assert stored.ticket == result["ticket"]
    again = await client.get(
        f"/v1/orders/http-{tid}", params={"account": account}, headers=auth(READ)
    )
    assert again.status_code == 200 and again.json()["ticket"] == result["ticket"]
    by_ticket = await client.get(
        f"/v1/tickets/{result['ticket']}", params={"account": account}, headers=auth(READ)
    )
    assert by_ticket.status_code == 200
    assert by_ticket.json()["client_order_id"] == f"http-{tid}"
    positions = await client.get(f"/v1/accounts/{account}/positions", headers=auth(READ))
    assert positions.status_code == 200
    assert any(p["volume"] == 0.1 for p in positions.json())


async def test_a_terminal_rejection_keeps_its_platform_code(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    """US30 is closed at the harness's time: the terminal refuses, and the HTTP result says
    so with the platform's code, as the Python API's result does."""
    body = {"account": harness.account(MT5H), "symbol": "US30", "side": "buy", "volume": 1.0,
            "retry": {"enabled": False}}  # fmt: skip
    r = await client.post("/v1/orders/market", json=body, headers=auth(TRADE))
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "rejected"
    assert result["error"]["source"] == "terminal"
    assert result["error"]["code"] == 10018  # TRADE_RETCODE_MARKET_CLOSED


async def test_pending_order_modify_and_cancel(harness: Harness, client: httpx.AsyncClient) -> None:
    account = harness.account(MT5H)
    bid, _, _ = harness.server(MT5H).feed.quote("EURUSD")
    price = round(bid - 0.01, 5)
    body = {"account": account, "symbol": "EURUSD", "kind": "buy_limit", "volume": 0.1,
            "price": price, "client_order_id": "http-pending"}  # fmt: skip
    placed = await client.post("/v1/orders/pending", json=body, headers=auth(TRADE))
    assert placed.status_code == 200 and placed.json()["status"] == "placed", placed.text
    modified = await client.post(
        "/v1/orders/modify",
        json={"account": account, "client_order_id": "http-pending", "price": price - 0.001},
        headers=auth(TRADE),
    )
    assert modified.status_code == 200, modified.text
    cancelled = await client.post(
        "/v1/orders/cancel",
        json={"account": account, "client_order_id": "http-pending"},
        headers=auth(TRADE),
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    listed = await client.get(
        "/v1/orders", params={"account": account, "status": "cancelled"}, headers=auth(READ)
    )
    assert [o["client_order_id"] for o in listed.json()] == ["http-pending"]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer " + "x" * 40}, 401, "unauthorized"),
        ({"Authorization": "Basic " + TRADE}, 401, "unauthorized"),
        (auth(READ), 403, "forbidden"),
    ],
)
async def test_trading_needs_a_token_with_the_trade_scope(
    harness: Harness, client: httpx.AsyncClient, headers: dict[str, str], status: int,
    code: str,
) -> None:  # fmt: skip
    body = {"account": harness.account(MT5H), "symbol": "EURUSD", "side": "buy", "volume": 0.1}
    r = await client.post("/v1/orders/market", json=body, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
    assert harness.trades_seen(MT5H) == 0


async def test_admin_drains_and_enables_a_terminal(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    refused = await client.post(f"/v1/terminals/{MT5H}/drain", headers=auth(TRADE))
    assert refused.status_code == 403
    drained = await client.post(f"/v1/terminals/{MT5H}/drain", headers=auth(ADMIN))
    assert drained.json() == {"terminal_id": MT5H, "drained": True}
    listed = await client.get("/v1/terminals", headers=auth(READ))
    assert any(t["terminal_id"] == MT5H and t["drained"] for t in listed.json())
    enabled = await client.post(f"/v1/terminals/{MT5H}/enable", headers=auth(ADMIN))
    assert enabled.json()["drained"] is False
    unknown = await client.post("/v1/terminals/nope/enable", headers=auth(ADMIN))
    assert (unknown.status_code, unknown.json()["error"]["field"]) == (422, "terminal_id")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"volume": "0.1"}, "volume"),  # a string is not a number of lots: strict, as in Python
        ({"volume": -1}, "volume"),
        ({"side": "BUY"}, "side"),
        ({"magic": 2**40}, "magic"),
        ({"sl": 1e400}, None),  # not even JSON a decoder keeps: refused, not inf
        ({"account": "nobody"}, "account"),
        ({"client_order_id": "x" * 200}, "client_order_id"),
        ({"bogus": 1}, "bogus"),
    ],
)
async def test_a_bad_body_is_a_422_naming_the_field_and_sends_nothing(
    harness: Harness, client: httpx.AsyncClient, change: dict[str, Any], field: str | None
) -> None:
    body = {"account": harness.account(MT5H), "symbol": "EURUSD", "side": "buy", "volume": 0.1}
    raw = json.dumps({**body, **change}).replace("Infinity", "1e400")
    r = await client.post(
        "/v1/orders/market",
        content=raw,
        headers={**auth(TRADE), "content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and error["message"]
    if field is not None:
        assert error["field"] == field
    assert harness.trades_seen(MT5H) == 0


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/accounts/123@Nowhere/positions", 404, "unknown_account"),
        ("/v1/accounts/not-an-account/positions", 422, "invalid_request"),
        ("/v1/orders/no-such-order?account=2001@Sim-MT5", 404, "not_found"),
        ("/v1/orders/no-such-order", 422, "invalid_request"),
        ("/v1/orders?limit=0", 422, "invalid_request"),
        ("/v1/orders?limit=abc", 422, "invalid_request"),
        ("/v1/orders?status=lost", 422, "invalid_request"),
        ("/v1/tickets/-5?account=2001@Sim-MT5", 422, "invalid_request"),
        ("/v1/tickets/99999999999999999999999?account=2001@Sim-MT5", 422, "invalid_request"),
        ("/v1/nowhere", 404, "no_route"),
    ],
)
async def test_bad_paths_and_queries_are_4xx_with_a_code(
    client: httpx.AsyncClient, path: str, status: int, code: str
) -> None:
    r = await client.get(path, headers=auth(READ))
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text


async def test_a_huge_body_is_refused_unread(harness: Harness, client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/orders/market",
        content=b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}",
        headers={**auth(TRADE), "content-type": "application/json"},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (413, "body_too_large")
    assert harness.trades_seen(MT5H) == 0


async def test_a_huge_streamed_body_is_refused_without_a_length(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    """No Content-Length (chunked): the body is counted as it comes and refused past the cap."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"{"
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024
        yield b"}"

    r = await client.post(
        "/v1/orders/market",
        content=chunks(),
        headers={**auth(TRADE), "content-type": "application/json"},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (413, "body_too_large")
    assert harness.trades_seen(MT5H) == 0


@pytest.mark.parametrize(
    ("token", "body"),
    [
        (TRADE, b'{"account": "1@x", "symbol": "EURUSD", "side": "up", "volume": 0.1}'),
        (TRADE, b"not json"),
        (TRADE, b'{"symbol": "EURUSD"}'),
        (READ, b"{}"),
        ("", b"{}"),
    ],
)
async def test_the_direct_path_and_litestar_answer_a_call_alike(
    harness: Harness, client: httpx.AsyncClient, token: str, body: bytes
) -> None:
    """An order call without a query string is answered by the direct path; the same call with
    one goes through Litestar (app.DirectPath): the two answers must be the same."""
    headers = {**(auth(token) if token else {}), "content-type": "application/json"}
    direct = await client.post("/v1/orders/market", content=body, headers=headers)
    routed = await client.post("/v1/orders/market?via=litestar", content=body, headers=headers)
    assert direct.status_code == routed.status_code and direct.status_code >= 400
    assert direct.json() == routed.json()
    assert direct.headers.get("www-authenticate") == routed.headers.get("www-authenticate")
    assert direct.headers["content-type"].startswith("application/json")
    assert harness.trades_seen(MT5H) == 0


async def test_a_wrong_method_on_a_direct_path_is_litestars_405(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/orders/market", headers=auth(TRADE))
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")


TOO_BIG = f"{2**63}@Sim-MT5"
"""A login past MT5's ``long``: the account's format passes the schema, its range does not."""


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/positions/reverse", {"account": TOO_BIG, "ticket": 455}),
        ("/v1/positions/close", {"account": TOO_BIG, "ticket": 455}),
        ("/v1/positions/modify", {"account": TOO_BIG, "ticket": 455, "sl": 1.0}),
        ("/v1/positions/trailing", {"account": TOO_BIG, "ticket": 455, "distance_points": 100}),
        ("/v1/positions/bulk-close", {"select": {"accounts": [TOO_BIG]}}),
        (
            "/v1/orders/market",
            {"account": TOO_BIG, "symbol": "EURUSD", "side": "buy", "volume": 0.1},
        ),
    ],
)
async def test_a_login_out_of_range_is_a_422_on_every_call(
    harness: Harness, client: httpx.AsyncClient, path: str, body: dict[str, object]
) -> None:
    """schemathesis found ``/v1/positions/reverse`` answering 500 to such a login: the position
    calls parsed the account without the order calls' InvalidRequest."""
    r = await client.post(path, json=body, headers=auth(TRADE))
    assert r.status_code in (200, 422), r.text  # 200: a refusal in the result (trailing)
    error = r.json()["error"]
    assert error["field"] == "account" and "out of range" in error["message"], r.text
    if r.status_code == 200:
        assert r.json()["status"] == "refused"


async def test_probes_need_no_token(harness: Harness, client: httpx.AsyncClient) -> None:
    assert (await client.get("/livez")).json() == {"status": "ok", "accounts_without_terminal": []}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    harness.world.terminals[MT4].stop()

    async def not_ready() -> bool:
        return (await client.get("/readyz")).status_code == 503

    await eventually(not_ready)
    body = (await client.get("/readyz")).json()
    assert body["status"] == "not_ready"
    assert body["accounts_without_terminal"] == [harness.account(MT4)]


async def test_the_document_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/openapi.json")
    assert r.status_code == 200 and r.text == render()


def test_the_committed_openapi_document_is_current() -> None:
    committed = Path(__file__).parents[2] / "docs" / "openapi.json"
    assert committed.read_text() == render(), "run: mtgate openapi docs/openapi.json"


async def test_an_account_whose_terminals_are_down_is_the_bridges_state_not_the_callers(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    """503 ``not_routable`` for a configured account with no ready terminal (body or path
    naming it), 404 ``unknown_account`` only for one no terminal is configured for."""
    account = harness.account(MT4)
    harness.world.terminals[MT4].stop()
    await eventually(lambda: harness.bridge.registry.lookup_session(_key(account)) is None)
    read = await client.get(f"/v1/accounts/{account}/positions", headers=auth(READ))
    assert (read.status_code, read.json()["error"]["code"]) == (503, "not_routable")
    modify = await client.post(
        "/v1/positions/modify",
        json={"account": account, "ticket": 5, "sl": 1.0},
        headers=auth(TRADE),
    )
    assert modify.status_code in (200, 503), modify.text
    if modify.status_code == 503:
        assert modify.json()["error"]["code"] == "not_routable"
    else:
        assert modify.json()["status"] != "done"
    order = await client.post(
        "/v1/orders/market",
        json={"account": account, "symbol": "EURUSD", "side": "buy", "volume": 0.1},
        headers=auth(TRADE),
    )
    assert order.status_code == 200 and order.json()["status"] == "rejected"
    assert order.json()["error"]["field"] == "account"


async def test_metrics_count_what_the_terminals_answered(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    account = harness.account(MT5H)
    for volume in (0.1, 0.2):
        r = await client.post(
            "/v1/orders/market",
            json={"account": account, "symbol": "EURUSD", "side": "buy", "volume": volume},
            headers=auth(TRADE),
        )
        assert r.json()["status"] == "filled"
    closed = await client.post(
        "/v1/orders/market",
        json={"account": account, "symbol": "US30", "side": "buy", "volume": 1.0,
              "retry": {"enabled": False}},
        headers=auth(TRADE),
    )  # fmt: skip
    assert closed.json()["status"] == "rejected"
    assert (await client.get("/metrics")).status_code == 401
    scraped = await client.get("/metrics", headers=auth(READ))
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}

    def value(family: str, sample: str, **labels: str) -> float:
        return next(
            s.value
            for s in families[family].samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        )

    assert value("mtgate_terminal_ready", "mtgate_terminal_ready", terminal=MT5H) == 1.0
    trades = value(
        "mtgate_execution_latency_seconds",
        "mtgate_execution_latency_seconds_count",
        terminal=MT5H,
    )
    assert trades >= 3  # two fills and the refusal (the bridge's own reads are not trades)
    assert value("mtgate_terminal_errors", "mtgate_terminal_errors_total", terminal=MT5H,
                 code="10018") == 1.0  # fmt: skip
    assert value("mtgate_terminal_state", "mtgate_terminal_state", terminal=MT5H,
                 state="ready") == 1.0  # fmt: skip
    # The runtime's meters, from the bridge's start: the loop's timer has woken by now.
    assert value("mtgate_event_loop_lag_seconds", "mtgate_event_loop_lag_seconds_count") > 0
    gc_count = "mtgate_gc_pause_seconds_count"
    assert {s.labels["generation"] for s in families["mtgate_gc_pause_seconds"].samples
            if s.name == gc_count} == {"0", "1", "2"}  # fmt: skip


async def test_metrics_by_account_operation_retries_reconnects_and_sync_delay(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    account = harness.account(MT5H)
    harness.terminal(MT5H).plan.script(Fault(FaultKind.REQUOTE))  # one retry: fresh_price
    r = await client.post(
        "/v1/orders/market",
        json={"account": account, "symbol": "EURUSD", "side": "buy", "volume": 0.1},
        headers=auth(TRADE),
    )
    assert r.json()["status"] == "filled"
    ticket = r.json()["ticket"]
    closed = await client.post(
        "/v1/positions/close", json={"account": account, "ticket": ticket}, headers=auth(TRADE)
    )
    assert closed.status_code == 200, closed.text
    harness.terminal(MT5H).drop()  # the terminal's connection dies: it dials in again
    await eventually(lambda: harness.bridge.registry.session(MT5H) is None)
    await harness.ready(MT5H)
    await eventually(lambda: harness.bridge.synced_account(account) is not None)
    scraped = await client.get("/metrics", headers=auth(READ))
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}

    def value(family: str, sample: str, **labels: str) -> float:
        found = [
            s.value
            for s in families[family].samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert len(found) == 1, (family, labels, found)
        return found[0]

    count = "mtgate_execution_latency_seconds_count"
    family = "mtgate_execution_latency_seconds"
    # Two market attempts (the requote, then the fill) and one close, each under its op.
    assert value(family, count, account=account, terminal=MT5H, operation="market_order") == 2
    assert value(family, count, account=account, terminal=MT5H, operation="close_position") == 1
    assert value("mtgate_order_retries", "mtgate_order_retries_total", account=account,
                 strategy="fresh_price") == 1  # fmt: skip
    assert value("mtgate_terminal_reconnects", "mtgate_terminal_reconnects_total",
                 terminal=MT5H) == 1  # fmt: skip
    assert value("mtgate_terminal_reconnects", "mtgate_terminal_reconnects_total",
                 terminal=MT4) == 0  # fmt: skip
    age = value("mtgate_sync_age_seconds", "mtgate_sync_age_seconds", account=account)
    assert 0 <= age < 60
    assert value("mtgate_sync_stale", "mtgate_sync_stale", account=account) == 0


async def test_promtool_accepts_the_metrics(
    harness: Harness, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    promtool = _promtool()
    await client.post(
        "/v1/orders/market",
        json={"account": harness.account(MT4), "symbol": "EURUSD", "side": "sell", "volume": 0.1},
        headers=auth(TRADE),
    )
    scraped = await client.get("/metrics", headers=auth(READ))
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(scraped.content), 30)
    assert proc.returncode == 0, out + err


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (Debian package prometheus; CI installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return found


async def test_promtool_accepts_the_alerting_rules() -> None:
    rules = Path(__file__).parents[2] / "docs" / "alerts.yml"
    proc = await asyncio.create_subprocess_exec(
        _promtool(), "check", "rules", str(rules), stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out + err
    written = rules.read_text().count("- alert: ")
    assert written >= 9 and f"{written} rules found".encode() in out  # every rule was read


def test_every_alert_the_bridge_raises_has_a_rule() -> None:
    from mtgate.health.alerts import AlertKind

    text = (Path(__file__).parents[2] / "docs" / "alerts.yml").read_text()
    for kind in AlertKind:
        assert kind.value in text or "".join(w.title() for w in kind.value.split("_")) in text, kind


async def test_a_signal_sizes_each_account_by_risk_and_a_resend_doubles_nothing(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    mt4, mt5 = harness.account(MT4), harness.account(MT5H)
    _, ask, _ = harness.server(MT5H).feed.quote("EURUSD")
    signal = {
        "signal_id": "sig-1",
        "symbol": "EURUSD",
        "side": "buy",
        "sl": round(ask - 0.0050, 5),
        "price": ask,
        "deviation_points": 1000,
        "accounts": [
            {"account": mt4, "risk_pct": 0.5},
            {"account": mt5},
            {"account": harness.account(MT5N), "risk_pct": 0.0001},  # below the minimum
        ],
    }
    # The equity each order is sized on: the account as the bridge sees it before the fills
    # (each fill's account event changes it afterwards).
    equity = {
        tid: harness.bridge.registry.route(_key(harness.account(tid))).view.account.equity  # type: ignore[union-attr]
        for tid in (MT4, MT5H)
    }
    r = await client.post("/v1/signals", json=signal, headers=auth(TRADE))
    assert r.status_code == 200, r.text
    by_account = {o["account"]: o for o in r.json()["orders"]}
    loss_per_lot = 0.0050 / 0.00001 * 1.0  # 500 ticks of $1 a lot
    for tid, pct in ((MT4, 0.5), (MT5H, 1.0)):
        order = by_account[harness.account(tid)]
        assert order["result"]["status"] == "filled", order
        assert order["volume"] * loss_per_lot <= equity[tid] * pct / 100 + 1e-6
        assert order["result"]["sl"] == signal["sl"]
    refused = by_account[harness.account(MT5N)]
    assert "result" not in refused
    assert (refused["error"]["rule"], refused["error"]["field"]) == ("volume_min", "risk_pct")
    seen = {tid: harness.trades_seen(tid) for tid in (MT4, MT5H, MT5N)}
    assert seen[MT5N] == 0

    again = await client.post("/v1/signals", json=signal, headers=auth(TRADE))
    replayed = {o["account"]: o for o in again.json()["orders"]}
    for tid in (MT4, MT5H):
        first, second = by_account[harness.account(tid)], replayed[harness.account(tid)]
        assert second["replayed"] is True
        assert second["client_order_id"] == first["client_order_id"]
        assert second["result"]["ticket"] == first["result"]["ticket"]
    assert {tid: harness.trades_seen(tid) for tid in (MT4, MT5H, MT5N)} == seen


async def test_a_signal_sent_twice_at_once_places_one_order_per_account(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    mt5 = harness.account(MT5H)
    bid, _, _ = harness.server(MT5H).feed.quote("EURUSD")
    signal = {"signal_id": "sig-race", "symbol": "EURUSD", "side": "sell",
              "sl": round(bid + 0.01, 5), "accounts": [{"account": mt5, "volume": 0.1}]}  # fmt: skip
    first, second = await asyncio.gather(
        client.post("/v1/signals", json=signal, headers=auth(TRADE)),
        client.post("/v1/signals", json=signal, headers=auth(TRADE)),
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    orders = [first.json()["orders"][0], second.json()["orders"][0]]
    assert sorted(o.get("replayed", False) for o in orders) == [False, True]
    assert orders[0]["result"]["ticket"] == orders[1]["result"]["ticket"]
    assert harness.trades_seen(MT5H) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"accounts": []}, "accounts"),
        ({"sl": 0}, "sl"),
        ({"risk_pct": 150}, "risk_pct"),
        ({"signal_id": ""}, "signal_id"),
    ],
)
async def test_a_bad_signal_is_a_422_naming_the_field(
    harness: Harness, client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    signal = {"signal_id": "s", "symbol": "EURUSD", "side": "buy", "sl": 1.0,
              "accounts": [{"account": harness.account(MT5H)}], **change}  # fmt: skip
    r = await client.post("/v1/signals", json=signal, headers=auth(TRADE))
    assert (r.status_code, r.json()["error"]["field"]) == (422, field), r.text


async def test_an_account_listed_twice_in_a_signal_is_refused(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    account = harness.account(MT5H)
    signal = {"signal_id": "s2", "symbol": "EURUSD", "side": "buy", "sl": 1.0,
              "accounts": [{"account": account}, {"account": account}]}  # fmt: skip
    r = await client.post("/v1/signals", json=signal, headers=auth(TRADE))
    assert (r.status_code, r.json()["error"]["field"]) == (422, "accounts")
    assert harness.trades_seen(MT5H) == 0


async def test_bulk_trailing_rejections_and_overrides_over_http(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    account = harness.account(MT5H)
    opened = await client.post(
        "/v1/orders/market",
        json={"account": account, "symbol": "EURUSD", "side": "buy", "volume": 0.1},
        headers=auth(TRADE),
    )
    ticket = opened.json()["position_id"]
    trail = await client.post(
        "/v1/positions/trailing",
        json={"account": account, "ticket": ticket, "distance_points": 200},
        headers=auth(TRADE),
    )
    assert trail.status_code == 200, trail.text
    assert (trail.json()["account"], trail.json()["active"]) == (account, True)
    stopped = await client.request(
        "DELETE", f"/v1/positions/trailing/{ticket}", params={"account": account},
        headers=auth(TRADE),
    )  # fmt: skip
    assert stopped.json() == {"account": account, "ticket": ticket, "cancelled": True}
    await eventually(lambda: ticket in open_tickets(harness.bridge, _key(account)))
    closed = await client.post(
        "/v1/positions/bulk-close",
        json={"select": {"accounts": [account]}},
        headers=auth(TRADE),
    )
    assert closed.status_code == 200, closed.text
    assert [i["ticket"] for i in closed.json()] == [ticket]
    assert closed.json()[0]["closed"]["status"] == "filled"

    report = await client.get(
        "/v1/rejections", params={"since": "1h", "by": "code,account"}, headers=auth(READ)
    )
    assert report.status_code == 200, report.text
    assert report.json()["orders"] >= 2
    bad = await client.get("/v1/rejections", params={"by": "colour"}, headers=auth(READ))
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_request")

    override = {"client_order_id": opened.json()["client_order_id"], "status": "filled",
                "evidence": "seen in the terminal's history", "reason": "test"}  # fmt: skip
    refused = await client.post("/v1/overrides/resolve", json=override, headers=auth(TRADE))
    assert refused.status_code == 403
    conflict = await client.post("/v1/overrides/resolve", json=override, headers=auth(ADMIN))
    assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "conflict")


async def test_a_trailing_stop_on_an_unknown_account_or_position_is_a_404(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    """Found by the schemathesis run: these were 500s (a PositionError nobody mapped)."""
    cases = [
        ({"account": "0@0", "distance_points": 1, "ticket": 1}, "unknown_account", None),
        ({"account": harness.account(MT4), "distance_points": 1, "ticket": 999}, "not_found",
         "ticket"),
    ]  # fmt: skip
    for body, code, field in cases:
        r = await client.post("/v1/positions/trailing", json=body, headers=auth(TRADE))
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == code
        assert r.json()["error"].get("field") == field
