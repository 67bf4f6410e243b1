"""The margin and profit formulas of one symbol for one account, reduced to two constants each.

``mtgate.domain.symbols.margin_required`` and ``profit`` are the rules (reference §5.1). For the
OTC calculation modes they have the shape

    margin(V, P)                = k_m * V * P**e_m
    profit(buy, V, open, close) = +/-(close - open) * k_p * V * close**e_p

where the exponents come from the currency conversion at the symbol's own rate (times P,
divided by P, or none). :class:`Arithmetic` measures the constants by calling the domain
functions and checks the shape at a third point; a symbol whose formulas do not fit keeps
calling the domain functions. The market-order path evaluates these a few times per order,
where the domain functions' enum conversions and currency branches cost more than the
arithmetic itself.

:meth:`Arithmetic.position_profit` is the other use: one position's profit exactly as the domain
function computes it (the same float operations in the same order, so the same bits), with
the calculation-mode and currency branches taken once per symbol. Position reports (every
snapshot values every open position) call it.
"""

from __future__ import annotations

import math

from mtgate.domain.enums import CalcMode
from mtgate.domain.symbols import SymbolSpec, margin_required, profit

_REL = 1e-12

# How position_profit converts ΔP·ContractSize·Lots (see mtgate.domain.symbols.profit).
_AS_IS = 0  # the profit currency is the deposit currency
_DIVIDED = 1  # the base currency is the deposit currency: divided by the close price
_FUTURES = 2  # ΔP / TickSize · TickValue · Lots
_DOMAIN = 3  # anything else: call the domain function (which may refuse the conversion)


def _fit(f1: float, f2: float, f3: float) -> tuple[float, int] | None:
    """(k, e) with f(x) = k · x**e at x = 1, 2, 3, or None when f has another shape."""
    if f1 == 0.0:
        return (0.0, 0) if f2 == 0.0 and f3 == 0.0 else None
    ratio = f2 / f1
    if ratio <= 0:
        return None
    e = round(math.log2(ratio))
    if not math.isclose(f1 * 2.0**e, f2, rel_tol=_REL) or not math.isclose(
        f1 * 3.0**e, f3, rel_tol=_REL
    ):
        return None
    return f1, e


class Arithmetic:
    """Margin and profit of ``spec`` for an account's leverage and currency."""

    __slots__ = ("_exact", "_m", "_p", "currency", "leverage", "spec")

    def __init__(self, spec: SymbolSpec, leverage: int, currency: str) -> None:
        self.spec = spec
        self.leverage = leverage
        self.currency = currency
        self._m = _fit(
            *(margin_required(spec, 1.0, x, leverage, currency) for x in (1.0, 2.0, 3.0))
        )
        self._p = _fit(*(profit(spec, True, 1.0, x - 1.0, x, currency) for x in (1.0, 2.0, 3.0)))
        if spec.calc_mode == CalcMode.FUTURES:
            self._exact = _FUTURES
        elif spec.currency_profit == currency:
            self._exact = _AS_IS
        elif spec.currency_base == currency:
            self._exact = _DIVIDED
        else:
            self._exact = _DOMAIN

    def margin(self, volume: float, price: float) -> float:
        """``margin_required(spec, volume, price, leverage, currency)``."""
        if self._m is None:
            return margin_required(self.spec, volume, price, self.leverage, self.currency)
        k, e = self._m
        return k * volume * (price if e == 1 else price**e)

    def profit(self, buy: bool, volume: float, volume_price: float, close: float) -> float:
        """Profit of positions with Σvolume ``volume`` and Σvolume·open ``volume_price``
        closed at ``close``: ``profit(spec, buy, volume, volume_price / volume, close, ...)``."""
        if self._p is None:
            if volume <= 0:
                return 0.0
            return profit(self.spec, buy, volume, volume_price / volume, close, self.currency)
        k, e = self._p
        delta = close * volume - volume_price
        value = k * (delta if e == 0 else delta * close**e)
        return value if buy else -value

    def position_profit(self, buy: bool, volume: float, open_price: float, close: float) -> float:
        """``profit(spec, buy, volume, open_price, close, currency)`` to the bit: the same
        operations in the same order, without the per-call enum and currency lookups."""
        delta = (close - open_price) if buy else (open_price - close)
        exact = self._exact
        if exact == _AS_IS:
            return delta * self.spec.contract_size * volume
        if exact == _DIVIDED:
            return delta * self.spec.contract_size * volume / close
        if exact == _FUTURES:
            return delta / self.spec.tick_size * self.spec.tick_value * volume
        return profit(self.spec, buy, volume, open_price, close, self.currency)
