"""Reversal in one call: netting accounts in one deal; hedging accounts close, then open,
the second leg only after the first filled, with a clear result when it fails."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtgate import logs
from mtgate.domain.enums import MarginMode, Platform
from mtgate.domain.orders import OrderStatus
from mtgate.execution.requests import MarketOrderRequest, Side
from mtgate.execution.service import account_key
from mtgate.execution.validation import volume_refusal
from mtgate.positions.errors import PositionError
from mtgate.positions.requests import ClosePositionRequest, ReversalResult, ReversePositionRequest

if TYPE_CHECKING:
    from mtgate.positions.service import PositionService

log = logs.get("mtgate.positions")


async def reverse(service: PositionService, req: ReversePositionRequest) -> ReversalResult:
    account = account_key(req.account)
    session = service.route(account)
    assert session.identity is not None
    # Live: the deal's volume depends on the position's exact volume now (netting), and a
    # one-second-old view could turn a reversal into a partial close or an over-reversal.
    pos = await service.position(account, req.ticket, live=True)
    volume = pos.volume if req.volume is None else req.volume
    side = Side.SELL if pos.buy else Side.BUY
    netting = (
        session.identity.platform == Platform.MT5
        and session.identity.margin_mode == MarginMode.NETTING
    )
    if netting:
        opened = await service.execution.place_market_order(
            MarketOrderRequest(
                account=req.account,
                symbol=pos.symbol,
                side=side,
                volume=round(pos.volume + volume, 8),
                sl=req.sl,
                tp=req.tp,
                deviation_points=req.deviation_points,
                magic=pos.magic,
                client_order_id=req.client_order_id,
            )
        )
        done = opened.status == OrderStatus.FILLED
        return ReversalResult(
            complete=done,
            message="reversed in one deal" if done else "not reversed: the deal failed",
            open=opened,
        )
    spec, _ = service.market(session, pos.symbol)
    refusal = volume_refusal(volume, spec)
    if refusal is not None:  # the second leg is checked before the first one is sent
        raise PositionError(refusal)
    closed = await service.close_position(
        ClosePositionRequest(
            account=req.account, ticket=pos.ticket, deviation_points=req.deviation_points
        )
    )
    if closed.status != OrderStatus.FILLED:
        return ReversalResult(
            complete=False,
            message=f"not reversed: the close is {closed.status.value}; nothing was opened",
            close=closed,
        )
    opened = await service.execution.place_market_order(
        MarketOrderRequest(
            account=req.account,
            symbol=pos.symbol,
            side=side,
            volume=volume,
            sl=req.sl,
            tp=req.tp,
            deviation_points=req.deviation_points,
            magic=pos.magic,
            client_order_id=req.client_order_id,
        )
    )
    if opened.status != OrderStatus.FILLED:
        log.warning(
            "reversal second leg failed",
            account=req.account,
            ticket=pos.ticket,
            status=opened.status.value,
        )
        return ReversalResult(
            complete=False,
            message=(
                f"half reversed: #{pos.ticket} was closed, the opposite order is "
                f"{opened.status.value}; the account holds no position from it"
            ),
            close=closed,
            open=opened,
        )
    return ReversalResult(complete=True, message="closed, then opened", close=closed, open=opened)
