"""Pre-validation of a position's SL/TP change (reference §4.3 stops level, §4.4 freeze level,
§4.6 order of the checks), on both sides, exactly at the levels and one point inside."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtgate.domain.symbols import SymbolSpec
from mtgate.positions.levels import check_position_levels


def make_spec(
    name: str, *, digits: int, tick_size: float, stops: int, freeze: int, point: float = 0.0
) -> SymbolSpec:
    return SymbolSpec(
        name=name,
        digits=digits,
        point=point or 10.0**-digits,
        tick_size=tick_size,
        tick_value=1.0,
        contract_size=100_000,
        volume_min=0.01,
        volume_max=50.0,
        volume_step=0.01,
        currency_base=name[:3],
        currency_profit=name[3:],
        currency_margin=name[:3],
        stops_level=stops,
        freeze_level=freeze,
    )


EURUSD = make_spec("EURUSD", digits=5, tick_size=0.00001, stops=10, freeze=5)
USDJPY = make_spec("USDJPY", digits=3, tick_size=0.001, stops=20, freeze=10)
XAUUSD = make_spec("XAUUSD", digits=2, tick_size=0.01, stops=50, freeze=20)
US30 = make_spec("US30USD", digits=2, tick_size=0.25, stops=0, freeze=0)

# EURUSD quote: spread 10 points. A buy's levels are measured from Bid, a sell's from Ask.
BID, ASK = 1.10000, 1.10010


def check(spec: SymbolSpec = EURUSD, /, *, buy: bool = True, **prices: float) -> str | None:
    """``field:rule`` of the refusal, or None. Prices default to no levels and Bid/Ask."""
    given_prices = {"sl": 0.0, "tp": 0.0, "current_sl": 0.0, "current_tp": 0.0}
    given_prices.update(bid=BID, ask=ASK)
    given_prices.update(prices)
    refusal = check_position_levels(spec, buy=buy, **given_prices)
    if refusal is None:
        return None
    assert refusal.message
    return f"{refusal.field}:{refusal.rule}"


# --- no change -------------------------------------------------------------------------------


@pytest.mark.parametrize("buy", [True, False])
def test_unchanged_levels_are_a_no_op(buy: bool) -> None:
    assert check(buy=buy) == "sl:no_change"
    assert check(buy=buy, sl=1.09000, tp=1.12000, current_sl=1.09000, current_tp=1.12000) == (
        "sl:no_change"
    )


def test_no_change_is_checked_first() -> None:
    # Unchanged and frozen (current SL 3 points from Bid): MT4 error 1 / MT5 10025 first.
    assert check(sl=1.09997, current_sl=1.09997) == "sl:no_change"


def test_a_change_of_either_level_is_a_change() -> None:
    assert check(sl=1.09000, tp=1.12000, current_sl=1.09000, current_tp=1.12100) is None
    assert check(sl=1.09001, tp=1.12000, current_sl=1.09000, current_tp=1.12000) is None


# --- tick size -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kwargs", "expected"),
    [
        (EURUSD, {"sl": 1.099005}, "sl:tick_size"),
        (EURUSD, {"tp": 1.101005}, "tp:tick_size"),
        (EURUSD, {"sl": -1.09}, "sl:positive"),
        (EURUSD, {"tp": float("nan")}, "tp:tick_size"),
        (USDJPY, {"sl": 149.9795, "bid": 150.0, "ask": 150.015}, "sl:tick_size"),
        (XAUUSD, {"tp": 2010.005, "bid": 2000.0, "ask": 2000.3}, "tp:tick_size"),
        (US30, {"sl": 34990.10, "bid": 35000.0, "ask": 35002.0}, "sl:tick_size"),
        (US30, {"sl": 34990.25, "bid": 35000.0, "ask": 35002.0}, None),
    ],
)
def test_levels_must_be_on_the_tick_grid(
    spec: SymbolSpec, kwargs: dict[str, float], expected: str | None
) -> None:
    assert check(spec, buy=True, **kwargs) == expected


def test_tick_size_is_checked_before_the_side() -> None:
    # Off the grid and above Bid: the grid comes first (reference §4.6 #10 before #11).
    assert check(sl=1.100055) == "sl:tick_size"


# --- side of the close price -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("buy", "kwargs", "expected"),
    [
        (True, {"sl": 1.10000}, "sl:stops_level"),  # buy SL at Bid
        (True, {"sl": 1.10005}, "sl:stops_level"),  # buy SL above Bid (below Ask)
        (True, {"tp": 1.10000}, "tp:stops_level"),  # buy TP at Bid
        (True, {"tp": 1.09900}, "tp:stops_level"),  # buy TP below Bid
        (False, {"sl": 1.10010}, "sl:stops_level"),  # sell SL at Ask
        (False, {"sl": 1.10005}, "sl:stops_level"),  # sell SL above Bid but below Ask
        (False, {"tp": 1.10010}, "tp:stops_level"),  # sell TP at Ask
        (False, {"tp": 1.10100}, "tp:stops_level"),  # sell TP above Ask
    ],
)
def test_levels_on_the_wrong_side_are_refused(
    buy: bool, kwargs: dict[str, float], expected: str
) -> None:
    assert check(buy=buy, **kwargs) == expected


def test_wrong_side_is_refused_without_a_stops_level() -> None:
    no_levels = make_spec("EURUSD", digits=5, tick_size=0.00001, stops=0, freeze=0)
    assert check(no_levels, sl=1.10000) == "sl:stops_level"
    assert check(no_levels, sl=1.09999) is None  # one point below Bid is enough
    assert check(no_levels, buy=False, tp=1.10010) == "tp:stops_level"
    assert check(no_levels, buy=False, tp=1.10009) is None


def test_wrong_side_message_names_the_close_price() -> None:
    refusal = check_position_levels(
        EURUSD, buy=False, sl=1.10005, tp=0.0, current_sl=0.0, current_tp=0.0, bid=BID, ask=ASK
    )
    assert refusal is not None
    assert "above the ask" in refusal.message


# --- stops level: 10 points + the bridge's 1 point of margin ---------------------------------


@pytest.mark.parametrize(
    ("buy", "field", "price", "expected"),
    [
        # buy: from Bid 1.10000
        (True, "sl", 1.09989, None),  # 11 points
        (True, "sl", 1.09990, "sl:stops_level"),  # exactly 10: the server accepts, we keep margin
        (True, "sl", 1.09991, "sl:stops_level"),  # 9: one point inside
        (True, "tp", 1.10011, None),
        (True, "tp", 1.10010, "tp:stops_level"),
        (True, "tp", 1.10009, "tp:stops_level"),
        # sell: from Ask 1.10010
        (False, "sl", 1.10021, None),
        (False, "sl", 1.10020, "sl:stops_level"),
        (False, "sl", 1.10019, "sl:stops_level"),
        (False, "tp", 1.09999, None),
        (False, "tp", 1.10000, "tp:stops_level"),
        (False, "tp", 1.10001, "tp:stops_level"),
    ],
)
def test_eurusd_stops_level(buy: bool, field: str, price: float, expected: str | None) -> None:
    assert check(buy=buy, **{field: price}) == expected


@pytest.mark.parametrize(
    ("spec", "bid", "ask", "buy", "field", "price", "expected"),
    [
        # USDJPY: 20 points = 0.020
        (USDJPY, 150.000, 150.015, True, "sl", 149.979, None),
        (USDJPY, 150.000, 150.015, True, "sl", 149.980, "sl:stops_level"),
        (USDJPY, 150.000, 150.015, True, "sl", 149.981, "sl:stops_level"),
        (USDJPY, 150.000, 150.015, False, "tp", 149.994, None),
        (USDJPY, 150.000, 150.015, False, "tp", 149.995, "tp:stops_level"),
        (USDJPY, 150.000, 150.015, False, "tp", 149.996, "tp:stops_level"),
        # XAUUSD: 50 points = 0.50
        (XAUUSD, 2000.00, 2000.30, True, "tp", 2000.51, None),
        (XAUUSD, 2000.00, 2000.30, True, "tp", 2000.50, "tp:stops_level"),
        (XAUUSD, 2000.00, 2000.30, True, "tp", 2000.49, "tp:stops_level"),
        (XAUUSD, 2000.00, 2000.30, False, "sl", 2000.81, None),
        (XAUUSD, 2000.00, 2000.30, False, "sl", 2000.80, "sl:stops_level"),
        (XAUUSD, 2000.00, 2000.30, False, "sl", 2000.79, "sl:stops_level"),
    ],
)
def test_stops_level_other_symbols(
    spec: SymbolSpec,
    bid: float,
    ask: float,
    buy: bool,
    field: str,
    price: float,
    expected: str | None,
) -> None:
    assert check(spec, buy=buy, bid=bid, ask=ask, **{field: price}) == expected


def test_sl_is_reported_before_tp() -> None:
    assert check(sl=1.09995, tp=1.10005) == "sl:stops_level"
    assert check(sl=1.09900, tp=1.10005) == "tp:stops_level"


def test_removing_levels_needs_no_distance() -> None:
    assert check(sl=0.0, tp=0.0, current_sl=1.09900, current_tp=1.10100) is None


# --- freeze level: 5 points, equal is frozen -------------------------------------------------


@pytest.mark.parametrize(
    ("buy", "current_sl", "current_tp", "expected"),
    [
        # buy: current levels against Bid 1.10000
        (True, 1.09994, 0.0, None),  # 6 points
        (True, 1.09995, 0.0, "sl:freeze_level"),  # exactly 5: frozen
        (True, 1.09996, 0.0, "sl:freeze_level"),  # 4: one point inside
        (True, 0.0, 1.10006, None),
        (True, 0.0, 1.10005, "tp:freeze_level"),
        (True, 0.0, 1.10004, "tp:freeze_level"),
        # sell: current levels against Ask 1.10010
        (False, 1.10016, 0.0, None),
        (False, 1.10015, 0.0, "sl:freeze_level"),
        (False, 1.10014, 0.0, "sl:freeze_level"),
        (False, 0.0, 1.10004, None),
        (False, 0.0, 1.10005, "tp:freeze_level"),
        (False, 0.0, 1.10006, "tp:freeze_level"),
    ],
)
def test_eurusd_freeze_level(
    buy: bool, current_sl: float, current_tp: float, expected: str | None
) -> None:
    # The new levels are valid and far: only the current ones can freeze the position.
    sl, tp = (1.09800, 1.10200) if buy else (1.10200, 1.09800)
    assert check(buy=buy, sl=sl, tp=tp, current_sl=current_sl, current_tp=current_tp) == expected


@pytest.mark.parametrize(
    ("spec", "bid", "ask", "buy", "current_sl", "current_tp", "expected"),
    [
        (USDJPY, 150.000, 150.015, True, 149.989, 0.0, None),  # 11 points
        (USDJPY, 150.000, 150.015, True, 149.990, 0.0, "sl:freeze_level"),  # 10
        (USDJPY, 150.000, 150.015, True, 149.991, 0.0, "sl:freeze_level"),  # 9
        (USDJPY, 150.000, 150.015, False, 0.0, 150.004, None),
        (USDJPY, 150.000, 150.015, False, 0.0, 150.005, "tp:freeze_level"),
        (USDJPY, 150.000, 150.015, False, 0.0, 150.006, "tp:freeze_level"),
        (XAUUSD, 2000.00, 2000.30, True, 0.0, 2000.21, None),  # 21 points
        (XAUUSD, 2000.00, 2000.30, True, 0.0, 2000.20, "tp:freeze_level"),  # 20
        (XAUUSD, 2000.00, 2000.30, True, 0.0, 2000.19, "tp:freeze_level"),  # 19
        (XAUUSD, 2000.00, 2000.30, False, 2000.51, 0.0, None),
        (XAUUSD, 2000.00, 2000.30, False, 2000.50, 0.0, "sl:freeze_level"),
        (XAUUSD, 2000.00, 2000.30, False, 2000.49, 0.0, "sl:freeze_level"),
    ],
)
def test_freeze_level_other_symbols(
    spec: SymbolSpec,
    bid: float,
    ask: float,
    buy: bool,
    current_sl: float,
    current_tp: float,
    expected: str | None,
) -> None:
    assert (
        check(spec, buy=buy, bid=bid, ask=ask, current_sl=current_sl, current_tp=current_tp)
        == expected
    )


def test_a_frozen_position_cannot_even_drop_its_levels() -> None:
    assert check(sl=0.0, current_sl=1.09997) == "sl:freeze_level"
    assert check(buy=False, tp=0.0, current_tp=1.10007) == "tp:freeze_level"


def test_stops_level_is_checked_before_the_freeze_level() -> None:
    # New SL 3 points from Bid and current SL frozen: §4.6 #11 before #12.
    assert check(sl=1.09997, current_sl=1.09996) == "sl:stops_level"


def test_no_freeze_level_freezes_nothing() -> None:
    no_freeze = make_spec("EURUSD", digits=5, tick_size=0.00001, stops=10, freeze=0)
    assert check(no_freeze, sl=1.09900, current_sl=1.09999) is None


# --- properties ------------------------------------------------------------------------------


@given(
    buy=st.booleans(),
    field=st.sampled_from(["sl", "tp"]),
    distance=st.integers(min_value=-50, max_value=200),
    spread=st.integers(min_value=0, max_value=40),
)
def test_distance_decides_exactly(buy: bool, field: str, distance: int, spread: int) -> None:
    """On the right side at 11 points or more: accepted; anything else: refused on stops."""
    bid_pts = 110_000
    bid, ask = round(bid_pts * 1e-5, 5), round((bid_pts + spread) * 1e-5, 5)
    close_pts = bid_pts if buy else bid_pts + spread
    below = (field == "sl") == buy
    price = round((close_pts - distance if below else close_pts + distance) * 1e-5, 5)
    expected = None if distance >= 11 else f"{field}:stops_level"
    assert check(buy=buy, bid=bid, ask=ask, **{field: price}) == expected
