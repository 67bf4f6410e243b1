"""The outbox and its relay against simulated terminals (docs/events.md).

Each event is written with the state change it describes and reaches a sink at least once, in
per-account order, through sink failures and relay restarts; a crash between an order's
intent and its fold loses no event; a stream resumed from before what was pruned is told so.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from mtgate.config import EventsSection
from mtgate.domain.orders import OrderStatus
from mtgate.events.builders import order_entry
from mtgate.events.model import EventType
from mtgate.events.relay import Relay, ResumeGap
from mtgate.store import outbox as outbox_module
from mtgate.store.journal import open_journal
from mtgate.store.migrate import make_engine
from mtgate.store.outbox import OutboxReader, Stored
from mtgate.store.sqlite_journal import SqliteJournal
from tests.integration.conftest import MT4, MT5H, HarnessFactory, eventually
from tests.integration.store.conftest import make_order

EVENTS = EventsSection(poll_ms=5)


class Collecting:
    """A sink that keeps what it was sent and fails while ``down``."""

    def __init__(self, name: str = "test") -> None:
        self.name = name
        self.got: list[Stored] = []
        self.down = False
        self.failed = 0
        self.closed = 0

    async def send(self, events: Sequence[Stored]) -> None:
        if self.down:
            self.failed += 1
            raise ConnectionError("sink down")
        self.got.extend(events)

    async def close(self) -> None:
        self.closed += 1

    def types(self, account: str | None = None) -> list[str]:
        return [s.event.type for s in self.got if account is None or s.event.account == account]


def data(stored: Stored) -> dict[str, object]:
    decoded: dict[str, object] = msgspec.json.decode(stored.event.data)
    return decoded


async def test_a_fill_emits_submitted_then_filled_with_the_answer(
    make_harness: HarnessFactory,
) -> None:
    sink = Collecting()
    h = await make_harness(events=EVENTS, event_sinks=[sink])
    account = h.account(MT5H)
    result = await h.bridge.place_market_order(
        account=account, symbol="EURUSD", side="buy", volume=0.1, client_order_id="ev-1"
    )
    assert result.status == OrderStatus.FILLED

    def both() -> bool:
        orders = [t for t in sink.types(account) if t.startswith("execution.order.")]
        return orders == [EventType.ORDER_SUBMITTED.value, EventType.ORDER_FILLED.value]

    await eventually(both)
    submitted, filled = [s for s in sink.got if s.event.type.startswith("execution.order.")][:2]
    assert submitted.event.seq < filled.event.seq
    assert submitted.event.id != filled.event.id
    assert filled.event.key == account and filled.event.terminal_id == MT5H
    order = data(filled)["order"]
    assert isinstance(order, dict)
    assert order == msgspec.to_builtins(result)  # the order call's own answer, field for field
    assert data(filled)["from_status"] == "submitted" and data(filled)["trigger"] == "fill"
    assert data(submitted)["order"]["status"] == "submitted"  # type: ignore[index]


async def test_refused_order_emits_rejected_with_the_rule(make_harness: HarnessFactory) -> None:
    sink = Collecting()
    h = await make_harness(events=EVENTS, event_sinks=[sink])
    account = h.account(MT4)
    result = await h.bridge.place_market_order(
        account=account, symbol="EURUSD", side="buy", volume=1000.0, client_order_id="ev-big"
    )
    assert result.status == OrderStatus.REJECTED
    await eventually(lambda: EventType.ORDER_REJECTED.value in sink.types(account))
    rejected = next(s for s in sink.got if s.event.type == EventType.ORDER_REJECTED.value)
    order = data(rejected)["order"]
    assert isinstance(order, dict)
    assert order["error"] == msgspec.to_builtins(result.error)
    assert EventType.ORDER_SUBMITTED.value not in sink.types(account)  # nothing was sent


async def test_sync_and_terminal_events(make_harness: HarnessFactory) -> None:
    sink = Collecting()
    h = await make_harness(events=EVENTS, event_sinks=[sink])
    account = h.account(MT4)
    await eventually(lambda: EventType.TERMINAL_CONNECTED.value in sink.types(account))
    await h.bridge.place_market_order(
        account=account, symbol="EURUSD", side="sell", volume=0.2, client_order_id="ev-pos"
    )
    await eventually(lambda: EventType.POSITION_OPENED.value in sink.types(account), 8.0)
    await eventually(lambda: EventType.ACCOUNT_SYNCED.value in sink.types(account), 8.0)
    opened = next(s for s in sink.got if s.event.type == EventType.POSITION_OPENED.value)
    assert data(opened)["client_order_id"] == "ev-pos"
    synced = next(s for s in sink.got if s.event.type == EventType.ACCOUNT_SYNCED.value)
    assert isinstance(data(synced)["equity"], float)

    h.terminal(MT4).drop()
    await eventually(lambda: EventType.TERMINAL_DISCONNECTED.value in sink.types(account))


async def test_a_sink_down_delays_and_loses_nothing_in_order(
    make_harness: HarnessFactory,
) -> None:
    sink = Collecting()
    h = await make_harness(events=EVENTS, event_sinks=[sink])
    accounts = [h.account(MT4), h.account(MT5H)]
    sink.down = True
    for i in range(6):
        await h.bridge.place_market_order(
            account=accounts[i % 2], symbol="EURUSD", side="buy", volume=0.1,
            client_order_id=f"down-{i}",
        )  # fmt: skip
    await eventually(lambda: sink.failed >= 2)
    assert not [s for s in sink.got if s.event.type.startswith("execution.order.")]
    sink.down = False
    cids = {f"down-{i}" for i in range(6)}

    def all_filled() -> bool:
        filled = {
            data(s)["order"]["client_order_id"]  # type: ignore[index]
            for s in sink.got
            if s.event.type == EventType.ORDER_FILLED.value
        }
        return cids <= filled

    await eventually(all_filled, 10.0)
    seqs = [s.event.seq for s in sink.got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert sink.closed >= 1  # each failure drops the connection


async def test_relay_restart_resumes_from_the_saved_cursor(tmp_path: Path) -> None:
    """Events relayed before a restart are not sent again; the rest are, in order."""
    db = tmp_path / "j.db"
    journal = open_journal(f"sqlite:///{db}")
    journal.outbox = order_entry
    await journal.open()
    first = make_order(client_order_id="r-1")
    await journal.record_submitted(first)
    await journal.list_orders()  # flushes the fold, with its outbox row
    engine = make_engine(f"sqlite:///{db}")
    sink = Collecting()
    relay = Relay(OutboxReader(engine), [sink], now_ms=lambda: 0, poll_s=0.005)
    await relay.start()
    await eventually(lambda: len(sink.got) == 1)
    await relay.close()

    await journal.record_submitted(make_order(client_order_id="r-2"))
    await journal.list_orders()
    again = Collecting()
    relay = Relay(OutboxReader(engine), [again], now_ms=lambda: 0, poll_s=0.005)
    await relay.start()
    await eventually(lambda: len(again.got) == 1)
    await asyncio.sleep(0.05)
    await relay.close()
    await journal.close()
    engine.dispose()
    assert [data(s)["order"]["client_order_id"] for s in again.got] == ["r-2"]  # type: ignore[index]
    assert again.got[0].event.seq > sink.got[0].event.seq


async def test_an_intent_folded_after_a_crash_still_has_its_event(tmp_path: Path) -> None:
    """The intent is committed, the process dies before the fold: at the next open the fold
    writes the order's rows and its ``submitted`` event together."""
    db = tmp_path / "crash.db"
    journal = SqliteJournal(db)
    journal.outbox = order_entry
    await journal.open()
    await journal.record_submitted(make_order(client_order_id="c-1"))
    journal._flush_handle.cancel()  # type: ignore[union-attr]  # the process dies here
    journal._behind = []
    journal._conn.close()  # type: ignore[union-attr]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM journal_intents").fetchone() == (1,)

    reopened = SqliteJournal(db)
    reopened.outbox = order_entry
    await reopened.open()
    await reopened.close()
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT type, data FROM outbox").fetchall()
    assert len(found) == 1 and found[0][0] == EventType.ORDER_SUBMITTED.value
    assert msgspec.json.decode(found[0][1])["order"]["client_order_id"] == "c-1"


