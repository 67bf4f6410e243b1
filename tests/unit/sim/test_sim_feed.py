"""The price feed (seeded walks), the default symbols (reference §4.1, §5.1) and the trigger
heaps (§4.2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtgate.domain.clock import ManualClock
from mtgate.domain.enums import CalcMode, ExecutionMode, OrderType, Platform
from mtgate.domain.symbols import on_grid, price_normalized
from mtsim.prices import PriceFeed, Quote
from mtsim.symbols import DEFAULT_START, DEFAULT_SYMBOLS, US30, instant_execution
from mtsim.triggers import Kind, TriggerBook
from tests.unit.sim.simdesk import ASK, make_desk, px

T = OrderType


def _path(
    feed: PriceFeed, symbol: str, until_ms: int, step_ms: int, start_ms: int = 0
) -> list[Quote]:
    """The quotes of ``symbol`` while advancing the feed every ``step_ms`` up to ``until_ms``
    after ``start_ms``."""
    quotes: list[Quote] = []
    feed.listen(lambda s, b, a, t: quotes.append(Quote(b, a, t)) if s == symbol else None)
    for now in range(step_ms, until_ms + 1, step_ms):
        feed.advance(start_ms + now)
    return quotes


def test_same_seed_same_path_other_seed_other_path() -> None:
    one = _path(PriceFeed(DEFAULT_SYMBOLS, seed=1), "EURUSD", 10_000, 100)
    again = _path(PriceFeed(DEFAULT_SYMBOLS, seed=1), "EURUSD", 10_000, 100)
    other = _path(PriceFeed(DEFAULT_SYMBOLS, seed=2), "EURUSD", 10_000, 100)
    assert one == again
    assert one != other
    assert len(one) > 50


def test_path_does_not_depend_on_other_symbols_or_on_call_frequency() -> None:
    alone = PriceFeed({"EURUSD": DEFAULT_SYMBOLS["EURUSD"]}, seed=9)
    crowd = PriceFeed(DEFAULT_SYMBOLS, seed=9)
    assert _path(alone, "EURUSD", 5_000, 100) == _path(crowd, "EURUSD", 5_000, 1_000)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=10_000), symbol=st.sampled_from(list(DEFAULT_SYMBOLS))
)
def test_walk_quotes_are_normalized_with_a_spread_of_at_least_one_tick(
    seed: int, symbol: str
) -> None:
    spec = DEFAULT_SYMBOLS[symbol]
    quotes = _path(PriceFeed(DEFAULT_SYMBOLS, seed=seed), symbol, 20_000, 100)
    assert quotes
    for q in quotes:
        assert price_normalized(spec, q.bid)
        assert price_normalized(spec, q.ask)
        assert q.ask - q.bid >= spec.tick_size - 1e-9
    assert [q.time_ms for q in quotes] == sorted(q.time_ms for q in quotes)
    assert all(q.time_ms % 100 == 0 for q in quotes)


def test_static_feed_and_set_quote() -> None:
    clock = ManualClock()
    feed = PriceFeed(DEFAULT_SYMBOLS, clock=clock, step_ms=0)
    assert feed.quote("EURUSD") == Quote(*DEFAULT_START["EURUSD"], clock.now_ms())
    assert feed.advance(clock.now_ms() + 60_000) == []
    feed.set_quote("US30", 44100.25, 44101.5, 5)
    assert feed.quote("US30") == Quote(44100.25, 44101.5, 5)
    assert list(feed.recent("US30"))[-1] == Quote(44100.25, 44101.5, 5)
    with pytest.raises(ValueError, match="multiple"):
        feed.set_quote("US30", 44100.10, 44101.0, 6)
    with pytest.raises(ValueError, match="bid <= ask"):
        feed.set_quote("EURUSD", 1.1, 1.09, 6)
    with pytest.raises(ValueError, match="no start price"):
        PriceFeed({"XXX": DEFAULT_SYMBOLS["EURUSD"]})


def test_recent_is_bounded_and_listeners_unsubscribe() -> None:
    feed = PriceFeed(DEFAULT_SYMBOLS, seed=3, history_size=16)
    seen: list[str] = []
    unsubscribe = feed.listen(lambda s, b, a, t: seen.append(s))
    feed.advance(10_000)
    assert len(feed.recent("EURUSD")) == 16
    count = len(seen)
    unsubscribe()
    feed.advance(20_000)
    assert len(seen) == count > 0


def test_a_long_gap_is_a_pause_of_bounded_cost() -> None:
    feed = PriceFeed(DEFAULT_SYMBOLS, seed=3, max_gap_steps=50)
    times: list[int] = []
    feed.listen(lambda s, b, a, t: times.append(t))
    feed.advance(86_400_000)
    assert 0 < len(times) <= 50 * len(DEFAULT_SYMBOLS)
    assert min(times) > 86_400_000 - 50 * 100


def test_server_step_triggers_on_intermediate_quotes() -> None:
    """A walk that touches a level and comes back within one step() still fills the order."""
    desk = make_desk(Platform.MT5, step_ms=100, seed=21, quote=False)
    feed = desk.server.feed
    start = ManualClock().now_ms()  # the desk's clock starts there too
    probe = PriceFeed(dict(DEFAULT_SYMBOLS), seed=21, step_ms=100, clock=ManualClock())
    path = _path(probe, "EURUSD", 60_000, 100, start)
    low = min(q.ask for q in path)
    final = path[-1].ask
    assert low < final  # the walk came back up
    assert low <= px(feed.quote("EURUSD").ask, -10)
    desk.pending(T.BUY_LIMIT, low)
    desk.clock.advance(60_000)
    desk.server.step()
    [pos] = desk.server.positions(desk.login)
    assert pos.price_open == low


# --- symbols --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "digits", "contract", "calc"),
    [
        ("EURUSD", 5, 100_000.0, CalcMode.FOREX),
        ("GBPUSD", 5, 100_000.0, CalcMode.FOREX),
        ("USDJPY", 3, 100_000.0, CalcMode.FOREX),
        ("XAUUSD", 2, 100.0, CalcMode.FOREX),
        ("US30", 2, 1.0, CalcMode.CFD_LEVERAGE),
    ],
)
def test_default_symbols_are_realistic(
    name: str, digits: int, contract: float, calc: CalcMode
) -> None:
    spec = DEFAULT_SYMBOLS[name]
    assert (spec.digits, spec.point, spec.contract_size, spec.calc_mode) == (
        digits,
        10.0**-digits,
        contract,
        calc,
    )
    assert spec.stops_level > spec.freeze_level > 0
    assert on_grid(spec.tick_size, spec.point)
    bid, ask = DEFAULT_START[name]
    assert price_normalized(spec, bid)
    assert price_normalized(spec, ask)
    assert ask > bid


def test_index_tick_size_is_larger_than_its_point() -> None:
    assert US30.tick_size == 0.25 > US30.point
    assert not price_normalized(US30, 44000.10)
    assert price_normalized(US30, 44000.25)


def test_instant_execution_variant() -> None:
    variant = instant_execution(US30)
    assert variant.exe_mode == ExecutionMode.INSTANT
    assert variant.name == US30.name
    assert US30.exe_mode == ExecutionMode.MARKET


# --- trigger heaps ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    orders=st.lists(
        st.tuples(st.booleans(), st.booleans(), st.integers(min_value=-50, max_value=50)),
        max_size=25,
    ),
    stops=st.lists(
        st.tuples(
            st.booleans(),
            st.integers(min_value=-50, max_value=50),
            st.integers(min_value=-50, max_value=50),
        ),
        max_size=25,
    ),
    quote=st.tuples(
        st.integers(min_value=-60, max_value=60), st.integers(min_value=0, max_value=5)
    ),
)
def test_ref_4_2_trigger_book_fires_exactly_what_the_quote_reaches(
    orders: list[tuple[bool, bool, int]],
    stops: list[tuple[bool, int, int]],
    quote: tuple[int, int],
) -> None:
    book = TriggerBook(1e-8)
    expected: set[tuple[Kind, int]] = set()
    bid = px(ASK, quote[0])
    ask = px(bid, quote[1])
    for ticket, (buy, limit, offset) in enumerate(orders):
        price = px(ASK, offset)
        book.add_order(ticket, 0, buy=buy, limit=limit, price=price)
        side = ask if buy else bid
        if (side <= price) if (limit == buy) else (side >= price):
            expected.add((Kind.ORDER, ticket))
    for i, (buy, sl_offset, tp_offset) in enumerate(stops):
        ticket = 1000 + i
        sl, tp = px(ASK, sl_offset), px(ASK, tp_offset)
        book.add_position(ticket, 0, buy=buy, sl=sl, tp=tp)
        close = bid if buy else ask
        if (close <= sl) if buy else (close >= sl):
            expected.add((Kind.SL, ticket))
        if (close >= tp) if buy else (close <= tp):
            expected.add((Kind.TP, ticket))
    fired = book.fired(bid, ask)
    assert {(f.kind, f.ticket) for f in fired} == expected
    kinds = [f.kind for f in fired]
    assert kinds == sorted(kinds, key=lambda k: k != Kind.ORDER)  # orders first
    assert book.fired(bid, ask) == []  # popped entries are gone
    assert len(book) == len(orders) + 2 * len(stops) - len(fired)
