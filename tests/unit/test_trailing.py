"""The bridge-managed trailing stop as a pure rule: recorded price paths with injected times
(no sleeps), each rule at its boundary, and properties along random paths."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtgate.domain.clock import ManualClock
from mtgate.domain.symbols import SymbolSpec, price_normalized
from mtgate.positions.trailing import Decision, HoldReason, TrailingSpec, TrailingStop
from tests.unit.test_position_levels import make_spec

EURUSD = make_spec("EURUSD", digits=5, tick_size=0.00001, stops=10, freeze=5)
USDJPY = make_spec("USDJPY", digits=3, tick_size=0.001, stops=20, freeze=10)
XAUUSD = make_spec("XAUUSD", digits=2, tick_size=0.01, stops=50, freeze=20)
US30 = make_spec("US30USD", digits=2, tick_size=0.25, stops=0, freeze=0)

Path = list[tuple[int, float, float]]


def run(
    stop: TrailingStop,
    spec: SymbolSpec,
    path: Path,
    *,
    current_tp: float = 0.0,
) -> tuple[list[tuple[int, float]], list[str]]:
    """Feed ``path`` (ms since the start, bid, ask) with a manual clock; every move is
    accepted by the "terminal" at once. Returns the moves and what happened on each price."""
    clock = ManualClock()
    start = clock.now_ms()
    current_sl = stop.stop
    moves: list[tuple[int, float]] = []
    outcomes: list[str] = []
    for t_ms, bid, ask in path:
        clock.advance(start + t_ms - clock.now_ms())
        decision = stop.decide(bid, ask, spec, clock.now_ms(), current_sl, current_tp)
        if decision.move_to is None:
            assert decision.reason is not None
            outcomes.append(decision.reason.value)
            continue
        stop.moved(decision.move_to, clock.now_ms())
        current_sl = decision.move_to
        moves.append((t_ms, decision.move_to))
        outcomes.append(f"move {decision.move_to:.{spec.digits}f}")
    return moves, outcomes


# --- recorded paths --------------------------------------------------------------------------


def test_buy_path() -> None:
    # Opened at Ask 1.10000; 30 points behind Bid, steps of 10, from 20 points of profit.
    stop = TrailingStop(
        TrailingSpec(distance_points=30, step_points=10, activation_points=20),
        buy=True,
        price_open=1.10000,
    )
    path: Path = [
        (0, 1.10000, 1.10010),  # profit 0
        (1000, 1.10019, 1.10029),  # profit 19: one point short
        (2000, 1.10020, 1.10030),  # profit 20: first stop at 1.09990
        (2500, 1.10040, 1.10050),  # 1.10010 would do, but 500 ms after the last move
        (3000, 1.10045, 1.10055),  # 1.10015: +25 points
        (4000, 1.10054, 1.10064),  # 1.10024: +9 only
        (5000, 1.10030, 1.10040),  # price falls back: 1.10000 would worsen the stop
        (6000, 1.10055, 1.10065),  # 1.10025: +10, exactly one step
        (7000, 1.10100, 1.10110),  # 1.10070
        (7999, 1.10200, 1.10210),  # 999 ms later
    ]
    moves, outcomes = run(stop, EURUSD, path)
    assert moves == [(2000, 1.09990), (3000, 1.10015), (6000, 1.10025), (7000, 1.10070)]
    assert outcomes == [
        "not_activated",
        "not_activated",
        "move 1.09990",
        "too_soon",
        "move 1.10015",
        "not_improved_by_step",
        "not_improved_by_step",
        "move 1.10025",
        "move 1.10070",
        "too_soon",
    ]
    assert stop.stop == 1.10070
    assert stop.last_moved_ms == ManualClock().now_ms() + 7000


def test_sell_path() -> None:
    # Opened at Bid 1.10000; 25 points above Ask, steps of 5, active at once, 2 s apart.
    stop = TrailingStop(
        TrailingSpec(distance_points=25, step_points=5, min_interval_ms=2000),
        buy=False,
        price_open=1.10000,
    )
    path: Path = [
        (0, 1.09990, 1.10000),  # no profit yet, no activation asked: 1.10025
        (1000, 1.09970, 1.09980),  # 1.10005: too soon
        (2000, 1.09968, 1.09978),  # 1.10003
        (3000, 1.09960, 1.09970),  # 1.09995: too soon
        (4000, 1.09964, 1.09974),  # 1.09999: +4 only
        (5000, 1.09963, 1.09973),  # 1.09998: exactly one step
        (9000, 1.09980, 1.09990),  # 1.10015 would worsen it
        (9500, 1.09890, 1.09900),  # 1.09925
    ]
    moves, outcomes = run(stop, EURUSD, path, current_tp=1.09000)
    assert moves == [(0, 1.10025), (2000, 1.10003), (5000, 1.09998), (9500, 1.09925)]
    assert outcomes == [
        "move 1.10025",
        "too_soon",
        "move 1.10003",
        "too_soon",
        "not_improved_by_step",
        "move 1.09998",
        "not_improved_by_step",
        "move 1.09925",
    ]


def test_jpy_buy_path() -> None:
    stop = TrailingStop(
        TrailingSpec(distance_points=40, step_points=15, activation_points=30, min_interval_ms=0),
        buy=True,
        price_open=150.000,
    )
    path: Path = [
        (0, 150.020, 150.035),  # profit 20
        (100, 150.030, 150.045),  # profit 30: 149.990
        (200, 150.044, 150.059),  # 150.004: +14
        (300, 150.045, 150.060),  # 150.005: +15
        (300, 150.100, 150.115),  # same millisecond, no rate limit: 150.060
    ]
    moves, _ = run(stop, USDJPY, path)
    assert moves == [(100, 149.990), (300, 150.005), (300, 150.060)]


def test_gold_sell_path_clamped_to_the_stops_level() -> None:
    # 30 points asked, but the stops level is 50: every stop sits 51 points above Ask.
    stop = TrailingStop(
        TrailingSpec(distance_points=30, step_points=20, min_interval_ms=500),
        buy=False,
        price_open=2000.00,
    )
    path: Path = [
        (0, 1999.70, 2000.00),  # 2000.51
        (500, 1999.50, 1999.80),  # 2000.31
        (1000, 1999.40, 1999.70),  # 2000.21: +10 only, and clamped
        (1500, 1999.39, 1999.69),  # 2000.20: +11, and clamped
        (2000, 1999.30, 1999.60),  # 2000.11: +20
    ]
    moves, outcomes = run(stop, XAUUSD, path)
    assert moves == [(0, 2000.51), (500, 2000.31), (2000, 2000.11)]
    assert outcomes[2:4] == ["stops_level_clamped", "stops_level_clamped"]


# --- activation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buy", "bid", "ask", "expected"),
    [
        (True, 1.10049, 1.10059, HoldReason.NOT_ACTIVATED),  # profit 49 (Bid - open)
        (True, 1.10050, 1.10060, None),  # profit 50
        (False, 1.09940, 1.09951, HoldReason.NOT_ACTIVATED),  # profit 49 (open - Ask)
        (False, 1.09940, 1.09950, None),  # profit 50
    ],
)
def test_activation_boundary(
    buy: bool, bid: float, ask: float, expected: HoldReason | None
) -> None:
    stop = TrailingStop(
        TrailingSpec(distance_points=20, step_points=1, activation_points=50),
        buy=buy,
        price_open=1.10000,
    )
    assert stop.decide(bid, ask, EURUSD, 0, 0.0, 0.0).reason == expected


def test_activation_zero_waits_for_break_even_none_does_not() -> None:
    at_loss = (1.09990, 1.10000)
    zero = TrailingStop(TrailingSpec(20, 1, activation_points=0), buy=True, price_open=1.10000)
    none = TrailingStop(TrailingSpec(20, 1), buy=True, price_open=1.10000)
    assert zero.decide(*at_loss, EURUSD, 0, 0.0, 0.0).reason == HoldReason.NOT_ACTIVATED
    assert none.decide(*at_loss, EURUSD, 0, 0.0, 0.0).move_to == 1.09970


# --- step and the stop to improve on ---------------------------------------------------------


@pytest.mark.parametrize(
    ("buy", "current_sl", "expected"),
    [
        (True, 1.09971, HoldReason.NOT_IMPROVED_BY_STEP),  # candidate 1.09980: +9
        (True, 1.09970, None),  # +10
        (False, 1.10039, HoldReason.NOT_IMPROVED_BY_STEP),  # candidate 1.10030: +9
        (False, 1.10040, None),  # +10
    ],
)
def test_step_boundary(buy: bool, current_sl: float, expected: HoldReason | None) -> None:
    stop = TrailingStop(TrailingSpec(20, 10), buy=buy, price_open=1.10000)
    decision = stop.decide(1.10000, 1.10010, EURUSD, 0, current_sl, 0.0)
    assert decision.reason == expected
    if expected is None:
        assert decision.move_to == (1.09980 if buy else 1.10030)


def test_a_move_the_terminal_has_not_reported_yet_is_not_repeated() -> None:
    stop = TrailingStop(TrailingSpec(20, 5, min_interval_ms=0), buy=True, price_open=1.09000)
    stop.moved(1.09980, 0)
    # The snapshot still shows the old SL: improving on it would send the same move again.
    assert stop.decide(1.10002, 1.10012, EURUSD, 1, 1.09500, 0.0).reason == (
        HoldReason.NOT_IMPROVED_BY_STEP
    )


def test_a_stop_tightened_by_someone_else_is_not_loosened() -> None:
    stop = TrailingStop(TrailingSpec(20, 5, min_interval_ms=0), buy=False, price_open=1.11000)
    stop.moved(1.10100, 0)
    # Our stop is 1.10100; the user moved it to 1.10025. The candidate 1.10030 would loosen it.
    decision = stop.decide(1.10000, 1.10010, EURUSD, 1, 1.10025, 0.0)
    assert decision.reason == HoldReason.NOT_IMPROVED_BY_STEP
    assert stop.decide(1.09990, 1.10000, EURUSD, 1, 1.10025, 0.0).move_to == 1.10020


# --- rate limit ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed_ms", "expected"), [(0, HoldReason.TOO_SOON), (999, HoldReason.TOO_SOON), (1000, None)]
)
def test_rate_limit_boundary(elapsed_ms: int, expected: HoldReason | None) -> None:
    clock = ManualClock()
    stop = TrailingStop(TrailingSpec(20, 5), buy=True, price_open=1.09000)
    stop.moved(1.09900, clock.now_ms())
    clock.advance(elapsed_ms)
    decision = stop.decide(1.10000, 1.10010, EURUSD, clock.now_ms(), 1.09900, 0.0)
    assert decision.reason == expected


def test_the_rate_limit_starts_with_the_first_move() -> None:
    stop = TrailingStop(TrailingSpec(20, 5, min_interval_ms=60_000), buy=True, price_open=1.1)
    assert stop.decide(1.10000, 1.10010, EURUSD, 0, 0.0, 0.0).move_to == 1.09980


# --- freeze level ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buy", "current_tp", "expected"),
    [
        (True, 1.10005, HoldReason.FROZEN),  # TP exactly 5 points above Bid
        (True, 1.10004, HoldReason.FROZEN),  # one point inside
        (False, 1.10005, HoldReason.FROZEN),  # TP exactly 5 points below Ask
        (False, 1.10006, HoldReason.FROZEN),
    ],
)
def test_a_take_profit_within_the_freeze_level_blocks_the_move(
    buy: bool, current_tp: float, expected: HoldReason
) -> None:
    stop = TrailingStop(TrailingSpec(20, 5), buy=buy, price_open=1.10000)
    assert stop.decide(1.10000, 1.10010, EURUSD, 0, 0.0, current_tp).reason == expected


@pytest.mark.parametrize(
    ("buy", "current_sl", "expected"),
    [
        (True, 1.09980, HoldReason.FROZEN),  # SL exactly 20 points below Bid
        (True, 1.09979, None),
        (False, 1.10030, HoldReason.FROZEN),  # SL exactly 20 points above Ask
        (False, 1.10031, None),
    ],
)
def test_a_stop_within_the_freeze_level_blocks_the_move(
    buy: bool, current_sl: float, expected: HoldReason | None
) -> None:
    # A freeze level wider than the distance (no stops level): the candidate (10 points away)
    # improves on the SL, but the SL itself is frozen.
    wide_freeze = make_spec("EURUSD", digits=5, tick_size=0.00001, stops=0, freeze=20)
    stop = TrailingStop(TrailingSpec(10, 1), buy=buy, price_open=1.10000)
    decision = stop.decide(1.10000, 1.10010, wide_freeze, 0, current_sl, 0.0)
    assert decision.reason == expected
    if expected is None:
        assert decision.move_to == (1.09990 if buy else 1.10020)


def test_a_take_profit_inside_the_stops_level_is_refused_by_prevalidation() -> None:
    # TP 8 points above Bid: not frozen (5), but a modify resends it and 8 < 10 + 1.
    stop = TrailingStop(TrailingSpec(20, 5), buy=True, price_open=1.10000)
    decision = stop.decide(1.10000, 1.10010, EURUSD, 0, 0.0, 1.10008)
    assert decision.reason == HoldReason.REFUSED
    assert decision.refusal is not None
    assert (decision.refusal.field, decision.refusal.rule) == ("tp", "stops_level")


# --- stops level and the tick grid -----------------------------------------------------------


@pytest.mark.parametrize(
    ("buy", "expected"),
    [(True, 1.09989), (False, 1.10021)],  # 11 points from Bid / Ask
)
def test_a_distance_inside_the_stops_level_is_clamped(buy: bool, expected: float) -> None:
    stop = TrailingStop(TrailingSpec(5, 1), buy=buy, price_open=1.10000)
    decision = stop.decide(1.10000, 1.10010, EURUSD, 0, 0.0, 0.0)
    assert (decision.move_to, decision.clamped) == (expected, True)


def test_a_distance_at_the_margin_is_not_clamped() -> None:
    stop = TrailingStop(TrailingSpec(11, 1), buy=True, price_open=1.10000)
    decision = stop.decide(1.10000, 1.10010, EURUSD, 0, 0.0, 0.0)
    assert (decision.move_to, decision.clamped) == (1.09989, False)


@pytest.mark.parametrize(
    ("buy", "current_sl", "expected"),
    [
        (True, 1.09980, HoldReason.CLAMPED_NOT_IMPROVED),  # clamped 1.09989: +9
        (True, 1.09979, None),  # +10
        (False, 1.10030, HoldReason.CLAMPED_NOT_IMPROVED),  # clamped 1.10021: +9
        (False, 1.10031, None),
    ],
)
def test_a_clamped_stop_must_still_improve_by_a_step(
    buy: bool, current_sl: float, expected: HoldReason | None
) -> None:
    stop = TrailingStop(TrailingSpec(5, 10), buy=buy, price_open=1.10000)
    decision = stop.decide(1.10000, 1.10010, EURUSD, 0, current_sl, 0.0)
    assert decision.reason == expected


@pytest.mark.parametrize(
    ("buy", "bid", "ask", "expected"),
    [
        # 100 points = 1.00 on a 0.25 grid, rounded away from the price.
        (True, 35000.10, 35002.10, 34999.00),  # 34999.10 -> down
        (False, 35000.10, 35002.10, 35003.25),  # 35003.10 -> up
        (True, 35000.25, 35002.25, 34999.25),  # already on the grid
        (False, 35000.00, 35002.00, 35003.00),
    ],
)
def test_rounding_to_the_tick_is_away_from_the_price(
    buy: bool, bid: float, ask: float, expected: float
) -> None:
    stop = TrailingStop(TrailingSpec(100, 1), buy=buy, price_open=35000.00)
    assert stop.decide(bid, ask, US30, 0, 0.0, 0.0).move_to == expected


def test_no_level_below_zero() -> None:
    cheap = make_spec("XXXYYY", digits=5, tick_size=0.00001, stops=0, freeze=0)
    stop = TrailingStop(TrailingSpec(100, 1), buy=True, price_open=0.00050)
    assert stop.decide(0.00090, 0.00095, cheap, 0, 0.0, 0.0).reason == HoldReason.NO_VALID_LEVEL


# --- purity and validation -------------------------------------------------------------------


def test_decide_does_not_change_the_state() -> None:
    stop = TrailingStop(TrailingSpec(20, 5), buy=True, price_open=1.09000, stop=1.09500)
    before = repr(stop)
    first = stop.decide(1.10000, 1.10010, EURUSD, 5000, 1.09500, 0.0)
    assert first.move_to == 1.09980
    assert repr(stop) == before
    assert stop.decide(1.10000, 1.10010, EURUSD, 5000, 1.09500, 0.0) == first


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"distance_points": 0, "step_points": 1}, "distance_points"),
        ({"distance_points": -5, "step_points": 1}, "distance_points"),
        ({"distance_points": 10, "step_points": 0}, "step_points"),
        ({"distance_points": 10.5, "step_points": 1}, "distance_points"),
        ({"distance_points": True, "step_points": 1}, "distance_points"),
        ({"distance_points": 10, "step_points": 1, "activation_points": -1}, "activation_points"),
        ({"distance_points": 10, "step_points": 1, "min_interval_ms": -1}, "min_interval_ms"),
    ],
)
def test_trailing_spec_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrailingSpec(**kwargs)  # type: ignore[arg-type]


def test_state_validation() -> None:
    with pytest.raises(ValueError, match="price_open"):
        TrailingStop(TrailingSpec(10, 1), buy=True, price_open=0.0)
    stop = TrailingStop(TrailingSpec(10, 1), buy=True, price_open=1.1)
    with pytest.raises(ValueError, match="new_sl"):
        stop.moved(math.nan, 0)
    with pytest.raises(ValueError, match="either a move or a reason"):
        Decision()
    with pytest.raises(ValueError, match="either a move or a reason"):
        Decision(move_to=1.1, reason=HoldReason.FROZEN)


# --- properties along random paths -----------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[SymbolSpec, TrailingSpec, bool, list[tuple[int, int, int]]]:
    stops = draw(st.integers(min_value=0, max_value=30))
    freeze = draw(st.integers(min_value=0, max_value=30))
    spec = make_spec("EURUSD", digits=5, tick_size=0.00001, stops=stops, freeze=freeze)
    trailing = TrailingSpec(
        distance_points=draw(st.integers(min_value=1, max_value=60)),
        step_points=draw(st.integers(min_value=1, max_value=20)),
        activation_points=draw(st.none() | st.integers(min_value=0, max_value=50)),
        min_interval_ms=draw(st.integers(min_value=0, max_value=3000)),
    )
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=2000),  # ms since the previous price
                st.integers(min_value=-40, max_value=40),  # Bid move, points
                st.integers(min_value=0, max_value=30),  # spread, points
            ),
            min_size=1,
            max_size=80,
        )
    )
    return spec, trailing, draw(st.booleans()), steps


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_the_stop_only_tightens_and_respects_the_stops_level(
    scenario: tuple[SymbolSpec, TrailingSpec, bool, list[tuple[int, int, int]]],
) -> None:
    spec, trailing, buy, steps = scenario
    point = spec.point
    stop = TrailingStop(trailing, buy=buy, price_open=1.10000)
    clock = ManualClock()
    bid_pts, applied, last_ms = 110_000, 0.0, None
    least = max(trailing.distance_points, spec.stops_level + 1 if spec.stops_level else 1)
    for dt_ms, move_pts, spread_pts in steps:
        clock.advance(dt_ms)
        bid_pts += move_pts
        bid, ask = round(bid_pts * point, 5), round((bid_pts + spread_pts) * point, 5)
        before = repr(stop)
        decision = stop.decide(bid, ask, spec, clock.now_ms(), applied, 0.0)
        assert repr(stop) == before
        if decision.move_to is None:
            continue
        new = decision.move_to
        assert price_normalized(spec, new)
        if applied:
            assert (new > applied) if buy else (new < applied)
            assert round(abs(new - applied) / point) >= trailing.step_points
        distance_pts = round(((bid - new) if buy else (new - ask)) / point)
        assert distance_pts >= least
        if last_ms is not None:
            assert clock.now_ms() - last_ms >= trailing.min_interval_ms
        stop.moved(new, clock.now_ms())
        applied, last_ms = new, clock.now_ms()
