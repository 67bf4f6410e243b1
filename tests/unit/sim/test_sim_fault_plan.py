"""The fault plan (mtsim.faults) is pure: fed ``now_ms`` and applicable kinds, it decides
scripted faults in order, random ones reproducibly under a seed, and counts by kind."""

from __future__ import annotations

import pytest

from mtgate.domain.codes import MT4_CODES, MT5_CODES
from mtgate.domain.enums import Platform
from mtgate.protocol import messages as m
from mtsim import errors
from mtsim.faults import (
    ANY_TRADE_KINDS,
    DRAWN_KINDS,
    PRICE_KINDS,
    Fault,
    FaultKind,
    FaultPlan,
    RandomFaults,
    applicable_kinds,
    merged_counts,
    partial_volume,
    refusal,
)

ALL = frozenset(DRAWN_KINDS)


def _draws(seed: int, n: int = 200) -> list[Fault | None]:
    rates = {FaultKind.REQUOTE: 0.2, FaultKind.NO_CONNECTION: 0.05, FaultKind.SLOW: 0.2}
    plan = FaultPlan(seed=seed, random_faults=RandomFaults(rates=rates, duration_ms=(0, 0)))
    return [plan.decide(i * 10, ALL) for i in range(n)]


def test_random_faults_are_reproducible_under_a_seed_and_differ_under_another() -> None:
    first, again, other = _draws(7), _draws(7), _draws(8)
    assert first == again
    assert first != other
    kinds = {f.kind for f in first if f is not None}
    assert kinds == {FaultKind.REQUOTE, FaultKind.NO_CONNECTION, FaultKind.SLOW}
    # The rates hold roughly: 45 % of 200 trades, give or take.
    assert 60 <= sum(f is not None for f in first) <= 120


def test_random_parameters_are_drawn_from_their_ranges() -> None:
    plan = FaultPlan(
        seed=1,
        random_faults=RandomFaults(
            rates={FaultKind.SLOW: 0.5, FaultKind.PARTIAL_FILL: 0.5},
            delay_ms=(100, 200),
            ratio=(0.2, 0.3),
        ),
    )
    faults = [plan.decide(0, ALL) for _ in range(50)]
    slow = [f for f in faults if f is not None and f.kind == FaultKind.SLOW]
    partial = [f for f in faults if f is not None and f.kind == FaultKind.PARTIAL_FILL]
    assert slow and partial
    assert all(100 <= f.delay_ms <= 200 for f in slow)
    assert all(0.2 <= f.ratio <= 0.3 for f in partial)


def test_a_drawn_fault_that_does_not_apply_is_neither_injected_nor_counted() -> None:
    plan = FaultPlan(seed=3, random_faults=RandomFaults(rates={FaultKind.PARTIAL_FILL: 1.0}))
    assert plan.decide(0, ANY_TRADE_KINDS) is None
    assert plan.faults_by_kind() == {}


def test_scripted_faults_come_in_order_and_are_counted() -> None:
    plan = FaultPlan()
    assert not plan.armed
    plan.script(Fault(FaultKind.REQUOTE), Fault(FaultKind.CONTEXT_BUSY))
    plan.next_trades(2, Fault(FaultKind.TOO_MANY_REQUESTS))
    assert plan.armed and plan.scripted == 4
    kinds = [plan.decide(0, ALL) for _ in range(5)]
    assert [k.kind if k else None for k in kinds] == [
        FaultKind.REQUOTE,
        FaultKind.CONTEXT_BUSY,
        FaultKind.TOO_MANY_REQUESTS,
        FaultKind.TOO_MANY_REQUESTS,
        None,
    ]
    assert plan.faults_by_kind() == {"context_busy": 1, "requote": 1, "too_many_requests": 2}


def test_a_scripted_fault_waits_for_a_trade_it_applies_to() -> None:
    plan = FaultPlan()
    plan.script(Fault(FaultKind.REQUOTE))
    assert plan.decide(0, ANY_TRADE_KINDS) is None  # a pending order: no price to requote
    fault = plan.decide(0, ANY_TRADE_KINDS | PRICE_KINDS)
    assert fault is not None and fault.kind == FaultKind.REQUOTE


def test_no_connection_lasts_its_window_and_counts_every_refused_trade() -> None:
    plan = FaultPlan()
    plan.script(Fault(FaultKind.NO_CONNECTION, duration_ms=1_000))
    assert plan.decide(5_000, ALL) == Fault(FaultKind.NO_CONNECTION, duration_ms=1_000)
    assert plan.decide(5_999, ALL) == Fault(FaultKind.NO_CONNECTION)
    assert plan.decide(6_000, ALL) is None
    assert plan.faults_by_kind() == {"no_connection": 2}