async def _outbox_of(db: Path, orders: int) -> None:
    """A journal at ``db`` whose outbox holds the events of ``orders`` submitted orders."""
    journal = open_journal(f"sqlite:///{db}")
    journal.outbox = order_entry
    await journal.open()
    for i in range(orders):
        await journal.record_submitted(make_order(client_order_id=f"p-{i}"))
    await journal.list_orders()
    await journal.close()


async def test_a_stream_resumed_before_the_pruned_events_is_told(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    await _outbox_of(db, 3)
    engine = make_engine(f"sqlite:///{db}")
    now = [10**13]
    relay = Relay(OutboxReader(engine), [], now_ms=lambda: now[0], poll_s=0.005, retention_s=1)
    await relay.start()
    assert relay.head >= 3
    assert await relay.prune() == 3
    with pytest.raises(ResumeGap) as gap:
        await relay.read(0, 10)
    assert gap.value.head == relay.head
    assert await relay.read(relay.head, 10) == []
    await relay.close()
    engine.dispose()


async def test_prune_deletes_in_small_transactions_up_to_what_every_sink_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "pb.db"
    await _outbox_of(db, 7)
    with sqlite3.connect(db) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    assert len(seqs) == 7
    monkeypatch.setattr(outbox_module, "PRUNE_BATCH", 2)  # 7 events: four transactions
    engine = make_engine(f"sqlite:///{db}")
    reader = OutboxReader(engine)
    far_future = 10**13
    assert reader.prune(far_future, up_to_seq=seqs[4]) == (5, seqs[4])  # not past the sinks
    with sqlite3.connect(db) as conn:
        left = [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    assert left == seqs[5:]
    assert reader.prune(far_future, up_to_seq=seqs[-1]) == (2, seqs[-1])
    assert reader.prune(far_future, up_to_seq=seqs[-1]) == (0, 0)
    reader.close()


SCHEMAS = Path(__file__).parents[2] / "docs" / "events"


def test_the_committed_schemas_are_current() -> None:
    from mtgate.events.schemas import render

    for t in EventType:
        path = SCHEMAS / f"{t.value}.json"
        assert path.read_text() == render(t), f"{path} is stale: python -m mtgate.events.schemas"
    assert {p.stem for p in SCHEMAS.glob("*.json")} == {t.value for t in EventType}


async def test_every_emitted_event_validates_against_its_schema(
    make_harness: HarnessFactory,
) -> None:
    """A run that makes every kind of event the simulator can cause; each one is checked
    against the JSON Schema of its type (docs/events/)."""
    import json

    from jsonschema import Draft202012Validator

    sink = Collecting()
    h = await make_harness(events=EVENTS, event_sinks=[sink])
    mt4, mt5 = h.account(MT4), h.account(MT5H)
    await h.bridge.place_market_order(
        account=mt4, symbol="EURUSD", side="buy", volume=0.1, client_order_id="s-1"
    )
    await h.bridge.place_market_order(
        account=mt5, symbol="EURUSD", side="buy", volume=1000.0, client_order_id="s-2"
    )
    pending = await h.bridge.place_pending_order(
        account=mt5, symbol="EURUSD", kind="buy_limit", volume=0.1, price=1.0,
        client_order_id="s-3",
    )  # fmt: skip
    await h.bridge.cancel_order(account=mt5, client_order_id=pending.client_order_id)
    await eventually(lambda: EventType.ACCOUNT_SYNCED.value in sink.types(), 8.0)
    await eventually(lambda: EventType.POSITION_OPENED.value in sink.types(), 8.0)
    h.terminal(MT4).drop()
    await eventually(lambda: EventType.TERMINAL_DISCONNECTED.value in sink.types())
    seen = set()
    for stored in sink.got:
        e = stored.event
        document = json.loads(msgspec.json.encode(e))
        validator = Draft202012Validator(
            json.loads((SCHEMAS / f"{e.type}.json").read_text()),
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        errors = [err.message for err in validator.iter_errors(document)]
        assert not errors, (e.type, errors, document)
        seen.add(e.type)
    assert {
        "execution.order.submitted", "execution.order.filled", "execution.order.rejected",
        "execution.order.placed", "execution.order.cancelled", "execution.position.opened",
        "execution.account.synced", "bridge.terminal.connected", "bridge.terminal.disconnected",
        "bridge.account.switched",
    } <= seen  # fmt: skip


@pytest.mark.postgres
async def test_order_events_on_postgresql(make_harness: HarnessFactory, pg_schema_url: str) -> None:
    """The PostgreSQL journal writes each order change's event in its transaction (under the
    outbox lock); the relay reads them from the same database."""
    sink = Collecting()
    h = await make_harness(journal_url=pg_schema_url, events=EVENTS, event_sinks=[sink])
    results = await asyncio.gather(
        *(
            h.bridge.place_market_order(
                account=h.account(tid),
                symbol="EURUSD",
                side="buy",
                volume=0.1,
                client_order_id=f"pg-{i}",
            )
            for i, tid in enumerate([MT4, MT5H, MT4, MT5H])
        )
    )
    assert all(r.status == OrderStatus.FILLED for r in results)

    def filled() -> int:
        return sink.types().count(EventType.ORDER_FILLED.value)

    await eventually(lambda: filled() == 4)
    seqs = [s.event.seq for s in sink.got]
    assert seqs == sorted(seqs)
    # The store is another database here: its events are not written where nobody reads.
    assert EventType.ACCOUNT_SYNCED.value not in sink.types()


async def test_an_event_that_cannot_be_made_never_stops_the_order(
    make_harness: HarnessFactory,
) -> None:
    """A bug in an event's builder loses that event (logged, counted), not the order."""
    import mtgate.events.model as model

    sink = Collecting()
    h = await make_harness(events=EVENTS, event_sinks=[sink])

    def broken(*_: object) -> None:
        raise RuntimeError("builder bug")

    h.bridge.journal.outbox = broken  # type: ignore[assignment]
    before = model.unmade.count
    result = await h.bridge.place_market_order(
        account=h.account(MT4), symbol="EURUSD", side="buy", volume=0.1, client_order_id="bug-1"
    )
    assert result.status == OrderStatus.FILLED
    assert model.unmade.count >= before + 2  # submitted and filled
    stored = await h.bridge.journal.get("bug-1")
    assert stored is not None and stored.status == OrderStatus.FILLED
