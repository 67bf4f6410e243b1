"""What the terminal's records prove about one of the bridge's orders: pure functions.

Resolution (docs/protocol.md §9) looks an order up by its ticket when the journal has it
(rule 1), else by its client order id (rule 2), and, when neither finds anything, in the
history since the order was sent, matched on magic + symbol + side + volume + time (rule 3):
brokers may rewrite or drop comments, and an MT4 partial close replaces both comments.
These functions decide which records belong to the order; the tracker does the I/O.

Times: the window starts at the order's ``sent_server_ms`` (a lower bound of the trade
server's clock at the send, the server's clock not being the bridge's) minus one second,
since MT4 reports times truncated to the second (docs/protocol.md §10).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mtgate.domain.enums import DealEntry, DealReason, OrderType, Platform
from mtgate.domain.orders import OrderAction, OrderStatus, attempt_id, comment_id
from mtgate.domain.records import OrderRecord
from mtgate.protocol import messages as m

TIME_SLACK_MS = 1000
"""MT4 truncates times to the second: a deal of the send's second may read up to 999 ms
earlier than the bound the bridge took."""
_VOLUME_EPS = 1e-8
_EXITS = frozenset({DealEntry.OUT, DealEntry.OUT_BY, DealEntry.INOUT})
_SERVER_CLOSES = frozenset({DealReason.SL, DealReason.TP, DealReason.SO})
_IN_DOUBT = frozenset({OrderStatus.SUBMITTED, OrderStatus.UNKNOWN})
"""Exits the server makes by itself: never the bridge's close."""


def lookup_request(record: OrderRecord) -> m.OrderGet:
    """How an unfinished order is looked up.

    A close known only by the position it closes is looked up by that position's ticket: an
    MT4 close or close-by (``OrderClose`` takes no comment, and its "order" is the position's
    own ticket), and an MT5 close-by whose order is not known yet (a close-by order never
    carries the bridge's comment). Otherwise by the order's ticket once known (rule 1), else
    by its client order id (rule 2)."""
    if _by_position(record):
        assert record.position_ticket is not None
        return m.OrderGet(id=0, ticket=record.position_ticket)
    if record.mt_order_id:
        return m.OrderGet(id=0, ticket=record.mt_order_id)
    return m.OrderGet(id=0, client_id=current_attempt_id(record))


def _by_position(record: OrderRecord) -> bool:
    if record.action == OrderAction.OPEN:
        return False
    if record.platform == Platform.MT4:
        return True
    return record.action == OrderAction.CLOSE_BY and record.mt_order_id is None


def since_ms(record: OrderRecord) -> int:
    """Where the history of the order can start (0 when the send time is not known)."""
    if record.sent_server_ms is None:
        return 0
    return max(0, record.sent_server_ms - TIME_SLACK_MS)


def empty(found: m.Lookup) -> bool:
    return not (found.orders or found.positions or found.history_orders or found.deals)


def _same_volume(a: float, b: float) -> bool:
    return abs(a - b) <= _VOLUME_EPS


def _foreign(comment: str, record: OrderRecord) -> bool:
    """The comment carries another of the bridge's ids than the order's current attempt:
    another order, or an earlier attempt of this one (proven never to have executed, so
    never the one sought)."""
    other = comment_id(comment)
    return other is not None and other != current_attempt_id(record)


def current_attempt_id(record: OrderRecord) -> str:
    """The id the order's latest attempt carries in its comment (docs/protocol.md §9)."""
    return attempt_id(record.client_order_id, record.retry_count + 1)


def _deal_type(order_type: OrderType) -> int:
    return 0 if order_type.is_buy else 1


@dataclass(frozen=True, slots=True)
class Candidates:
    """Order tickets the history fallback matched; one means found, several ambiguous."""

    tickets: frozenset[int]

    @property
    def found(self) -> int | None:
        return next(iter(self.tickets)) if len(self.tickets) == 1 else None

    @property
    def ambiguous(self) -> bool:
        return len(self.tickets) > 1


def fallback_candidates(
    record: OrderRecord,
    history: m.HistoryReport,
    positions: Iterable[m.PositionReport],
    orders: Iterable[m.OrderReport],
) -> set[int]:
    """The order tickets whose records match ``record`` by magic + symbol + side + volume +
    time (rule 3); the caller drops those another journalled order holds (:class:`Candidates`).

    A record whose comment carries another client order id of the bridge is that order's,
    never this one's. For a close, only exit deals of the closed position count (by position
    id on MT4, whose close orders have no records of their own)."""
    since = since_ms(record)
    found: set[int] = set()
    if record.action != OrderAction.OPEN:
        for deal in history.deals:
            if _close_deal_matches(record, deal, since):
                found.add(deal.order)
        return found
    side = _deal_type(record.order_type)
    for deal in history.deals:
        if (
            deal.symbol == record.symbol
            and deal.magic == record.magic
            and deal.type == side
            and _same_volume(deal.volume, record.volume)
            and deal.time_ms >= since
            and _by_an_expert(record, deal)
            and not _foreign(deal.comment, record)
        ):
            found.add(deal.order)
    for order in [*history.orders, *orders]:
        if (
            order.symbol == record.symbol
            and order.magic == record.magic
            and order.type == record.order_type
            and _same_volume(order.volume_initial, record.volume)
            and order.time_setup_ms >= since
            and not _foreign(order.comment, record)
        ):
            found.add(order.ticket)
    for pos in positions:
        if (
            pos.symbol == record.symbol
            and pos.magic == record.magic
            and pos.type == side
            and _same_volume(pos.volume, record.volume)
            and pos.time_ms >= since
            and not _foreign(pos.comment, record)
        ):
            found.add(pos.identifier)  # the opening order's ticket (MT4: the ticket)
    return found


