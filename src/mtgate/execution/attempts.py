"""What an attempt is made of: the fields it rewrites, its report, the terms a
modify-and-retry strategy changes (mtgate.execution.retries)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mtgate.domain import retry as rules
from mtgate.domain.orders import OrderStatus
from mtgate.domain.records import OrderRecord
from mtgate.domain.retry import RetryOptions, Strategy
from mtgate.domain.symbols import SymbolSpec
from mtgate.execution.requests import AttemptReport, OrderError
from mtgate.protocol import messages as m


@dataclass(frozen=True, slots=True)
class AttemptFields:
    """The fields an attempt rewrites, to put back when it cannot be journalled."""

    status: OrderStatus
    retry_count: int
    comment: str
    terminal_id: str
    volume: float
    deviation_points: int | None
    sent_server_ms: int | None
    deadline_at_ms: int | None

    @classmethod
    def of(cls, r: OrderRecord) -> AttemptFields:
        return cls(
            r.status,
            r.retry_count,
            r.comment,
            r.terminal_id,
            r.volume,
            r.deviation_points,
            r.sent_server_ms,
            r.deadline_at_ms,
        )

    def restore(self, r: OrderRecord) -> None:
        r.status, r.retry_count, r.comment, r.terminal_id = (
            self.status,
            self.retry_count,
            self.comment,
            self.terminal_id,
        )
        r.volume, r.deviation_points = self.volume, self.deviation_points
        r.sent_server_ms, r.deadline_at_ms = self.sent_server_ms, self.deadline_at_ms


def attempt_report(record: OrderRecord, outcome: str, error: OrderError | None) -> AttemptReport:
    return AttemptReport(
        attempt=record.retry_count + 1,
        terminal_id=record.terminal_id,
        comment=record.comment,
        volume=record.volume,
        outcome=outcome,
        code=None if error is None else error.code,
        name=None if error is None else error.name,
    )


def allowed_fillings(spec: SymbolSpec) -> frozenset[int]:
    """The market-order filling modes a symbol allows (reference §3.3): FOK and IOC by its
    ``filling_mode`` flags, RETURN unless its execution mode is MARKET."""
    modes = {mode for mode, flag in ((0, 1), (1, 2)) if spec.filling_mode & flag}
    if spec.exe_mode != 2:
        modes.add(2)
    return frozenset(modes)


def strategy_changes(
    record: OrderRecord,
    msg: m.Request,
    strategy: Strategy,
    spec: SymbolSpec | None,
    options: RetryOptions,
) -> dict[str, Any] | str:
    """The frame's fields a modify-and-retry strategy changes (volume, filling), the record
    updated to match; or why it cannot."""
    if strategy in (Strategy.REDUCE_VOLUME, Strategy.ROUND_VOLUME):
        if spec is None:
            return f"{record.symbol}: the symbol's volume step is not known"
        if strategy is Strategy.ROUND_VOLUME:
            volume = rules.round_to_step(record.volume, spec.volume_step)
            if volume < spec.volume_min or volume == record.volume:
                return f"volume {record.volume} cannot be rounded to a valid one"
        else:
            floor = options.min_volume or 0.0
            reduced = rules.reduced_volume(record.volume, floor, spec.volume_step, spec.volume_min)
            if reduced is None:
                return f"half of volume {record.volume} is below the floor {floor}"
            volume = reduced
        record.volume = volume
        return {"volume": volume}
    if strategy is Strategy.NEXT_FILLING:
        current = getattr(msg, "filling", -1)
        if spec is None or current < 0:
            return "the filling mode used is not known"
        following = rules.next_filling(current, allowed_fillings(spec))
        if following is None:
            return f"no filling mode after {current} is allowed for {record.symbol}"
        return {"filling": following}
    return {}
