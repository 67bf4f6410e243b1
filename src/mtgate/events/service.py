"""The events of a running bridge: the writers' hooks, the relay and its sinks, wired."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import URL
from sqlalchemy.pool import NullPool

from mtgate import logs
from mtgate.config import EventsSection
from mtgate.domain.clock import Clock
from mtgate.events.builders import BridgeEvents, order_entry, sync_entries
from mtgate.events.relay import Relay, Sink
from mtgate.events.sinks import KafkaSink, NatsSink
from mtgate.health.monitor import AlertListener
from mtgate.sessions.registry import TerminalRegistry
from mtgate.sessions.session import TerminalSession
from mtgate.store.journal import Journal
from mtgate.store.migrate import make_engine
from mtgate.store.outbox import OutboxReader
from mtgate.store.pg_journal import PgJournal
from mtgate.store.sql_journal import SqlJournal
from mtgate.store.sqlite_journal import SqliteJournal
from mtgate.store.sync_store import SyncStore

log = logs.get("mtgate.events")


def journal_url(journal: Journal) -> URL:
    """Where the journal's database is, for the relay's own connection."""
    if isinstance(journal, SqliteJournal):
        return URL.create("sqlite", database=str(journal.path))
    if isinstance(journal, PgJournal | SqlJournal):
        return journal.url
    raise TypeError(f"no outbox reader for a {type(journal).__name__}")


def _same_database(a: URL, b: URL) -> bool:
    if a.get_backend_name() == b.get_backend_name() == "sqlite":
        return Path(a.database or "").resolve() == Path(b.database or "").resolve()
    return a.set(drivername="postgresql") == b.set(drivername="postgresql")


def sinks_of(settings: EventsSection) -> list[Sink]:
    out: list[Sink] = []
    if settings.nats_url:
        out.append(
            NatsSink(
                settings.nats_url, stream=settings.nats_stream, prefix=settings.nats_subject_prefix
            )
        )
    if settings.kafka_bootstrap:
        out.append(
            KafkaSink(
                settings.kafka_bootstrap,
                prefix=settings.kafka_topic_prefix,
                partitions=settings.kafka_partitions,
                idempotence=settings.kafka_idempotence,
            )
        )
    return out


class Events:
    """Installs the outbox hooks on the journal and the sync store before they open, and
    runs the relay once the bridge is up."""

    def __init__(
        self,
        settings: EventsSection,
        journal: Journal,
        store: SyncStore | None,
        clock: Clock,
        sinks: list[Sink] | None = None,
    ) -> None:
        self.settings = settings
        self._journal = journal
        self._clock = clock
        journal.outbox = order_entry
        if store is not None and _same_database(store.url, journal_url(journal)):
            store.outbox = sync_entries
        elif store is not None:  # its rows would land in an outbox nobody relays
            log.warning(
                "the sync store is not in the journal's database: position and account "
                "events are not published",
                store=store.url.render_as_string(hide_password=True),
            )
        self.bridge_events = BridgeEvents(journal.record_outbox, clock.now_ms)
        self._sinks = sinks_of(settings) if sinks is None else sinks
        self.relay: Relay | None = None

    def alert_listener(self) -> AlertListener:
        return self.bridge_events.alert

    def attach(self, registry: TerminalRegistry) -> None:
        registry.terminal_listeners.append(self._terminal)
        registry.switch_listeners.append(self.bridge_events.switch)

    def _terminal(self, up: bool, session: TerminalSession, reason: str) -> None:
        identity = session.identity
        account = None if identity is None else (identity.account.login, identity.account.server)
        self.bridge_events.terminal(up, session.terminal_id, account, reason)

    async def start(self) -> Relay:
        engine = make_engine(journal_url(self._journal), poolclass=NullPool)
        relay = Relay(
            OutboxReader(engine),
            self._sinks,
            now_ms=self._clock.now_ms,
            poll_s=self.settings.poll_ms / 1000,
            retention_s=self.settings.retention_hours * 3600,
        )
        await relay.start()
        self.relay = relay
        return relay

    async def close(self) -> None:
        relay, self.relay = self.relay, None
        if relay is not None:
            await relay.close()
            relay.reader.close()