def test_faults_whose_effect_the_terminal_sees_are_not_counted_at_decision() -> None:
    plan = FaultPlan()
    plan.script(Fault(FaultKind.MARKET_CLOSED, duration_ms=10), Fault(FaultKind.PARTIAL_FILL))
    assert plan.decide(0, ALL) is not None and plan.decide(0, ALL) is not None
    assert plan.faults_by_kind() == {}
    plan.count(FaultKind.PARTIAL_FILL)
    assert plan.faults_by_kind() == {"partial_fill": 1}
    other = FaultPlan()
    other.count(FaultKind.PARTIAL_FILL)
    other.count(FaultKind.RESTART)
    assert merged_counts([plan, other]) == {"partial_fill": 2, "restart": 1}


def test_clear_forgets_the_script_and_the_window_not_the_counts() -> None:
    plan = FaultPlan()
    plan.script(Fault(FaultKind.NO_CONNECTION, duration_ms=1_000), Fault(FaultKind.REQUOTE))
    plan.decide(0, ALL)
    plan.clear()
    assert not plan.armed
    assert plan.decide(1, ALL) is None
    assert plan.faults_by_kind() == {"no_connection": 1}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duration_ms": -1},
        {"duration_ms": 3_600_001},
        {"delay_ms": -5},
        {"ratio": 0.0},
        {"ratio": 1.0},
        {"ratio": float("nan")},
    ],
)
def test_fault_parameters_are_bounded(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="outside"):
        Fault(FaultKind.SLOW, **kwargs)  # type: ignore[arg-type]


def test_random_rates_and_ranges_are_bounded() -> None:
    with pytest.raises(ValueError, match="sum"):
        RandomFaults(rates={FaultKind.REQUOTE: 0.6, FaultKind.SLOW: 0.6})
    with pytest.raises(ValueError, match="outside"):
        RandomFaults(rates={FaultKind.REQUOTE: -0.1})
    with pytest.raises(ValueError, match="drawn"):
        RandomFaults(rates={FaultKind.RESTART: 0.1})
    with pytest.raises(ValueError, match="delay_ms"):
        RandomFaults(delay_ms=(10, 5))
    with pytest.raises(ValueError, match="per-trade"):
        Fault(FaultKind.RESTART)
    with pytest.raises(ValueError, match="count 10001 is outside"):
        FaultPlan().next_trades(10_001, Fault(FaultKind.SLOW))


@pytest.mark.parametrize(
    ("volume", "ratio", "expected"),
    [(1.0, 0.5, 0.5), (1.0, 0.333, 0.33), (0.05, 0.1, 0.01), (0.01, 0.5, 0.01), (0.1, 0.99, 0.09)],
)
def test_partial_volume_rounds_down_to_the_step_and_fills_at_least_one(
    volume: float, ratio: float, expected: float
) -> None:
    assert partial_volume(volume, ratio, 0.01, 0.01) == pytest.approx(expected)


@pytest.mark.parametrize("rule", errors.FAULT_RULES, ids=[r.name for r in errors.FAULT_RULES])
def test_fault_codes_are_in_the_platform_tables(rule: errors.Rule) -> None:
    assert rule.mt5 in MT5_CODES
    assert rule.mt4 is None or rule.mt4 in MT4_CODES


@pytest.mark.parametrize(
    ("kind", "mt4", "mt5"),
    [
        (FaultKind.REQUOTE, 138, 10004),
        (FaultKind.PRICE_CHANGED, 135, 10020),
        (FaultKind.OFF_QUOTES, 136, 10021),
        (FaultKind.CONTEXT_BUSY, 146, 10024),
        (FaultKind.TOO_MANY_REQUESTS, 141, 10024),
        (FaultKind.NO_CONNECTION, 6, 10031),
        (FaultKind.HANG, 128, 10012),
    ],
)
def test_refusal_codes_cite_reference_2_and_3_7(kind: FaultKind, mt4: int, mt5: int) -> None:
    four = refusal(Platform.MT4, kind, bid=1.1, ask=1.2)
    five = refusal(Platform.MT5, kind, bid=1.1, ask=1.2)
    assert (four.code, five.code) == (mt4, mt5)
    priced = kind in PRICE_KINDS
    assert (five.bid, five.ask) == ((1.1, 1.2) if priced else (0.0, 0.0))


def test_applicable_kinds_follow_the_operation_and_platform() -> None:
    order = m.MarketOrder(id=1, symbol="EURUSD", order_type=0, volume=0.1, magic=0, comment="")
    pending = m.PendingOrder(
        id=2, symbol="EURUSD", order_type=2, volume=0.1, price=1.0, magic=0, comment=""
    )
    cancel = m.CancelOrder(id=3, ticket=5)
    assert FaultKind.PARTIAL_FILL in applicable_kinds(order, "EURUSD", Platform.MT5)
    assert FaultKind.PARTIAL_FILL not in applicable_kinds(order, "EURUSD", Platform.MT4)
    assert applicable_kinds(order, "EURUSD", Platform.MT4) >= PRICE_KINDS
    assert not PRICE_KINDS & applicable_kinds(pending, "EURUSD", Platform.MT5)
    assert FaultKind.MARKET_CLOSED in applicable_kinds(pending, "EURUSD", Platform.MT5)
    assert applicable_kinds(cancel, "", Platform.MT5) == ANY_TRADE_KINDS