def _by_an_expert(record: OrderRecord, deal: m.DealReport) -> bool:
    """MT5 books the deals of an EA's requests with reason EXPERT, and a manual trade's with
    its own (CLIENT, MOBILE, WEB). MT4 EAs derive the reason from the magic, which says
    nothing more than the magic itself (docs/protocol.md §10)."""
    return record.platform == Platform.MT4 or deal.reason == DealReason.EXPERT


def _close_deal_matches(record: OrderRecord, deal: m.DealReport, since: int) -> bool:
    if deal.entry not in _EXITS or deal.reason in _SERVER_CLOSES:
        return False
    if not _by_an_expert(record, deal):
        return False
    if deal.time_ms < since or _foreign(deal.comment, record):
        return False
    if record.platform == Platform.MT4 and deal.position_id != record.position_ticket:
        return False
    return (
        deal.symbol == record.symbol
        and deal.type == _deal_type(record.order_type)
        and _same_volume(deal.volume, record.volume)
    )


@dataclass(frozen=True, slots=True)
class CloseEvidence:
    """What the closed position's deals say about a close order: ``ours`` is the exit deal
    it made; ``otherwise`` means the position left by another exit (SL, TP, stop-out, by
    hand, before the close was sent), which proves the close did nothing."""

    ours: m.DealReport | None
    otherwise: bool
    ambiguous: bool = False
    """An exit that another close of the same position, itself in doubt, may have made:
    nothing proves which of the two did (MT4 exits carry no comment)."""


def close_evidence(
    record: OrderRecord,
    deals: Iterable[m.DealReport],
    others: Iterable[OrderRecord] = (),
) -> CloseEvidence:
    """Judge the exits found for a close.

    A close looked up by its own client id or ticket (MT5 closes) finds only its own
    records: every exit of its order is ours. A close looked up by the position's ticket
    (MT4 closes, close-by on both platforms) finds every exit of the position, and MT4 deal
    reasons cannot tell an EA's close from a manual one (both are derived from the magic,
    docs/protocol.md §10): an exit is ours when it is not one the server makes by itself and
    matches the close in volume and time (and, for a close-by, its marker); any other exit
    means the position was gone otherwise.

    ``others``: the journal's other closes of the same position. An MT4 ticket closes once
    (a partial close moves what is left to a new ticket), so its one exit belongs to at most
    one close: when another close of it is FILLED, that one made the exit and this one did
    nothing; when another is in doubt and the exit fits it as well, nothing here says which
    made it (:attr:`CloseEvidence.ambiguous`), and neither is settled from this exit."""
    exits = [d for d in deals if d.entry in _EXITS]
    if not _by_position(record):
        ours = [d for d in exits if record.mt_order_id in (None, d.order)]
        return CloseEvidence(ours[-1] if ours else None, False)
    since = since_ms(record)
    position_exits = [d for d in exits if d.position_id == record.position_ticket]
    rivals = [
        o
        for o in others
        if o.client_order_id != record.client_order_id and o.action != OrderAction.OPEN
    ]
    if record.platform == Platform.MT4 and any(o.status == OrderStatus.FILLED for o in rivals):
        return CloseEvidence(None, True)
    for deal in position_exits:
        if _exit_fits(record, deal, since):
            if record.platform == Platform.MT4 and any(
                o.status in _IN_DOUBT and _exit_fits(o, deal, since_ms(o)) for o in rivals
            ):
                return CloseEvidence(None, False, ambiguous=True)
            return CloseEvidence(deal, False)
    return CloseEvidence(None, bool(position_exits))


def _exit_fits(record: OrderRecord, deal: m.DealReport, since: int) -> bool:
    return (
        deal.reason not in _SERVER_CLOSES
        and deal.time_ms >= since
        and _same_volume(deal.volume, record.volume)
        and _close_by_marker(record, deal)
    )


def _close_by_marker(record: OrderRecord, deal: m.DealReport) -> bool:
    """A close-by's exit: MT5 books OUT_BY; MT4's history record says ``close hedge by #N``
    (docs/protocol.md §10). A plain close's exit is not OUT_BY."""
    if record.action != OrderAction.CLOSE_BY:
        return deal.entry != DealEntry.OUT_BY
    if record.platform == Platform.MT4:
        return f"close hedge by #{record.by_ticket}" in deal.comment
    return deal.entry == DealEntry.OUT_BY


_ENTRY_PREFERENCE: dict[int, int] = {
    DealEntry.IN: 0,
    DealEntry.INOUT: 1,
    DealEntry.OUT: 2,
    DealEntry.OUT_BY: 3,
}


def fill_deal(record: OrderRecord, deals: Iterable[m.DealReport]) -> m.DealReport | None:
    """The deal that filled an opening order: one made by its ticket (by any order found
    when the ticket is not known yet). An entry deal first; a netting order that reduced or
    closed the position has only an OUT deal (reference §3.6), which proves the fill too."""
    mine = [d for d in deals if record.mt_order_id in (None, d.order)]
    if not mine:
        return None
    return min(mine, key=lambda d: _ENTRY_PREFERENCE.get(d.entry, len(_ENTRY_PREFERENCE)))


def fill_from_history(record: OrderRecord, found: m.Lookup) -> m.OrderReport | None:
    """A FILLED history order of the order's own ticket: proof of a fill even without its
    deal (a netting order that reduced a position, say)."""
    for order in found.history_orders:
        if order.state == 4 and order.ticket == record.mt_order_id:
            return order
    return None
