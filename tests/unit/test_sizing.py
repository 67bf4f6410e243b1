"""Sizing by risk: never more risk than asked, on the volume grid, within the symbol's range."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from mtgate.domain.sizing import NotSized, Sized, risk_volume
from mtgate.domain.symbols import on_grid
from tests.unit.test_prevalidation import EURUSD


def test_one_percent_of_ten_thousand_at_fifty_pips_is_two_tenths() -> None:
    # 50 pips = 500 ticks of $1 per lot: $500 a lot; $100 of risk buys 0.2 lots.
    sized = risk_volume(10_000, 1.0, 1.10000, 1.09500, EURUSD)
    assert sized == Sized(0.2, 100.0, clamped=False)


def test_below_the_minimum_is_refused_not_rounded_up() -> None:
    sized = risk_volume(100, 0.1, 1.10000, 1.09000, EURUSD)  # $0.10 at 1000 ticks
    assert isinstance(sized, NotSized) and sized.rule == "volume_min"
    assert "below the minimum 0.01" in sized.message


def test_above_the_maximum_is_the_maximum() -> None:
    sized = risk_volume(10_000_000, 10, 1.10000, 1.09990, EURUSD)
    assert sized == Sized(50.0, 500.0, clamped=True)


def test_no_distance_and_no_equity_are_refused() -> None:
    assert risk_volume(10_000, 1, 1.1, 1.1, EURUSD) == NotSized(
        "stop_distance", "the stop 1.1 is no distance from the entry 1.1"
    )
    no_equity = risk_volume(0, 1, 1.1, 1.09, EURUSD)
    assert isinstance(no_equity, NotSized) and no_equity.rule == "equity"
    bad = msgspec.structs.replace(EURUSD, tick_value=0.0)
    unusable = risk_volume(10_000, 1, 1.1, 1.09, bad)
    assert isinstance(unusable, NotSized) and unusable.rule == "symbol_spec"


@given(
    equity=st.floats(1, 1e9),
    risk_pct=st.floats(0.01, 100),
    entry=st.floats(0.5, 2.0),
    distance_ticks=st.integers(1, 100_000),
    step=st.sampled_from([0.01, 0.1, 1.0]),
    tick_value=st.floats(0.01, 100),
)
def test_the_risk_taken_never_exceeds_the_risk_asked(
    equity: float, risk_pct: float, entry: float, distance_ticks: int, step: float,
    tick_value: float,
) -> None:  # fmt: skip
    spec = msgspec.structs.replace(
        EURUSD, volume_step=step, volume_min=step, volume_max=1000.0, tick_value=tick_value
    )
    sl = entry - distance_ticks * spec.tick_size
    sized = risk_volume(equity, risk_pct, entry, sl, spec)
    if isinstance(sized, NotSized):
        assert sized.rule == "volume_min"
        return
    loss = abs(entry - sl) / spec.tick_size * spec.tick_value * sized.volume
    assert loss <= equity * risk_pct / 100 * (1 + 1e-6)
    assert on_grid(sized.volume, step)
    assert spec.volume_min <= sized.volume <= spec.volume_max
    if not sized.clamped:  # one step more would risk more than asked
        assert loss + abs(entry - sl) / spec.tick_size * spec.tick_value * step > (
            equity * risk_pct / 100 * (1 - 1e-6)
        )
