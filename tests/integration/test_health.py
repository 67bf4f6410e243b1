"""Connection health against the simulator: alerts raised and cleared, rows written."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from mtgate.domain.orders import OrderStatus
from mtgate.health.alerts import Alert, AlertKind, TerminalHealth
from mtgate.health.settings import HealthSettings
from mtgate.store.models import bridge_health_metrics
from mtgate.sync.synchronizer import SyncSettings
from tests.integration.conftest import MT4, MT5H, Harness, HarnessFactory, eventually

K = AlertKind
FAST = HealthSettings(interval_ms=100, down_after_ms=0, flap_window_s=60)


class Alerts:
    """Every alert the bridge reported, in order."""

    def __init__(self) -> None:
        self.seen: list[Alert] = []

    def __call__(self, alert: Alert) -> None:
        self.seen.append(alert)

    def of(
        self,
        kind: AlertKind,
        *,
        raised: bool = True,
        terminal: str | None = None,
        account: str | None = None,
    ) -> list[Alert]:
        return [
            a
            for a in self.seen
            if a.kind == kind
            and a.raised == raised
            and (terminal is None or a.terminal_id == terminal)
            and (account is None or a.account == account)
        ]


async def _watched(make_harness: HarnessFactory, **options: object) -> tuple[Harness, Alerts]:
    h = await make_harness(start=False, health=options.pop("health", FAST), **options)
    alerts = Alerts()

    def broken(alert: Alert) -> None:
        raise RuntimeError("a listener with a bug")

    h.bridge.on_alert(broken)  # subscribed first: the others must still hear every alert
    h.bridge.on_alert(alerts)
    host, port = await h.bridge.start()
    h.world.start(host, port)
    await h.ready()
    await eventually(lambda: bool(h.bridge.health_metrics()))  # the first sample is taken
    return h, alerts


def _figures(h: Harness, tid: str) -> TerminalHealth:
    return next(t for t in h.bridge.health_metrics() if t.terminal_id == tid)


async def test_a_dropped_terminal_is_down_and_leaves_its_account_unserved_until_it_returns(
    make_harness: HarnessFactory,
) -> None:
    h, alerts = await _watched(make_harness)
    account = h.account(MT5H)
    faults = h.terminal(MT5H).faults
    faults.stay_down = True
    h.terminal(MT5H).drop()
    await eventually(
        lambda: (
            bool(alerts.of(K.TERMINAL_DOWN, terminal=MT5H))
            and bool(alerts.of(K.NO_READY_TERMINAL, account=account))
        )
    )
    down = alerts.of(K.TERMINAL_DOWN, terminal=MT5H)[0]
    assert down.account == account and down.threshold == 0
    figures = _figures(h, MT5H)
    assert (figures.state, figures.ready, figures.disconnects) == ("disconnected", False, 1)
    assert {a.kind for a in h.bridge.active_alerts()} >= {K.TERMINAL_DOWN, K.NO_READY_TERMINAL}
    await eventually(lambda: _figures(h, MT5H).not_ready_for_ms > 300)  # several samples on

    faults.stay_down = False
    await h.ready(MT5H)
    await eventually(
        lambda: (
            bool(alerts.of(K.TERMINAL_DOWN, raised=False, terminal=MT5H))
            and bool(alerts.of(K.NO_READY_TERMINAL, raised=False, account=account))
        )
    )
    # One alert per episode, however many samples saw it, and none for the other terminals.
    assert len(alerts.of(K.TERMINAL_DOWN, terminal=MT5H)) == 1
    assert len(alerts.of(K.NO_READY_TERMINAL, account=account)) == 1
    assert not alerts.of(K.TERMINAL_DOWN, terminal=MT4)
    assert not [a for a in h.bridge.active_alerts() if a.terminal_id == MT5H]
    assert _figures(h, MT5H).ready and _figures(h, MT5H).disconnects == 1


async def test_three_quick_drops_raise_flapping(make_harness: HarnessFactory) -> None:
    h, alerts = await _watched(make_harness)
    for _ in range(3):
        h.terminal(MT5H).drop()
        await eventually(lambda: h.bridge.registry.ready_session(MT5H) is None)
        await h.ready(MT5H)
    await eventually(lambda: bool(alerts.of(K.FLAPPING, terminal=MT5H)))
    flap = alerts.of(K.FLAPPING, terminal=MT5H)[0]
    assert (flap.value, flap.threshold) == (3, 3)
    assert _figures(h, MT5H).flaps == 3
    assert not alerts.of(K.FLAPPING, terminal=MT4)


async def test_a_slow_broker_raises_the_execution_latency_alert(
    make_harness: HarnessFactory,
) -> None:
    h, alerts = await _watched(make_harness, broker_delay_ms=(150.0, 150.0))
    result = await h.bridge.place_market_order(
        account=h.account(MT5H), symbol="EURUSD", side="buy", volume=0.1
    )
    assert result.status == OrderStatus.FILLED
    await eventually(lambda: bool(alerts.of(K.EXECUTION_LATENCY, terminal=MT5H)))
    slow = alerts.of(K.EXECUTION_LATENCY, terminal=MT5H)[0]
    assert slow.value is not None and slow.value >= 150 and slow.threshold == 100
    figures = _figures(h, MT5H)
    assert figures.execution_latency_ms is not None and figures.execution_latency_ms >= 150
    assert figures.latency_p99_ms is not None and figures.latency_p99_ms >= 150


async def test_a_frozen_terminal_makes_its_account_stale(make_harness: HarnessFactory) -> None:
    h, alerts = await _watched(
        make_harness,
        sync=SyncSettings(interval_ms=200),
        health=HealthSettings(interval_ms=100, down_after_ms=0, stale_after_intervals=2),
    )
    account = h.account(MT5H)
    await eventually(lambda: _figures(h, MT5H).snapshot_age_ms is not None)
    h.terminal(MT5H).faults.frozen = True
    await eventually(lambda: bool(alerts.of(K.ACCOUNT_STALE, account=account)))
    stale = alerts.of(K.ACCOUNT_STALE, account=account)[0]
    assert stale.value is not None and stale.value > stale.threshold == 400
    assert not alerts.of(K.ACCOUNT_STALE, account=h.account(MT4))
    h.terminal(MT5H).faults.frozen = False
    h.terminal(MT5H).drop()  # the frozen connection is dead: the terminal dials again
    await eventually(lambda: bool(alerts.of(K.ACCOUNT_STALE, raised=False, account=account)))


async def test_refused_trades_over_the_threshold_raise_the_rejection_rate_alert(
    make_harness: HarnessFactory,
) -> None:
    settings = HealthSettings(
        interval_ms=100, down_after_ms=0, rejection_min_trades=3, max_rejection_rate_pct=50
    )
    h, alerts = await _watched(make_harness, health=settings)
    account = h.account(MT5H)
    h.terminal(MT5H).faults.reject_trades_after = 0
    for _ in range(3):
        result = await h.bridge.place_market_order(
            account=account, symbol="EURUSD", side="buy", volume=0.1
        )
        assert result.status == OrderStatus.REJECTED
    await eventually(lambda: bool(alerts.of(K.REJECTION_RATE, account=account)))
    rate = alerts.of(K.REJECTION_RATE, account=account)[0]
    assert (rate.value, rate.threshold) == (100.0, 50)
    figures = next(a for a in h.bridge.account_health() if a.account == account)
    assert (figures.trades, figures.refused) == (3, 3)
    assert not alerts.of(K.REJECTION_RATE, account=h.account(MT4))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def journal_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None  # the harness's own SQLite file
    url: str = request.getfixturevalue("pg_schema_url")
    return url


async def test_samples_are_written_with_the_new_columns(
    make_harness: HarnessFactory, journal_url: str | None
) -> None:
    h, _ = await _watched(make_harness, journal_url=journal_url)
    await h.bridge.place_market_order(
        account=h.account(MT5H), symbol="EURUSD", side="buy", volume=0.1
    )
    url = journal_url or f"sqlite:///{h.db}"
    engine = create_engine(url, poolclass=NullPool)

    def rows() -> list[dict[str, object]]:
        table = bridge_health_metrics
        with engine.connect() as conn:
            found = conn.execute(
                select(table).where(table.c.terminal_id == MT5H).order_by(table.c.recorded_at)
            )
            return [dict(r) for r in found.mappings()]

    def measured(row: dict[str, object]) -> bool:  # after an answered request and a pong
        return row["latency_p99_ms"] is not None and row["heartbeat_rtt_ms"] is not None

    try:
        await eventually(lambda: any(measured(r) for r in rows()))
        row = next(r for r in reversed(rows()) if measured(r))
    finally:
        engine.dispose()
    assert (row["connection_status"], row["ready"]) == ("ready", True)
    assert (row["account_login"], row["account_server"]) == (2001, "Sim-MT5")
    assert row["disconnects"] == 0 and row["flaps"] == 0
    assert row["last_heartbeat"] is not None
    assert row["execution_latency_ms"] is not None and row["rejection_rate"] == 0.0
    assert row["snapshot_age_ms"] is not None
    p50, p99 = row["latency_p50_ms"], row["latency_p99_ms"]
    assert isinstance(p50, float) and isinstance(p99, float) and 0 <= p50 <= p99
