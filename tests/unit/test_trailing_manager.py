"""The trailing-stop manager's own bookkeeping, with hand-written fakes of what it drives (no
terminal): its record of moves is bounded, and a position whose data breaks the rule stops
only that position's trailing, never the price feed."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mtgate.domain.clock import ManualClock
from mtgate.positions.requests import ModifyPositionRequest, PositionResult, TrailingStopRequest
from mtgate.positions.trailing_stops import MOVES_KEPT, TrailingManager
from mtgate.protocol import messages as m
from mtgate.sessions.session import AccountKey
from mtgate.store.sync_store import PositionState, TrailingState
from tests.unit.test_position_levels import make_spec

ACCOUNT = AccountKey(1, "S")
EURUSD = make_spec("EURUSD", digits=5, tick_size=0.00001, stops=0, freeze=0)


@dataclass
class _View:
    positions: dict[int, PositionState] = field(default_factory=dict)


@dataclass
class _Sync:
    views: dict[AccountKey, _View] = field(default_factory=dict)


@dataclass
class _Store:
    stored: list[TrailingState] = field(default_factory=list)

    def put_trailing(self, state: object) -> None:
        pass

    def put_event(self, event: object) -> None:
        pass

    async def trailing(self) -> list[TrailingState]:
        return self.stored


@dataclass
class _SessionView:
    symbols: dict[str, Any]
    ticks: dict[str, m.Tick] = field(default_factory=dict)


@dataclass
class _Identity:
    account: AccountKey


@dataclass
class _Session:
    identity: _Identity
    view: _SessionView


class _Registry:
    def __init__(self, session: _Session) -> None:
        self.session = session

    def route(self, account: AccountKey) -> _Session:
        return self.session


class _Positions:
    """Accepts every SL change at once and applies it to the synced view, as the terminal and
    the next snapshot would."""

    def __init__(self, sync: _Sync, session: _Session) -> None:
        self.sync = sync
        self.execution = type("Execution", (), {"registry": _Registry(session)})()
        self.changes = 0

    async def position(self, account: AccountKey, ticket: int) -> PositionState:
        return self.sync.views[account].positions[ticket]

    async def modify_position(self, req: ModifyPositionRequest) -> PositionResult:
        self.changes += 1
        view = self.sync.views[ACCOUNT]
        view.positions[req.ticket] = dataclasses.replace(
            view.positions[req.ticket], sl=req.sl or 0.0
        )
        return PositionResult(account=req.account, ticket=req.ticket, status="done", sl=req.sl)


def _position(ticket: int, price_open: float) -> PositionState:
    return PositionState(
        account=ACCOUNT,
        ticket=ticket,
        identifier=ticket,
        origin_ticket=ticket,
        symbol="EURUSD",
        buy=True,
        volume=0.1,
        price_open=price_open,
        sl=0.0,
        tp=0.0,
        magic=1,
        comment="",
        client_order_id=None,
        external=False,
        opened_at_ms=0,
        updated_at_ms=0,
    )


def _setup(store: _Store | None = None) -> tuple[TrailingManager, _Positions, _Session]:
    sync = _Sync({ACCOUNT: _View({1: _position(1, 1.1)})})
    session = _Session(_Identity(ACCOUNT), _SessionView({"EURUSD": EURUSD}))
    positions = _Positions(sync, session)
    manager = TrailingManager(positions, sync, store or _Store(), ManualClock())  # type: ignore[arg-type]
    return manager, positions, session


def _stored(ticket: int) -> TrailingState:
    return TrailingState(
        account=ACCOUNT,
        ticket=ticket,
        symbol="EURUSD",
        buy=True,
        distance_points=10,
        step_points=1,
        activation_points=None,
        min_interval_ms=0,
        active=True,
        stop_loss=None,
        moves=0,
        last_moved_at_ms=None,
        finished_reason=None,
        created_at_ms=0,
        updated_at_ms=0,
    )


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _tick(bid: float) -> m.Tick:
    return m.Tick(symbol="EURUSD", bid=round(bid, 5), ask=round(bid + 0.0001, 5), time_ms=0)


async def test_f11_the_record_of_moves_is_bounded() -> None:
    """Every accepted move used to be kept in a list for ever (86 M tuples a day for 1,000
    trailed positions): only the latest are kept in memory, the store has them all."""
    manager, positions, session = _setup()
    await manager.start(
        TrailingStopRequest(account=str(ACCOUNT), ticket=1, distance_points=10, min_interval_ms=0)
    )
    for i in range(MOVES_KEPT + 50):
        manager.on_tick(session, _tick(1.1 + 0.0001 * (i + 1)))  # type: ignore[arg-type]
        await _settle()
    assert positions.changes == MOVES_KEPT + 50
    assert len(manager.moves) == MOVES_KEPT
    assert manager.moves[-1][2] == round(1.1 + 0.0001 * (MOVES_KEPT + 50) - 0.0001, 5)


async def test_f13_a_position_whose_data_breaks_the_rule_does_not_stop_the_others() -> None:
    """Trailing stops reloaded at start-up learn the open price from the synced view; one of
    0 makes the rule refuse to exist (ValueError). The error stays with that position, tick
    after tick, and the other position still trails (it used to escape into the session's
    frame handler and close the connection)."""
    manager, _, session = _setup(_Store([_stored(1), _stored(2)]))
    view = manager.sync.views[ACCOUNT]
    view.positions[2] = _position(2, 0.0)
    assert await manager.load() == 2
    for step in range(3):
        manager.on_tick(session, _tick(1.1050 + 0.0010 * step))  # type: ignore[arg-type]
        await _settle()
    assert view.positions[1].sl == round(1.1050 + 0.0020 - 0.0001, 5)
    assert view.positions[2].sl == 0.0
