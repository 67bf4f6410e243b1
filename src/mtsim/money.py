"""Margin, floating profit and the account identities (reference §5.1, §5.2).

Computed from the per-(symbol, side) running sums of :mod:`mtsim.book`, never by walking the
positions: profit is linear in the open price, so Σ profit = profit(ΣV, Σ(V·P)/ΣV); margin is
linear in volume and affine in the price for every OTC calculation mode, so the same holds.

Choices (⚠):

- Margin is taken at each position's open price (what ``order_calc_margin(type, symbol,
  volume, price_open)`` returns), not re-converted at every tick: brokers differ, and a fixed
  margin keeps the figures reproducible.
- Hedged margin (reference §5.1, hedging accounts and MT4): the volume covered by an opposite
  position is charged on both legs at ``margin_hedged / contract_size`` of the normal rate
  (``margin_hedged`` 50000 on a 100000 contract: half; 0: the hedged part is free); the
  uncovered excess of the larger side is charged in full.
- Profit is converted at the closing price (``mtgate.domain.symbols.profit``), swap and
  commission are zero in this model.

The formulas are the domain's, evaluated through :class:`mtsim.arith.Arithmetic`.
"""

from __future__ import annotations

from typing import NamedTuple

from mtgate.domain.symbols import SymbolSpec
from mtsim.arith import Arithmetic
from mtsim.book import Account, SymbolBook
from mtsim.prices import PriceFeed

_EPS = 1e-9


class Figures(NamedTuple):
    """Balance, floating profit, equity, margin, free margin and margin level (%).
    (A NamedTuple: computed for every order, where a frozen dataclass costs 5x to build.)"""

    balance: float
    profit: float
    equity: float
    margin: float
    margin_free: float
    margin_level: float


def symbol_margin(
    arith: Arithmetic, spec: SymbolSpec, buy: tuple[float, float], sell: tuple[float, float]
) -> float:
    """Margin of one symbol's positions; ``buy``/``sell`` are (Σvolume, Σvolume·price)."""
    (bv, bvp), (sv, svp) = buy, sell
    mb = arith.margin(bv, bvp / bv) if bv > _EPS else 0.0
    ms = arith.margin(sv, svp / sv) if sv > _EPS else 0.0
    if bv <= _EPS or sv <= _EPS:
        return mb + ms
    hedged = min(bv, sv)
    rate = spec.margin_hedged / spec.contract_size if spec.contract_size else 0.0
    full = mb * (bv - hedged) / bv + ms * (sv - hedged) / sv
    return full + rate * (mb * hedged / bv + ms * hedged / sv)


def book_margin(acct: Account, spec: SymbolSpec, book: SymbolBook) -> float:
    """Margin of one symbol's positions, cached until they change (it does not depend on
    prices: margin is taken at the open price)."""
    if book.margin < 0:
        arith = acct.arith(spec)
        book.margin = symbol_margin(
            arith,
            spec,
            (book.buy.volume, book.buy.volume_price),
            (book.sell.volume, book.sell.volume_price),
        )
    return book.margin


def figures(acct: Account, specs: dict[str, SymbolSpec], feed: PriceFeed) -> Figures:
    """The account identities of reference §5.2 at the feed's current prices."""
    floating = 0.0
    margin = 0.0
    for symbol, book in acct.books.items():
        if not book.positions:
            continue
        spec = specs[symbol]
        arith = book.arith
        if arith is None or arith.spec is not spec:
            arith = acct.arith(spec)
        bid, ask, _ = feed.quote(symbol)
        if book.buy.count:
            floating += arith.profit(True, book.buy.volume, book.buy.volume_price, bid)
        if book.sell.count:
            floating += arith.profit(False, book.sell.volume, book.sell.volume_price, ask)
        margin += book_margin(acct, spec, book)
    return _identities(acct.balance, floating, margin)


def _identities(balance: float, floating: float, margin: float) -> Figures:
    equity = balance + floating
    level = equity / margin * 100.0 if margin > _EPS else 0.0
    return Figures(balance, floating, equity, margin, equity - margin, level)


def after_deal(
    acct: Account,
    spec: SymbolSpec,
    now: Figures,
    *,
    buy: bool,
    volume: float,
    price: float,
    close: float,
) -> tuple[Figures, bool]:
    """The figures as if ``volume`` were bought/sold at ``price`` (``close``: the price it
    would be valued at now), and whether the deal increases the margin.

    Netting accounts reduce, close or reverse the symbol's position; hedging accounts add.
    """
    arith = acct.arith(spec)
    book = acct.book(spec.name)
    bv, bvp = book.buy.volume, book.buy.volume_price
    sv, svp = book.sell.volume, book.sell.volume_price
    before = book_margin(acct, spec, book)
    same_v, same_vp, opp_v, opp_vp = (bv, bvp, sv, svp) if buy else (sv, svp, bv, bvp)
    opening = volume
    if acct.netting and opp_v > _EPS:
        closed = min(volume, opp_v)
        opp_price = opp_vp / opp_v
        opp_v -= closed
        opp_vp = opp_v * opp_price
        opening = volume - closed
    same_v += opening
    same_vp += opening * price
    sides = ((same_v, same_vp), (opp_v, opp_vp)) if buy else ((opp_v, opp_vp), (same_v, same_vp))
    after = symbol_margin(arith, spec, sides[0], sides[1])
    spread_cost = arith.profit(buy, opening, opening * price, close) if opening > _EPS else 0.0
    result = _identities(now.balance, now.profit + spread_cost, now.margin - before + after)
    return result, after > before + _EPS


def free_margin_after(
    acct: Account,
    spec: SymbolSpec,
    now: Figures,
    *,
    buy: bool,
    volume: float,
    price: float,
    close: float,
) -> float | None:
    """Free margin after the deal when it adds margin, None when it does not (reference §5.2:
    only orders that increase the margin need free margin).

    Fast path: a deal adds at most its own full margin (an opposite position can only lower
    it), so if the free margin covers that, the exact netting/hedged figure is not needed."""
    arith = acct.arith(spec)
    free = (
        now.margin_free
        + arith.profit(buy, volume, volume * price, close)
        - arith.margin(volume, price)
    )
    if free >= 0:
        return free
    after, increases = after_deal(acct, spec, now, buy=buy, volume=volume, price=price, close=close)
    return after.margin_free if increases else None
