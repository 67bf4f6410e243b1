"""Bulk position operations: select by account, symbol, magic, side or ticket; concurrent
across accounts (each served by its own terminal), in ticket order within one account; one
result per selected position, in the order selected."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from mtgate.execution.requests import Side
from mtgate.execution.service import account_key
from mtgate.positions.requests import (
    BulkCloseRequest,
    BulkItem,
    BulkModifyRequest,
    ClosePositionRequest,
    ModifyPositionRequest,
    PositionFilter,
)
from mtgate.sessions.session import AccountKey
from mtgate.store.sync_store import PositionState
from mtgate.sync.view import AccountView

if TYPE_CHECKING:
    from mtgate.positions.service import PositionService


def select(views: Mapping[AccountKey, AccountView], flt: PositionFilter) -> list[PositionState]:
    """Open positions matching every field ``flt`` sets, in (account, ticket) order."""
    accounts = {account_key(a) for a in flt.accounts} if flt.accounts else None
    tickets = set(flt.tickets) if flt.tickets else None
    chosen: list[PositionState] = []
    for account, view in views.items():
        if accounts is not None and account not in accounts:
            continue
        for pos in view.positions.values():
            if (
                (flt.symbol is None or pos.symbol == flt.symbol)
                and (flt.magic is None or pos.magic == flt.magic)
                and (flt.side is None or pos.buy == (flt.side == Side.BUY))
                and (tickets is None or pos.ticket in tickets)
            ):
                chosen.append(pos)
    return sorted(chosen, key=lambda p: (p.account.login, p.account.server, p.ticket))


async def bulk_modify(service: PositionService, req: BulkModifyRequest) -> list[BulkItem]:
    async def one(pos: PositionState) -> BulkItem:
        result = await service.modify_position(
            ModifyPositionRequest(account=str(pos.account), ticket=pos.ticket, sl=req.sl, tp=req.tp)
        )
        return BulkItem(account=str(pos.account), ticket=pos.ticket, modified=result)

    return await per_terminal(service.select(req.select), one)


async def bulk_close(service: PositionService, req: BulkCloseRequest) -> list[BulkItem]:
    async def one(pos: PositionState) -> BulkItem:
        result = await service.close_position(
            ClosePositionRequest(
                account=str(pos.account), ticket=pos.ticket, deviation_points=req.deviation_points
            )
        )
        return BulkItem(account=str(pos.account), ticket=pos.ticket, closed=result)

    return await per_terminal(service.select(req.select), one)


async def per_terminal(
    chosen: list[PositionState], one: Callable[[PositionState], Awaitable[BulkItem]]
) -> list[BulkItem]:
    """Concurrent across accounts, in order within one; one result per position."""
    groups: dict[AccountKey, list[PositionState]] = defaultdict(list)
    for pos in chosen:
        groups[pos.account].append(pos)

    async def run(positions: list[PositionState]) -> list[BulkItem]:
        return [await one(pos) for pos in positions]

    done = await asyncio.gather(*(run(g) for g in groups.values()))
    by_key = {(i.account, i.ticket): i for items in done for i in items}
    return [by_key[(str(p.account), p.ticket)] for p in chosen]
