"""The running aggregates (per-symbol, per-side Σvolume and Σvolume·price, the margin cache,
trigger heaps) stay exact through opens, full and partial closes, close-bys and price moves:
checked against a brute-force recomputation from the open positions after every step."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtgate.domain.enums import MarginMode, Platform
from mtgate.domain.symbols import SymbolSpec, margin_required, profit
from tests.unit.sim.simdesk import Desk, make_desk

SYMBOLS = ("EURUSD", "USDJPY", "US30")
KINDS = (
    (Platform.MT4, MarginMode.HEDGING),
    (Platform.MT5, MarginMode.HEDGING),
    (Platform.MT5, MarginMode.NETTING),
)
BALANCE = 10_000_000.0
OPS = st.lists(
    st.tuples(
        st.sampled_from(["open", "open", "close", "partial", "close_by", "move"]),
        st.integers(0, 10_000),
        st.integers(0, 10_000),
        st.integers(-40, 40),
    ),
    max_size=40,
)


def _brute_force(desk: Desk) -> tuple[float, float]:
    """Margin (reference §5.1, hedged rule of mtsim.money, per position) and floating profit,
    from the position reports one by one."""
    server = desk.server
    margin = floating = 0.0
    for name in SYMBOLS:
        spec: SymbolSpec = server.symbols[name]
        bid, ask, _ = server.feed.quote(name)
        sides: dict[bool, list[float]] = {True: [0.0, 0.0], False: [0.0, 0.0]}  # volume, margin
        for pos in server.positions(desk.login):
            if pos.symbol != name:
                continue
            buy = pos.type == 0
            sides[buy][0] += pos.volume
            sides[buy][1] += margin_required(spec, pos.volume, pos.price_open, 100, "USD")
            floating += profit(spec, buy, pos.volume, pos.price_open, bid if buy else ask, "USD")
        (bv, mb), (sv, ms) = sides[True], sides[False]
        if bv <= 1e-9 or sv <= 1e-9:
            margin += mb + ms
            continue
        hedged = min(bv, sv)
        rate = spec.margin_hedged / spec.contract_size
        margin += mb * (bv - hedged) / bv + ms * (sv - hedged) / sv
        margin += rate * (mb * hedged / bv + ms * hedged / sv)
    return margin, floating


def _steps(spec: SymbolSpec, volume: float) -> int:
    return round(volume / spec.volume_step)


def _apply(desk: Desk, op: tuple[str, int, int, int]) -> None:
    kind, a, b, delta = op
    server = desk.server
    positions = server.positions(desk.login)
    if kind == "open":
        symbol = SYMBOLS[a % len(SYMBOLS)]
        spec = server.symbols[symbol]
        volume = round(spec.volume_min + (b % 20) * spec.volume_step, 8)
        desk.market(a % 2, volume=volume, symbol=symbol)
    elif kind in ("close", "partial") and positions:
        pos = positions[a % len(positions)]
        spec = server.symbols[pos.symbol]
        if kind == "close":
            desk.close(pos.ticket)
            return
        spare = _steps(spec, pos.volume - spec.volume_min)  # steps that may be closed
        if spare >= 1:
            desk.close(pos.ticket, round((1 + b % spare) * spec.volume_step, 8))
    elif kind == "close_by" and len(positions) >= 2:
        first = positions[a % len(positions)]
        opposite = [p for p in positions if p.symbol == first.symbol and p.type != first.type]
        if opposite and desk.server.account(desk.login).margin_mode != MarginMode.NETTING:
            desk.close_by(first.ticket, opposite[b % len(opposite)].ticket)
    elif kind == "move":
        symbol = SYMBOLS[a % len(SYMBOLS)]
        spec = server.symbols[symbol]
        bid, ask, _ = server.feed.quote(symbol)
        shift = delta * spec.tick_size * (1 + b % 5)
        digits = spec.digits
        desk.quote(symbol, round(bid + shift, digits), round(ask + shift, digits))


def _check(desk: Desk, start: float) -> None:
    account = desk.server.account(desk.login)
    margin, floating = _brute_force(desk)
    assert math.isclose(account.margin, margin, abs_tol=0.011), (account.margin, margin)
    assert math.isclose(account.profit, floating, abs_tol=0.011), (account.profit, floating)
    booked = sum(d.profit for d in desk.server.deals(desk.login))
    assert math.isclose(account.balance, start + booked, abs_tol=1e-6)
    reported = sum(p.profit for p in desk.server.positions(desk.login))
    assert math.isclose(
        account.profit, reported, abs_tol=0.01 * (1 + len(desk.server.positions(1)))
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), ops=OPS)
def test_aggregates_match_a_brute_force_recomputation(
    kind: tuple[Platform, MarginMode], ops: list[Any]
) -> None:
    platform, margin_mode = kind
    desk = make_desk(platform, margin_mode=margin_mode, balance=BALANCE)
    for op in ops:
        _apply(desk, op)
        _check(desk, BALANCE)
    # the volumes that went in came out, or are still open (per account: MT4 remainders have
    # no IN deal, their volume is carried by the original ticket's)
    deals = desk.server.deals(desk.login)
    for symbol in SYMBOLS:
        signed = sum((d.volume if d.type == 0 else -d.volume) for d in deals if d.symbol == symbol)
        held = sum(
            (p.volume if p.type == 0 else -p.volume)
            for p in desk.server.positions(desk.login)
            if p.symbol == symbol
        )
        assert math.isclose(signed, held, abs_tol=1e-7), symbol
