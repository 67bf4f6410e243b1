"""Margin, equity, free margin and margin level (reference §5.1, §5.2) as the server reports
them, and the O(1) aggregates they are computed from."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtgate.domain.enums import CalcMode, MarginMode, OrderType, Platform
from mtgate.domain.symbols import SymbolSpec, margin_required, profit
from mtgate.protocol.messages import AccountInfo, AccountReport
from mtsim.arith import Arithmetic
from mtsim.money import _identities
from mtsim.symbols import DEFAULT_SYMBOLS, EURUSD
from tests.unit.sim.simdesk import ASK, BID, MakeDesk, px

T = OrderType


def _account(desk: object) -> AccountReport:
    report = desk.send(AccountInfo(id=1))  # type: ignore[attr-defined]
    assert isinstance(report, AccountReport)
    return report


def test_ref_5_1_usdjpy_one_lot_leverage_100_needs_1000_usd(
    make_desk: MakeDesk, platform: Platform
) -> None:
    desk = make_desk(platform)
    desk.market(T.BUY, volume=1.0, symbol="USDJPY")
    assert _account(desk).margin == 1000.0


@pytest.mark.parametrize(
    ("symbol", "volume", "expected"),
    [
        ("EURUSD", 1.0, 1100.12),  # FOREX: 100000 / 100 EUR at 1.10012
        ("GBPUSD", 0.5, 632.58),  # 50000 / 100 GBP at 1.26516
        ("XAUUSD", 0.1, 265.03),  # FOREX on 100 oz: 10 / 100 XAU at 2650.30
        ("US30", 1.0, 440.02),  # CFD_LEVERAGE: 1 x 44002.00 / 100
        ("USDJPY", 0.37, 370.0),
    ],
)
def test_ref_5_1_margin_per_calculation_mode(
    make_desk: MakeDesk, symbol: str, volume: float, expected: float
) -> None:
    desk = make_desk(Platform.MT5)
    desk.market(T.BUY, volume=volume, symbol=symbol)
    assert _account(desk).margin == expected


def test_ref_5_2_account_identities_after_a_trade(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5)
    desk.market(T.BUY, volume=1.0)  # at Ask 1.10012, valued at Bid 1.10000
    report = _account(desk)
    assert (report.balance, report.profit, report.equity) == (100_000.0, -12.0, 99_988.0)
    assert (report.margin, report.margin_free) == (1100.12, 98_887.88)
    assert report.margin_level == round(99_988.0 / 1100.12 * 100, 2)
    desk.quote("EURUSD", 1.10500, 1.10512)
    moved = _account(desk)
    assert (moved.profit, moved.equity, moved.margin) == (488.0, 100_488.0, 1100.12)


def test_ref_5_2_reference_example_figures() -> None:
    """The reference's check: equity 99553.22, margin 98.18 -> free 99455.04, level 101398.68%."""
    fig = _identities(99_553.22, 0.0, 98.18)
    assert round(fig.margin_free, 2) == 99_455.04
    assert round(fig.margin_level, 2) == 101_398.68
    assert _identities(1000.0, 0.0, 0.0).margin_level == 0.0  # no margin: reported as 0


def test_ref_5_1_hedged_margin(make_desk: MakeDesk, platform: Platform) -> None:
    """margin_hedged 50000 on a 100000 contract: the covered volume costs half on each leg."""
    desk = make_desk(platform)
    desk.market(T.BUY, volume=1.0)
    desk.market(T.SELL, volume=1.0)
    assert _account(desk).margin == round(0.5 * 1100.12 + 0.5 * 1100.00, 2)
    desk.market(T.BUY, volume=1.0)  # 2 buys against 1 sell: one lot uncovered
    buys = 2 * 100_000 / 100 * ASK
    expected = buys / 2 + 0.5 * (buys / 2 + 1000 * BID)
    assert _account(desk).margin == round(expected, 2)


def test_hedged_margin_zero_makes_the_covered_part_free(make_desk: MakeDesk) -> None:
    specs = {**DEFAULT_SYMBOLS, "EURUSD": msgspec.structs.replace(EURUSD, margin_hedged=0.0)}
    desk = make_desk(Platform.MT5, symbols=specs)
    desk.market(T.BUY, volume=1.0)
    desk.market(T.SELL, volume=1.0)
    assert _account(desk).margin == 0.0


def test_netting_margin_follows_the_single_position(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5, margin_mode=MarginMode.NETTING)
    desk.market(T.BUY, volume=1.0)
    desk.market(T.SELL, volume=0.4)
    assert _account(desk).margin == round(0.6 * 1100.12, 2)


