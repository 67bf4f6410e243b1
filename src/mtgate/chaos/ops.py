"""The chaos run's operations through the bridge's API, and the ground truth read from the
simulated trade servers (its one place that looks inside the simulator)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mtgate.bridge import Bridge
from mtgate.chaos.plan import ChaosAccount, Op, OpKind
from mtgate.chaos.truth import Execution, Intent, JournalOrder, PositionFacts, Truth
from mtgate.chaos.world import account_id
from mtgate.domain.orders import OrderStatus, client_id_from_comment
from mtgate.domain.records import OrderRecord
from mtgate.execution.requests import OrderResult
from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey
from mtsim.server import TradeServer
from mtsim.world import SimWorld

ORDER_OPS = frozenset({OpKind.MARKET, OpKind.PENDING, OpKind.CLOSE, OpKind.PARTIAL_CLOSE})
"""Operations that journal an order under the operation's client order id."""


@dataclass(frozen=True, slots=True)
class Done:
    intent: Intent | None
    """Orders: what was asked and the status answered."""


def key(spec: ChaosAccount) -> AccountKey:
    return AccountKey(spec.login, spec.server)


def _server(world: SimWorld, spec: ChaosAccount) -> TradeServer:
    return world.servers[spec.server]


async def perform(
    bridge: Bridge, world: SimWorld, spec: ChaosAccount, op: Op, placed: list[str]
) -> Done | None:
    """Issue ``op``; None when there was nothing to act on (no open position, no placed
    order)."""
    account = account_id(spec)
    server = _server(world, spec)
    symbol = server.symbols[op.symbol]
    bid, ask, _ = server.feed.quote(op.symbol)
    pt = symbol.point
    result: OrderResult
    if op.kind == OpKind.MARKET:
        result = await bridge.place_market_order(
            account=account,
            symbol=op.symbol,
            side="buy" if op.buy else "sell",
            volume=op.volume,
            client_order_id=op.client_order_id,
            filling=op.filling or None,
            retry=_retry(op),
        )
    elif op.kind == OpKind.PENDING:
        d = op.distance_points * pt
        price = {
            "buy_limit": ask - d,
            "sell_limit": bid + d,
            "buy_stop": ask + d,
            "sell_stop": bid - d,
        }[op.pending_kind]
        expiration = int(world.servers[spec.server].clock.now_ms() + op.expire_s * 1000)
        result = await bridge.place_pending_order(
            account=account,
            symbol=op.symbol,
            kind=op.pending_kind,
            volume=op.volume,
            price=round(price, symbol.digits),
            expiration_ms=expiration if op.expire_s else None,
            client_order_id=op.client_order_id,
            retry=_retry(op),
        )
        if result.status == OrderStatus.PLACED:
            placed.append(op.client_order_id)
    elif op.kind == OpKind.CANCEL:
        if not placed:
            return None
        cid = placed.pop(op.pick % len(placed))
        await bridge.cancel_order(account=account, client_order_id=cid)
        return Done(None)
    else:
        positions = [p for p in bridge.synced_positions(account) if p.open]
        if not positions:
            return None
        pos = positions[op.pick % len(positions)]
        if op.kind == OpKind.MODIFY_SLTP:
            pbid, pask, _ = server.feed.quote(pos.symbol)
            ppt = server.symbols[pos.symbol].point
            digits = server.symbols[pos.symbol].digits
            d = op.distance_points * ppt
            sl, tp = (pbid - d, pbid + d) if pos.buy else (pask + d, pask - d)
            await bridge.modify_position(
                account=account, ticket=pos.ticket, sl=round(sl, digits), tp=round(tp, digits)
            )
            return Done(None)
        volume: float | None = None
        if op.kind == OpKind.PARTIAL_CLOSE:
            half = round(pos.volume * 100) // 2 / 100
            volume = half if half >= 0.01 else None
        result = await bridge.close_position(
            account=account, ticket=pos.ticket, volume=volume, client_order_id=op.client_order_id
        )
    return Done(Intent(op.client_order_id, account, result.status))


