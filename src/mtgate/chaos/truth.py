"""The run's verdict: the journal and the bridge's views against the trade servers' ground
truth. Pure: fed plain values, so each counter is tested with constructed cases.

- **duplicates**: intents (client order ids) the servers executed more than once. A retry's
  comment ``mg:<id>.<n>`` counts as the same intent.
- **lost**: intents without a final status (no record and no answer, or still NEW), final
  statuses the servers contradict (FILLED/PLACED/CANCELLED/EXPIRED with nothing executed,
  REJECTED/NOT_FOUND with an execution), and executions no intent accounts for. A close
  the terminal answered "position already closed" (MT5 10036) is FILLED with no fill and
  no execution by design; it is consistent only while that position is not open.
- **unknown_unresolved**: intents still SUBMITTED or UNKNOWN.
- **mismatches**: what the journal says of an executed order (ticket, volume, price, SL/TP,
  whether a pending order is still placed) or the bridge's synced positions (tickets,
  volume, SL/TP) differ from the servers. Volumes: a FILLED order's ``fill_volume`` is the
  volume the server executed for it (a partial IOC fill: less than asked), and its
  ``volume`` is what the executed attempt asked for (after a "reduce volume" retry: the
  reduced volume, not the caller's first).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mtgate.domain.orders import OrderStatus, split_attempt

S = OrderStatus
EXECUTED = frozenset({S.FILLED, S.PLACED, S.CANCELLED, S.EXPIRED})
NOT_EXECUTED = frozenset({S.REJECTED, S.NOT_FOUND})
IN_DOUBT = frozenset({S.SUBMITTED, S.UNKNOWN})
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Execution:
    """A trade request a server executed (not refused) that opens or closes something."""

    account: str
    op: str
    """``market``, ``pending`` or ``close``."""
    client_order_id: str | None
    """From the request's comment, a retry's ``.<n>`` removed; None without one (MT4 close)."""
    ticket: int
    volume: float
    price: float
    request_ticket: int = 0
    """Closes: the position closed."""
    requested_volume: float = 0.0
    """Market orders and closes: the volume the executed attempt asked for (a close: 0, the
    whole position); ``volume`` is what the server filled."""
    sl: float = 0.0
    tp: float = 0.0


@dataclass(frozen=True, slots=True)
class JournalOrder:
    client_order_id: str
    account: str
    status: OrderStatus
    action: str = "open"
    ticket: int | None = None
    position_ticket: int | None = None
    volume: float | None = None
    """The volume asked for (after a retry that reduced it, the reduced one)."""
    fill_volume: float | None = None
    fill_price: float | None = None
    requested_price: float | None = None
    sl: float | None = None
    tp: float | None = None
    retry_count: int = 0


@dataclass(frozen=True, slots=True)
class Intent:
    """What the driver asked for, and the status the API call answered (None: no answer)."""

    client_order_id: str
    account: str
    answered: OrderStatus | None


@dataclass(frozen=True, slots=True)
class PositionFacts:
    ticket: int
    volume: float
    sl: float
    tp: float


@dataclass(frozen=True, slots=True)
class Truth:
    intents: list[Intent]
    journal: list[JournalOrder]
    executions: list[Execution]
    server_pending: Mapping[str, set[int]]
    """Account → tickets of its pending orders on the server."""
    server_positions: Mapping[str, list[PositionFacts]]
    synced_positions: Mapping[str, list[PositionFacts]]


@dataclass(frozen=True, slots=True)
class Finding:
    counter: str
    account: str
    subject: str
    """The client order id, or ``#ticket``."""
    journal: str
    server: str


@dataclass(slots=True)
class Verdict:
    findings: list[Finding] = field(default_factory=list)

    def count(self, counter: str) -> int:
        return sum(1 for f in self.findings if f.counter == counter)

    @property
    def clean(self) -> bool:
        return not self.findings

    def add(self, counter: str, account: str, subject: str, journal: str, server: str) -> None:
        self.findings.append(Finding(counter, account, subject, journal, server))


def intent_of(comment_id: str) -> str:
    """The intent a comment's client id belongs to: ``x-1.2`` is attempt 2 of ``x-1``
    (:func:`mtgate.domain.orders.split_attempt`; a client order id never ends so)."""
    return split_attempt(comment_id)[0]


def compare(truth: Truth) -> Verdict:
    verdict = Verdict()
    journal = {j.client_order_id: j for j in truth.journal}
    by_intent = _attribute(truth, journal, verdict)
    for cid, runs in by_intent.items():
        if len(runs) > 1:
            account = runs[0].account
            tickets = ", ".join(f"#{r.ticket}" for r in runs)
            record = journal.get(cid)
            said = record.status.value if record else "no record"
            verdict.add("duplicates", account, cid, said, f"{len(runs)} executions: {tickets}")
    subjects = {i.client_order_id: i for i in truth.intents}
    for cid, record in journal.items():
        subjects.setdefault(cid, Intent(cid, record.account, None))
    open_tickets = {
        (account, p.ticket) for account, ps in truth.server_positions.items() for p in ps
    }
    for cid, intent in subjects.items():
        record = journal.get(cid)
        if record is not None and _nothing_to_close(record, open_tickets):
            continue
        _judge(verdict, intent, record, by_intent.get(cid, []))
    _positions(verdict, truth)
    return verdict


