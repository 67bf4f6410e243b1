"""The simulated broker's symbols, with realistic retail specifications (reference §4.1, §5.1).

Values follow what common retail MT4/MT5 servers publish, chosen so that every validation rule
has something to bite on:

- the FX pairs and gold use ``CalcMode.FOREX`` (margin in the base currency converted at the
  symbol's own rate; gold's margin currency is XAU), the index uses ``CFD_LEVERAGE``;
- US30 has a tick size (0.25) larger than its point (0.01), so a price normalized to ``digits``
  can still be off the tick grid (reference §4.1 ``trade_tick_size``);
- US30 allows only IOC filling, no stop-limit orders and no SPECIFIED_DAY expiration, so the
  filling (10030), order-type (10035) and expiration (10022) rules can be exercised;
- every symbol uses market execution, the usual mode of the prop-firm servers the bridge
  targets; :func:`instant_execution` gives the instant-execution variant (requotes).

Tick values are in USD (the simulated accounts' deposit currency) per lot; USDJPY's is taken at
its start price (the profit arithmetic converts at the actual price, see
``mtgate.domain.symbols.profit``).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from mtgate.domain.enums import (
    CalcMode,
    ExecutionMode,
    ExpirationFlag,
    OrderModeFlag,
    SymbolFillingFlag,
    TradeMode,
)
from mtgate.domain.symbols import SymbolSpec

_ALL_ORDERS = int(
    OrderModeFlag.MARKET
    | OrderModeFlag.LIMIT
    | OrderModeFlag.STOP
    | OrderModeFlag.STOP_LIMIT
    | OrderModeFlag.SL
    | OrderModeFlag.TP
    | OrderModeFlag.CLOSE_BY
)
_ALL_EXPIRATIONS = int(
    ExpirationFlag.GTC
    | ExpirationFlag.DAY
    | ExpirationFlag.SPECIFIED
    | ExpirationFlag.SPECIFIED_DAY
)
_FOK_IOC = int(SymbolFillingFlag.FOK | SymbolFillingFlag.IOC)


def _fx(
    name: str, base: str, quote: str, *, digits: int, tick_value: float, stops: int
) -> SymbolSpec:
    point = 10.0**-digits
    return SymbolSpec(
        name=name,
        digits=digits,
        point=point,
        tick_size=point,
        tick_value=tick_value,
        contract_size=100_000.0,
        volume_min=0.01,
        volume_max=100.0,
        volume_step=0.01,
        currency_base=base,
        currency_profit=quote,
        currency_margin=base,
        calc_mode=CalcMode.FOREX,
        trade_mode=TradeMode.FULL,
        exe_mode=ExecutionMode.MARKET,
        stops_level=stops,
        freeze_level=5,
        filling_mode=_FOK_IOC,
        expiration_mode=_ALL_EXPIRATIONS,
        order_mode=_ALL_ORDERS,
        margin_hedged=50_000.0,
        description=f"{base} vs {quote}",
    )


EURUSD = _fx("EURUSD", "EUR", "USD", digits=5, tick_value=1.0, stops=10)
GBPUSD = _fx("GBPUSD", "GBP", "USD", digits=5, tick_value=1.0, stops=15)
USDJPY = _fx("USDJPY", "USD", "JPY", digits=3, tick_value=0.66667, stops=10)

XAUUSD = SymbolSpec(
    name="XAUUSD",
    digits=2,
    point=0.01,
    tick_size=0.01,
    tick_value=1.0,
    contract_size=100.0,
    volume_min=0.01,
    volume_max=100.0,
    volume_step=0.01,
    currency_base="XAU",
    currency_profit="USD",
    currency_margin="XAU",
    calc_mode=CalcMode.FOREX,
    exe_mode=ExecutionMode.MARKET,
    stops_level=20,
    freeze_level=10,
    filling_mode=_FOK_IOC,
    expiration_mode=_ALL_EXPIRATIONS,
    order_mode=_ALL_ORDERS,
    margin_hedged=50.0,
    description="Gold vs US Dollar",
)

US30 = SymbolSpec(
    name="US30",
    digits=2,
    point=0.01,
    tick_size=0.25,
    tick_value=0.25,
    contract_size=1.0,
    volume_min=0.1,
    volume_max=50.0,
    volume_step=0.1,
    currency_base="USD",
    currency_profit="USD",
    currency_margin="USD",
    calc_mode=CalcMode.CFD_LEVERAGE,
    exe_mode=ExecutionMode.MARKET,
    stops_level=100,
    freeze_level=50,
    filling_mode=int(SymbolFillingFlag.IOC),
    expiration_mode=int(ExpirationFlag.GTC | ExpirationFlag.DAY | ExpirationFlag.SPECIFIED),
    order_mode=_ALL_ORDERS & ~int(OrderModeFlag.STOP_LIMIT),
    margin_hedged=0.5,
    description="Wall Street 30 index CFD",
)

DEFAULT_SYMBOLS: dict[str, SymbolSpec] = {s.name: s for s in (EURUSD, GBPUSD, USDJPY, XAUUSD, US30)}

DEFAULT_START: dict[str, tuple[float, float]] = {
    "EURUSD": (1.08500, 1.08512),
    "GBPUSD": (1.26500, 1.26516),
    "USDJPY": (150.000, 150.015),
    "XAUUSD": (2650.00, 2650.30),
    "US30": (44000.00, 44002.00),
}
"""Start (bid, ask) per symbol: spreads of 1.2 / 1.6 pips, 1.5 pips, 30 cents, 2 points."""


def instant_execution(spec: SymbolSpec) -> SymbolSpec:
    """The instant-execution variant of ``spec`` (requotes on deviation, reference §8)."""
    return msgspec.structs.replace(spec, exe_mode=int(ExecutionMode.INSTANT))


def instant_symbols(symbols: Mapping[str, SymbolSpec] = DEFAULT_SYMBOLS) -> dict[str, SymbolSpec]:
    """Every symbol of ``symbols`` switched to instant execution."""
    return {name: instant_execution(spec) for name, spec in symbols.items()}


MT4_ORDERS = _ALL_ORDERS & ~int(OrderModeFlag.STOP_LIMIT)
"""MT4 has every order type but stop-limit (docs/protocol.md §10)."""
MT4_EXPIRATIONS = int(ExpirationFlag.GTC | ExpirationFlag.SPECIFIED)
"""MT4 pending orders are good till cancelled or expire at a time; DAY kinds do not exist."""


def mt4_view(spec: SymbolSpec) -> SymbolSpec:
    """``spec`` as an MT4 EA reports it (docs/protocol.md §10): no filling modes (MT4 ignores
    filling), GTC and SPECIFIED expirations only, no stop-limit orders; the rest is MT4's
    ``MarketInfo`` values as they are."""
    return msgspec.structs.replace(
        spec,
        filling_mode=0,
        expiration_mode=spec.expiration_mode & MT4_EXPIRATIONS,
        order_mode=spec.order_mode & MT4_ORDERS,
    )
