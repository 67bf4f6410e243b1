"""Signals: one trade decision executed on many accounts, each sized by its own risk.

Each account's order is a market order through the same pipeline as any other, under a
client order id derived from the signal id and the account (:func:`signal_client_id`): a
signal sent again finds the orders it made and answers with them (``replayed``), so a resend
never doubles an order. To trade a decision again, send it under a new signal id.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated

import msgspec

from mtgate.domain.codes import Classification
from mtgate.domain.sizing import NotSized, risk_volume
from mtgate.execution.requests import (
    Account,
    InvalidRequest,
    Magic,
    MarketOrderRequest,
    OrderError,
    OrderResult,
    Points,
    PositivePrice,
    Price,
    Side,
    SignalId,
    Symbol,
    Volume,
)
from mtgate.execution.service import account_key
from mtgate.sessions.errors import NotRoutable
from mtgate.sessions.registry import TerminalRegistry

RiskPct = Annotated[float, msgspec.Meta(gt=0, le=100)]
MAX_ACCOUNTS = 200
_FIND_TRIES, _FIND_PAUSE_S = 100, 0.02
"""How long a resent signal looks for the order a concurrent send is journalling (2 s)."""


class SignalTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One account of a signal: sized by ``risk_pct`` (default: the signal's), or a fixed
    ``volume``."""

    account: Account
    risk_pct: RiskPct | None = None
    volume: Volume | None = None


class SignalRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A trade decision for ``accounts``: market ``side`` on ``symbol`` with the stop ``sl``
    (needed to size by risk), optionally ``tp``; ``price`` is the price the decision was made
    at (entry for sizing and the deviation band; default: the account's last Ask/Bid)."""

    signal_id: SignalId
    symbol: Symbol
    side: Side
    sl: PositivePrice
    accounts: Annotated[list[SignalTarget], msgspec.Meta(min_length=1, max_length=MAX_ACCOUNTS)]
    tp: Price | None = None
    price: Price | None = None
    risk_pct: RiskPct = 1.0
    deviation_points: Points = 10
    magic: Magic | None = None


class SignalOrder(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the signal did on one account: its order's result, or why no order was sent."""

    account: str
    client_order_id: str
    volume: float | None = None
    risk_amount: float | None = None
    """Deposit-currency loss at the stop for ``volume`` (sized orders)."""
    clamped: bool = False
    """The risk asked for more than the symbol's maximum volume."""
    replayed: bool = False
    """The signal was sent before: ``result`` is the order it made then, not a new one."""
    result: OrderResult | None = None
    error: OrderError | None = None


class SignalResult(msgspec.Struct, frozen=True):
    signal_id: str
    orders: list[SignalOrder]


def signal_client_id(signal_id: str, account: str) -> str:
    """``S`` and 16 hex digits of a hash of the signal id and the account: the same for a
    resent signal, different per account, a valid client order id that fits a comment."""
    digest = hashlib.blake2b(f"{signal_id}\x00{account}".encode(), digest_size=8).hexdigest()
    return "S" + digest.upper()


Place = Callable[[MarketOrderRequest], Awaitable[OrderResult]]
Find = Callable[[str, str], Awaitable[OrderResult | None]]


class Signals:
    def __init__(self, registry: TerminalRegistry, place: Place, find: Find) -> None:
        self._registry = registry
        self._place = place
        self._find = find

    async def execute(self, req: SignalRequest) -> SignalResult:
        accounts = [t.account for t in req.accounts]
        for text in accounts:
            if accounts.count(text) > 1:
                raise InvalidRequest(f"account {text} is listed twice", field="accounts")
        orders = await asyncio.gather(*(self._one(req, t) for t in req.accounts))
        return SignalResult(req.signal_id, list(orders))

    async def _one(self, req: SignalRequest, target: SignalTarget) -> SignalOrder:
        account = target.account
        cid = signal_client_id(req.signal_id, account)
        earlier = await self._find(account, cid)
        if earlier is not None:
            return SignalOrder(account, cid, earlier.volume, replayed=True, result=earlier)
        sized = self._size(req, target)
        if isinstance(sized, OrderError):
            return SignalOrder(account, cid, error=sized)
        volume, risk_amount, clamped = sized
        order = MarketOrderRequest(
            account=account,
            symbol=req.symbol,
            side=req.side,
            volume=volume,
            sl=req.sl,
            tp=req.tp,
            price=req.price,
            deviation_points=req.deviation_points,
            magic=req.magic,
            client_order_id=cid,
            signal_id=req.signal_id,
        )
        try:
            result = await self._place(order)
        except InvalidRequest as exc:
            if exc.field != "client_order_id":
                return SignalOrder(account, cid, volume, error=_refusal(exc.field, str(exc)))
            # The same signal, sent again at the same moment: the other one is placing it,
            # and its order is readable once its intent is committed (moments from now).
            again = await self._found_soon(account, cid)
            if again is None:
                raise
            return SignalOrder(account, cid, again.volume, replayed=True, result=again)
        return SignalOrder(account, cid, volume, risk_amount, clamped, result=result)

    async def _found_soon(self, account: str, cid: str) -> OrderResult | None:
        for _ in range(_FIND_TRIES):
            found = await self._find(account, cid)
            if found is not None:
                return found
            await asyncio.sleep(_FIND_PAUSE_S)
        return None

    def _size(
        self, req: SignalRequest, target: SignalTarget
    ) -> tuple[float, float | None, bool] | OrderError:
        if target.volume is not None:
            return target.volume, None, False
        try:
            session = self._registry.route(account_key(target.account))
        except NotRoutable as exc:
            return _refusal("account", str(exc), rule=exc.rule)
        view = session.view
        spec, tick, report = view.symbols.get(req.symbol), view.ticks.get(req.symbol), view.account
        if spec is None:
            return _refusal("symbol", f"symbol {req.symbol!r} is not offered by this terminal",
                            rule="unknown_symbol")  # fmt: skip
        entry = req.price or (
            (tick.ask if req.side == Side.BUY else tick.bid) if tick is not None else None
        )
        if not entry:
            return _refusal("price", f"no price of {req.symbol} yet to size from; give price",
                            rule="no_price")  # fmt: skip
        if report is None:
            return _refusal("account", "the account's equity is not known yet", rule="equity")
        if (req.side == Side.BUY) != (req.sl < entry):
            return _refusal("sl", f"sl {req.sl} is on the wrong side of the entry {entry}",
                            rule="stop_side")  # fmt: skip
        sized = risk_volume(report.equity, target.risk_pct or req.risk_pct, entry, req.sl, spec)
        if isinstance(sized, NotSized):
            field = "risk_pct" if sized.rule in ("volume_min", "equity") else "sl"
            return _refusal(field, sized.message, rule=sized.rule)
        return sized.volume, sized.risk_amount, sized.clamped


def _refusal(field: str | None, message: str, *, rule: str = "invalid") -> OrderError:
    return OrderError(
        source="bridge",
        message=message,
        field=field,
        rule=rule,
        classification=Classification.REJECTED,
    )