def _attribute(
    truth: Truth, journal: Mapping[str, JournalOrder], verdict: Verdict
) -> dict[str, list[Execution]]:
    """Executions per intent; those no intent accounts for are findings (lost)."""
    known = set(journal) | {i.client_order_id for i in truth.intents}
    closes: dict[tuple[str, int], list[JournalOrder]] = defaultdict(list)
    for j in truth.journal:
        if j.action != "open" and j.position_ticket is not None:
            closes[(j.account, j.position_ticket)].append(j)
    out: dict[str, list[Execution]] = defaultdict(list)
    for ex in truth.executions:
        cid = ex.client_order_id
        if cid is None and ex.op == "close":
            # MT4 closes carry no comment: the journal's close of that ticket accounts for it.
            owners = closes.get((ex.account, ex.request_ticket), [])
            free = [o for o in owners if o.client_order_id not in out]
            best = next((o for o in free if o.status == S.FILLED), free[0] if free else None)
            cid = best.client_order_id if best else None
        if cid is None or intent_of(cid) not in known:
            verdict.add(
                "lost",
                ex.account,
                cid or f"#{ex.request_ticket or ex.ticket}",
                "no record",
                f"{ex.op} executed as #{ex.ticket} ({ex.volume} at {ex.price})",
            )
            continue
        out[intent_of(cid)].append(ex)
    return out


def _nothing_to_close(record: JournalOrder, open_tickets: set[tuple[str, int]]) -> bool:
    """A close answered "position already closed" (MT5 10036) is done with nothing traded
    (docs/protocol.md §5.2): FILLED without a fill, and consistent as long as the position
    is indeed not open on the server."""
    return (
        record.action != "open"
        and record.status == S.FILLED
        and record.fill_volume is None
        and record.position_ticket is not None
        and (record.account, record.position_ticket) not in open_tickets
    )


def _judge(
    verdict: Verdict, intent: Intent, record: JournalOrder | None, runs: list[Execution]
) -> None:
    account, cid = intent.account, intent.client_order_id
    status = record.status if record is not None else intent.answered
    server = f"{len(runs)} executions" + (f" (#{runs[0].ticket})" if runs else "")
    if status is None or status == S.NEW:
        verdict.add("lost", account, cid, "no final status" if status else "no record", server)
    elif status in IN_DOUBT:
        verdict.add("unknown_unresolved", account, cid, status.value, server)
    elif (status in EXECUTED and not runs) or (status in NOT_EXECUTED and runs):
        verdict.add("lost", account, cid, status.value, server)
    elif record is not None and runs and status in EXECUTED:
        _fields(verdict, record, runs[0])


def _fields(verdict: Verdict, record: JournalOrder, ex: Execution) -> None:
    diffs: list[str] = []
    if record.ticket != ex.ticket:
        diffs.append(f"ticket {record.ticket} vs {ex.ticket}")
    if ex.op == "pending":
        if not _same(record.requested_price, ex.price):
            diffs.append(f"price {record.requested_price} vs {ex.price}")
        if not (_same(record.sl or 0.0, ex.sl) and _same(record.tp or 0.0, ex.tp)):
            diffs.append(f"sl/tp {record.sl}/{record.tp} vs {ex.sl}/{ex.tp}")
    else:
        if not _same(record.fill_volume, ex.volume):
            diffs.append(f"fill volume {record.fill_volume} vs {ex.volume}")
        asked = ex.requested_volume
        if asked > 0 and record.volume is not None and not _same(record.volume, asked):
            diffs.append(f"volume asked {record.volume} vs {asked}")
        if not _same(record.fill_price, ex.price):
            diffs.append(f"price {record.fill_price} vs {ex.price}")
    if diffs:
        verdict.add(
            "mismatches", record.account, record.client_order_id, "; ".join(diffs), "see left"
        )


def _pending_state(verdict: Verdict, truth: Truth) -> None:
    for j in truth.journal:
        if j.ticket is None or j.action != "open":
            continue
        on_server = j.ticket in truth.server_pending.get(j.account, set())
        if on_server and j.status != S.PLACED:
            verdict.add("mismatches", j.account, j.client_order_id, j.status.value, "placed")
        elif j.status == S.PLACED and not on_server:
            verdict.add("mismatches", j.account, j.client_order_id, "placed", "not pending")


def _positions(verdict: Verdict, truth: Truth) -> None:
    _pending_state(verdict, truth)
    for account in sorted(set(truth.server_positions) | set(truth.synced_positions)):
        server = {p.ticket: p for p in truth.server_positions.get(account, [])}
        synced = {p.ticket: p for p in truth.synced_positions.get(account, [])}
        for ticket in sorted(set(server) | set(synced)):
            s, b = server.get(ticket), synced.get(ticket)
            if s is None or b is None:
                said = "absent" if b is None else "open"
                verdict.add("mismatches", account, f"#{ticket}", said, "open" if s else "absent")
            elif not (_same(s.volume, b.volume) and _same(s.sl, b.sl) and _same(s.tp, b.tp)):
                verdict.add(
                    "mismatches",
                    account,
                    f"#{ticket}",
                    f"{b.volume} sl {b.sl} tp {b.tp}",
                    f"{s.volume} sl {s.sl} tp {s.tp}",
                )


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= _EPS * max(1.0, abs(a), abs(b))


def retries(journal: Iterable[JournalOrder]) -> int:
    """Attempts beyond the first, as the journal counts them."""
    return sum(j.retry_count for j in journal)