@pytest.mark.parametrize(("balance", "accepted"), [(1112.13, True), (1112.11, False)])
def test_ref_5_2_free_margin_after_the_trade(
    make_desk: MakeDesk, platform: Platform, balance: float, accepted: bool
) -> None:
    """1 lot EURUSD needs 1100.12 margin and starts 12.00 down (the spread): 1112.12."""
    desk = make_desk(platform, balance=balance)
    if accepted:
        assert desk.market(T.BUY, volume=1.0).volume == 1.0
    else:
        assert desk.refused(desk.market_req(T.BUY, volume=1.0)).code == (
            134 if platform == Platform.MT4 else 10019
        )


def test_an_order_that_lowers_the_margin_needs_no_free_margin(make_desk: MakeDesk) -> None:
    """Netting: closing part of a position frees margin even when free margin is negative."""
    desk = make_desk(Platform.MT5, margin_mode=MarginMode.NETTING, balance=1200.0)
    desk.market(T.BUY, volume=1.0)  # free margin 1200 - 12 - 1100.12 = 87.88
    desk.quote("EURUSD", px(BID, -1000), px(ASK, -1000))  # 1012 down: free margin < 0
    assert _account(desk).margin_free < 0
    assert desk.market(T.SELL, volume=0.5).volume == 0.5


def test_balance_accumulates_realized_profit(make_desk: MakeDesk) -> None:
    desk = make_desk(Platform.MT5, margin_mode=MarginMode.NETTING)
    desk.market(T.BUY, volume=1.0)
    desk.quote("EURUSD", 1.10112, 1.10124)
    desk.market(T.SELL, volume=1.0)
    profits = [d.profit for d in desk.server.deals(desk.login)]
    assert profits == [0.0, 100.0]
    report = _account(desk)
    assert (report.balance, report.equity, report.margin, report.margin_level) == (
        100_100.0,
        100_100.0,
        0.0,
        0.0,
    )


def test_floating_profit_is_the_sum_over_positions(make_desk: MakeDesk) -> None:
    """The O(1) aggregates equal the per-position sum of reference §5.1 profits."""
    desk = make_desk(Platform.MT5, balance=1e8)
    for i in range(30):
        desk.quote("EURUSD", px(BID, 7 * i), px(ASK, 7 * i))
        desk.market(T.BUY if i % 3 else T.SELL, volume=round(0.01 * (i + 1), 2))
    desk.quote("EURUSD", px(BID, 55), px(ASK, 55))
    positions = desk.server.positions(desk.login)
    by_position = sum(
        profit(EURUSD, p.type == 0, p.volume, p.price_open, p.price_current, "USD")
        for p in positions
    )
    assert _account(desk).profit == round(by_position, 2)
    assert sum(p.profit for p in positions) == pytest.approx(by_position, abs=0.01 * len(positions))


def _variants() -> list[SymbolSpec]:
    """Every default symbol plus one per other OTC calculation mode."""
    extra = [
        msgspec.structs.replace(EURUSD, name="EURUSD.cfd", calc_mode=CalcMode.CFD),
        msgspec.structs.replace(EURUSD, name="EURUSD.nl", calc_mode=CalcMode.FOREX_NO_LEVERAGE),
        msgspec.structs.replace(EURUSD, name="EURUSD.idx", calc_mode=CalcMode.CFD_INDEX),
        msgspec.structs.replace(
            EURUSD, name="EURUSD.fut", calc_mode=CalcMode.FUTURES, margin_initial=1500.0
        ),
    ]
    return [*DEFAULT_SYMBOLS.values(), *extra]


@settings(max_examples=300, deadline=None)
@given(
    spec=st.sampled_from(_variants()),
    leverage=st.sampled_from([1, 30, 100, 500]),
    volume=st.floats(min_value=0.01, max_value=100.0),
    open_price=st.floats(min_value=0.5, max_value=50_000.0),
    move=st.floats(min_value=-0.2, max_value=0.2),
    buy=st.booleans(),
)
def test_ref_5_1_compiled_formulas_equal_the_domain_functions(
    spec: SymbolSpec, leverage: int, volume: float, open_price: float, move: float, buy: bool
) -> None:
    arith = Arithmetic(spec, leverage, "USD")
    close = open_price * (1 + move)
    expected_margin = margin_required(spec, volume, open_price, leverage, "USD")
    assert math.isclose(
        arith.margin(volume, open_price), expected_margin, rel_tol=1e-9, abs_tol=1e-9
    )
    expected_profit = profit(spec, buy, volume, open_price, close, "USD")
    got = arith.profit(buy, volume, volume * open_price, close)
    assert math.isclose(
        got, expected_profit, rel_tol=1e-7, abs_tol=1e-6 * max(1.0, volume * open_price)
    )
