"""The public API driven with arbitrary field values (huge ints, inf, NaN, unicode, long
strings, far dates, wrong enums, wrong types), as dicts and as typed requests, on MT4, MT5
hedging and MT5 netting accounts: every call ends in a clear refusal naming a field or in a
valid order, no other exception escapes, and afterwards the journal opens again and trades.

The bridge and the simulator run on an event loop of their own thread for the whole module,
so that hypothesis can drive them from a plain test function."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mtgate.api.app import create_app
from mtgate.api.auth import Scope, Tokens
from mtgate.bridge import Bridge
from mtgate.domain.clock import ManualClock
from mtgate.domain.orders import OrderStatus
from mtgate.execution.requests import (
    CancelOrderRequest,
    InvalidRequest,
    MarketOrderRequest,
    ModifyOrderRequest,
    OrderResult,
    PendingOrderRequest,
)
from mtgate.execution.signals import SignalResult
from mtgate.positions.requests import (
    ClosePositionRequest,
    ModifyPositionRequest,
    PositionResult,
    ReversalResult,
)
from mtgate.sessions.session import SessionSettings, grants_for
from mtgate.store.journal import open_journal
from mtgate.sync.synchronizer import SyncSettings
from mtsim.server import ServerConfig
from mtsim.world import SimWorld
from tests.integration.conftest import DEFAULT_ACCOUNTS, START_MS, US30_CLOSED_NOW

T = TypeVar("T")
ACCOUNTS = [f"{a.login}@{a.server}" for a in DEFAULT_ACCOUNTS]


@dataclass
class Live:
    run: Callable[[Coroutine[Any, Any, Any]], Any]
    bridge: Bridge
    world: SimWorld
    db: Path


def _world() -> SimWorld:
    configs = {n: ServerConfig(sessions=US30_CLOSED_NOW) for n in ("Sim-MT4", "Sim-MT5")}
    return SimWorld(DEFAULT_ACCOUNTS, clock=ManualClock(START_MS), seed=5, configs=configs)


def _bridge(world: SimWorld, db: Path) -> Bridge:
    return Bridge(
        terminals=grants_for(world.bindings()),
        journal=open_journal(f"sqlite:///{db}"),
        settings=SessionSettings(heartbeat_ms=200),
        store_url=f"sqlite:///{db}",
        sync=SyncSettings(interval_ms=200),
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-loop", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    db = tmp_path_factory.mktemp("fuzz") / "journal.db"

    async def start() -> tuple[SimWorld, Bridge]:
        world = _world()
        bridge = _bridge(world, db)
        host, port = await bridge.start()
        world.start(host, port)
        await bridge.wait_ready({a.terminal_id for a in DEFAULT_ACCOUNTS}, timeout_s=10)
        return world, bridge

    world, bridge = run(start())
    yield Live(run, bridge, world, db)

    async def stop() -> None:
        await world.stop()
        await bridge.stop()

    run(stop())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


# --- values --------------------------------------------------------------------------------

WILD_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-12, 1e305, -1.0, 1e9 + 1, 2.0**64]),
)
WILD_INTS = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]),
)
WILD_TEXT = st.one_of(
    st.text(max_size=80), st.sampled_from(["", "\x00", "é" * 40, "a" * 300, "BUY", "1@x"])
)
FAR_DATES = st.sampled_from([253_402_300_800_000, 32_535_216_000_000, 2**62, -1])
ANYTHING = st.one_of(
    WILD_FLOATS,
    WILD_INTS,
    WILD_TEXT,
    FAR_DATES,
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.just({"nested": 1}),
)
DELETE = object()
"""A mutation that removes the field (a missing required field must be named too)."""

SYMBOLS = ["EURUSD", "USDJPY", "US30"]
KINDS = ["buy_limit", "sell_limit", "buy_stop", "sell_stop", "buy_stop_limit", "sell_stop_limit"]


def _price_near(symbol: str) -> st.SearchStrategy[float]:
    base = {"EURUSD": 1.085, "USDJPY": 157.0, "US30": 42000.0}[symbol]
    digits = {"EURUSD": 5, "USDJPY": 3, "US30": 1}[symbol]
    return st.floats(0.97, 1.03).map(lambda f: round(base * f, digits))


@st.composite
def _base(draw: st.DrawFn, op: str, tickets: list[int]) -> dict[str, Any]:
    """Valid fields for ``op`` on one of the three accounts, with plausible values."""
    account = draw(st.sampled_from(ACCOUNTS))
    symbol = draw(st.sampled_from(SYMBOLS))
    pick = draw(st.integers(0, 10_000))  # the same draws whatever exists now (hypothesis)
    ticket = tickets[pick % len(tickets)] if tickets and pick % 4 else 20_000_001
    optional_price = st.none() | _price_near(symbol)
    cid = draw(st.none() | st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True))
    if op == "place_market_order":
        return {
            "account": account,
            "symbol": symbol,
            "side": draw(st.sampled_from(["buy", "sell"])),
            "volume": draw(st.sampled_from([0.01, 0.1, 0.15, 1.0])),
            "sl": draw(optional_price),
            "tp": draw(optional_price),
            "deviation_points": draw(st.integers(0, 100)),
            "magic": draw(st.none() | st.integers(0, 1000)),
            "client_order_id": cid,
        }
    if op == "place_pending_order":
        kind = draw(st.sampled_from(KINDS))
        stoplimit = draw(_price_near(symbol)) if "stop_limit" in kind else None
        return {
            "account": account,
            "symbol": symbol,
            "kind": kind,
            "volume": draw(st.sampled_from([0.01, 0.1])),
            "price": draw(_price_near(symbol)),
            "stoplimit": stoplimit,
            "sl": draw(optional_price),
            "expiration_ms": draw(st.none() | st.integers(START_MS + 3_600_000, START_MS + 10**10)),
            "client_order_id": cid,
        }
    if op in ("modify_order", "cancel_order", "get_order"):
        fields: dict[str, Any] = {"account": account, "ticket": ticket}
        if op == "modify_order":
            fields["price"] = draw(_price_near(symbol))
        return fields
    if op == "modify_position":
        return {"account": account, "ticket": ticket, "sl": draw(optional_price)}
    if op == "close_position":
        return {"account": account, "ticket": ticket, "volume": draw(st.none() | st.just(0.01))}
    if op == "execute_signal":
        side = draw(st.sampled_from(["buy", "sell"]))
        near = draw(_price_near(symbol))
        return {
            "signal_id": draw(st.from_regex(r"[a-z0-9-]{1,30}", fullmatch=True)),
            "symbol": symbol,
            "side": side,
            "sl": round(near * (0.99 if side == "buy" else 1.01), 5),
            "risk_pct": draw(st.sampled_from([0.01, 0.5, 1.0, 5.0])),
            "accounts": [
                {"account": a} for a in draw(st.sets(st.sampled_from(ACCOUNTS), min_size=1))
            ],
        }
    assert op == "list_orders"
    return {"account": draw(st.none() | st.just(account)), "limit": draw(st.integers(1, 50))}


@st.composite
def _fields(draw: st.DrawFn, op: str, tickets: list[int]) -> dict[str, Any]:
    """The valid fields with up to three of them replaced by anything, removed, or joined
    by a field that does not exist."""
    fields = draw(_base(op, tickets))
    names = [*fields, "stoplimit", "signal_id", "price", "bogus_field"]
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(names))
        value = draw(st.one_of(ANYTHING, st.just(DELETE)))
        if value is DELETE:
            fields.pop(name, None)
        else:
            fields[name] = value
    return fields


OPERATIONS: dict[str, type[msgspec.Struct] | None] = {
    "place_market_order": MarketOrderRequest,
    "place_pending_order": PendingOrderRequest,
    "modify_order": ModifyOrderRequest,
    "cancel_order": CancelOrderRequest,
    "modify_position": ModifyPositionRequest,
    "close_position": ClosePositionRequest,
    "get_order": None,
    "list_orders": None,
}


def _tickets(live: Live) -> list[int]:
    """Tickets that exist: open positions and pending orders of every account."""
    found: list[int] = []
    for spec in DEFAULT_ACCOUNTS:
        server = live.world.servers[spec.server]
        found += [p.ticket for p in server.positions(spec.login)]
        found += [o.ticket for o in server.pending_orders(spec.login)]
    return found


FINAL_OR_OPEN = {
    OrderStatus.FILLED,
    OrderStatus.PLACED,
    OrderStatus.REJECTED,
    OrderStatus.CANCELLED,
}


def _outcome(result: Any) -> str:
    if isinstance(result, OrderResult):
        return result.status.value + (
            f" ({result.error.rule})" if result.error and result.error.rule else ""
        )
    if isinstance(result, PositionResult):
        return result.status
    return type(result).__name__


def _check(result: Any) -> None:
    """A valid order, or a refusal that says why."""
    results = result if isinstance(result, list) else [result]
    for item in results:
        if item is None:
            continue
        if isinstance(item, OrderResult):
            assert item.status in FINAL_OR_OPEN, item
            if item.status == OrderStatus.REJECTED:
                assert item.error is not None, item
                assert item.error.field or item.error.code is not None, item
        elif isinstance(item, PositionResult):
            assert item.status in ("done", "refused", "rejected"), item
            if item.status != "done":
                assert item.error is not None and (item.error.field or item.error.code), item
        elif isinstance(item, ReversalResult):
            continue
        else:
            raise AssertionError(f"unexpected result {item!r}")


async def _call(bridge: Bridge, op: str, fields: dict[str, Any], as_type: bool) -> Any:
    method = getattr(bridge, op)
    typed = OPERATIONS[op]
    if op == "get_order":
        account = fields.pop("account", None)
        return await method(account, **fields)
    if op == "list_orders":
        return await method(**fields)
    if as_type and typed is not None:
        try:
            request = typed(**fields)
        except TypeError:  # a missing or unknown field: the constructor's own error
            return None
        return await method(request)
    return await method(**fields)


FUZZ = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)


@FUZZ
@given(op=st.sampled_from(sorted(OPERATIONS)), data=st.data(), as_type=st.booleans())
def test_the_api_refuses_naming_a_field_or_trades(
    live: Live, op: str, data: st.DataObject, as_type: bool
) -> None:
    fields = data.draw(_fields(op, _tickets(live)))
    refusal: InvalidRequest | None = None
    try:
        result = live.run(_call(live.bridge, op, dict(fields), as_type))
    except InvalidRequest as exc:
        refusal, result = exc, None
    except TypeError as exc:  # keyword arguments a query method does not take
        if op not in ("get_order", "list_orders"):
            raise AssertionError(f"{op}({fields!r}) raised {exc!r}") from exc
        return
    if refusal is not None:
        assert refusal.field, f"{op}({fields!r}): refusal names no field: {refusal}"
        event(f"{op}: refused, field {refusal.field}")
        return
    _check(result)
    event(f"{op}: {_outcome(result)}")


HTTP_TOKEN = "f" * 40
HTTP: dict[str, tuple[str, str, type[msgspec.Struct] | None]] = {
    "place_market_order": ("POST", "/v1/orders/market", OrderResult),
    "place_pending_order": ("POST", "/v1/orders/pending", OrderResult),
    "modify_order": ("POST", "/v1/orders/modify", OrderResult),
    "cancel_order": ("POST", "/v1/orders/cancel", OrderResult),
    "modify_position": ("POST", "/v1/positions/modify", PositionResult),
    "close_position": ("POST", "/v1/positions/close", OrderResult),
    "get_order": ("GET", "/v1/tickets/{ticket}", OrderResult),
    "list_orders": ("GET", "/v1/orders", None),
    "execute_signal": ("POST", "/v1/signals", SignalResult),
}


async def _http(bridge: Bridge, op: str, fields: dict[str, Any]) -> httpx.Response:
    app = create_app(bridge, Tokens([("fuzz", HTTP_TOKEN, [Scope.TRADE])]))
    method, path, _ = HTTP[op]
    headers = {"Authorization": f"Bearer {HTTP_TOKEN}", "content-type": "application/json"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        if method == "POST":
            body = json.dumps(fields, allow_nan=True)  # NaN, Infinity: not JSON, refused
            return await client.post(path, content=body, headers=headers)
        query = {k: str(v) for k, v in fields.items() if k != "ticket" and v is not None}
        return await client.get(
            path.format(ticket=quote(str(fields.get("ticket")), safe="")),
            params=query,
            headers=headers,
        )


@FUZZ
@given(op=st.sampled_from(sorted(HTTP)), data=st.data())
def test_the_http_api_answers_every_input_with_a_4xx_naming_the_field_or_a_result(
    live: Live, op: str, data: st.DataObject
) -> None:
    """The same arbitrary fields over HTTP: never a 5xx, every error in the API's shape, a
    JSON body that decodes refused naming its field, a 200 a valid result."""
    fields = data.draw(_fields(op, _tickets(live)))
    r = live.run(_http(live.bridge, op, dict(fields)))
    assert r.status_code < 500, (op, fields, r.status_code, r.text)
    if r.status_code != 200:
        error = r.json()["error"]
        assert error["code"] and error["message"], r.text
        decodable = "NaN" not in r.request.content.decode() and "Infinity" not in (
            r.request.content.decode()
        )
        if r.status_code == 422 and HTTP[op][0] == "POST" and decodable:
            assert error.get("field"), (op, fields, r.text)
        event(f"{op}: {r.status_code} {error['code']}")
        return
    kind = HTTP[op][2]
    result = msgspec.json.decode(r.content, type=kind if kind is not None else list[OrderResult])
    if isinstance(result, SignalResult):
        for order in result.orders:
            if order.result is not None:
                _check(order.result)
            else:  # no order sent: the reason names a field and a rule
                assert order.error is not None and order.error.field and order.error.rule, order
        event(
            f"{op}: 200 {[o.result.status.value if o.result else o.error.rule for o in result.orders]}"
        )  # type: ignore[union-attr]
        return
    _check(result)
    event(f"{op}: 200 {_outcome(result)}")


def test_after_the_fuzz_the_journal_opens_and_trades(live: Live) -> None:
    """Runs after the fuzz (same module, in file order): a second bridge on the same
    database opens it, nothing was quarantined, and every account trades."""

    async def reopen() -> list[OrderResult]:
        await live.world.stop()
        await live.bridge.stop()
        world = _world()
        bridge = _bridge(world, live.db)
        host, port = await bridge.start()
        world.start(host, port)
        try:
            await bridge.wait_ready({a.terminal_id for a in DEFAULT_ACCOUNTS}, timeout_s=10)
            assert await bridge.journal.quarantined() == []
            return [
                await bridge.place_market_order(account=a, symbol="EURUSD", side="buy", volume=0.01)
                for a in ACCOUNTS
            ]
        finally:
            await world.stop()
            await bridge.stop()
            live.world, live.bridge = world, bridge

    results = live.run(reopen())
    assert [r.status for r in results] == [OrderStatus.FILLED] * 3