def _retry(op: Op) -> dict[str, object] | None:
    """What the caller allows beyond the default retries (None: the defaults)."""
    asked: dict[str, object] = {}
    if op.market_closed_wait_s:
        asked["market_closed_wait_s"] = op.market_closed_wait_s
    if op.next_filling:
        asked["next_filling"] = True
    return asked or None


async def in_doubt(bridge: Bridge) -> bool:
    """Whether the journal still holds orders the bridge has not resolved."""
    statuses = {OrderStatus.NEW, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN}
    return bool(await bridge.journal.list_orders(statuses=statuses, limit=1))


async def journal_orders(bridge: Bridge) -> list[JournalOrder]:
    """Every order of the journal, as the verdict compares them."""
    return [_journal_order(r) for r in await bridge.journal.list_orders(limit=None)]


def _journal_order(r: OrderRecord) -> JournalOrder:
    return JournalOrder(
        client_order_id=r.client_order_id,
        account=f"{r.account_login}@{r.account_server}",
        status=r.status,
        action=r.action.value,
        ticket=r.mt_order_id,
        position_ticket=r.position_ticket,
        volume=r.volume,
        fill_volume=r.fill_volume,
        fill_price=r.fill_price,
        requested_price=r.requested_price,
        sl=r.stop_loss,
        tp=r.take_profit,
        retry_count=r.retry_count,
    )


def executions(server: TradeServer) -> list[Execution]:
    """Trade requests the server executed that open or close something, with the intent
    their comment names, whichever attempt wrote it (``mg:<id>.<n>`` is ``<id>``; MT4 closes
    carry none)."""
    out: list[Execution] = []
    for e in server.executed:
        req, res = e.request, e.outcome
        if not isinstance(res, m.TradeResult):
            continue
        account = f"{e.login}@{server.name}"
        if isinstance(req, m.MarketOrder | m.ClosePosition):
            cid = client_id_from_comment(req.comment)
            op = "market" if isinstance(req, m.MarketOrder) else "close"
            ticket = req.ticket if isinstance(req, m.ClosePosition) else 0
            out.append(
                Execution(
                    account,
                    op,
                    cid,
                    res.order,
                    res.volume,
                    res.price,
                    request_ticket=ticket,
                    requested_volume=req.volume,
                )
            )
        elif isinstance(req, m.PendingOrder):
            cid = client_id_from_comment(req.comment)
            out.append(
                Execution(
                    account,
                    "pending",
                    cid,
                    res.order,
                    req.volume,
                    req.price,
                    sl=req.sl,
                    tp=req.tp,
                )
            )
    return out


def _facts(p: m.PositionReport) -> PositionFacts:
    return PositionFacts(p.ticket, p.volume, p.sl, p.tp)


async def gather_truth(
    bridge: Bridge,
    world: SimWorld,
    accounts: tuple[ChaosAccount, ...],
    intents: Mapping[str, Intent],
) -> Truth:
    journal = await journal_orders(bridge)
    execs = [ex for s in world.servers.values() for ex in executions(s)]
    server_pending: dict[str, set[int]] = {}
    server_positions: dict[str, list[PositionFacts]] = {}
    synced: dict[str, list[PositionFacts]] = {}
    for spec in accounts:
        account = account_id(spec)
        server = _server(world, spec)
        server_pending[account] = {o.ticket for o in server.pending_orders(spec.login)}
        server_positions[account] = [_facts(p) for p in server.positions(spec.login)]
        synced[account] = [
            PositionFacts(p.ticket, p.volume, p.sl, p.tp)
            for p in bridge.synced_positions(account)
            if p.open
        ]
    return Truth(
        intents=list(intents.values()),
        journal=journal,
        executions=execs,
        server_pending=server_pending,
        server_positions=server_positions,
        synced_positions=synced,
    )
