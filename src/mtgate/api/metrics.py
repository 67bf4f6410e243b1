"""Prometheus metrics of ``GET /metrics``, read from the bridge's own state when scraped.

Nothing is measured for Prometheus on the order path: the terminals' meters (mtgate.health)
already count what is exported, and a scrape reads them, the sessions and the order book.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from mtgate.bridge import Bridge
from mtgate.events import model as events_model
from mtgate.health.meter import LATENCY_BUCKETS_MS
from mtgate.runtime import PAUSE_BUCKETS_MS, PauseHistogram
from mtgate.sessions.session import SessionState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STATES = [s.value for s in SessionState] + ["disconnected"]
_BUCKET_LABELS = [repr(bound / 1000) for bound in LATENCY_BUCKETS_MS] + ["+Inf"]
_PAUSE_LABELS = [repr(bound / 1000) for bound in PAUSE_BUCKETS_MS] + ["+Inf"]


class BridgeCollector(Collector):
    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge

    def collect(self) -> Iterator[Metric]:
        registry = self._bridge.registry
        up = GaugeMetricFamily(
            "mtgate_terminal_ready", "1 when the terminal's session is READY", labels=["terminal"]
        )
        state = GaugeMetricFamily(
            "mtgate_terminal_state",
            "1 for the terminal's session state",
            labels=["terminal", "state"],
        )
        rtt = GaugeMetricFamily(
            "mtgate_heartbeat_rtt_seconds", "Last heartbeat round trip", labels=["terminal"]
        )
        latency = HistogramMetricFamily(
            "mtgate_execution_latency_seconds",
            "Trade requests from send to answer, by account, terminal and operation",
            labels=["account", "terminal", "operation"],
        )
        errors = CounterMetricFamily(
            "mtgate_terminal_errors",
            "Error answers by the platform's code (-1: codes beyond the kept number)",
            labels=["terminal", "code"],
        )
        timeouts = CounterMetricFamily(
            "mtgate_trade_timeouts", "Trade requests without an answer in time", labels=["terminal"]
        )
        disconnects = CounterMetricFamily(
            "mtgate_terminal_disconnects",
            "Sessions of the terminal that closed",
            labels=["terminal"],
        )
        reconnects = CounterMetricFamily(
            "mtgate_terminal_reconnects",
            "Sessions of the terminal after its first (each one authenticated)",
            labels=["terminal"],
        )
        for tid in sorted(registry.grants()):
            session = registry.session(tid)
            current = session.state.value if session is not None else "disconnected"
            up.add_metric([tid], 1.0 if current == SessionState.READY else 0.0)
            for name in _STATES:
                state.add_metric([tid, name], 1.0 if name == current else 0.0)
            if session is not None and session.rtt_ms is not None:
                rtt.add_metric([tid], session.rtt_ms / 1000)
            meter = registry.meters[tid]
            for (account, operation), histogram in sorted(meter.trades.items()):
                running, buckets = 0, []
                for label, count in zip(_BUCKET_LABELS, histogram.buckets, strict=True):
                    running += count
                    buckets.append((label, float(running)))
                latency.add_metric(
                    [account, tid, operation], buckets, sum_value=histogram.sum_ms / 1000
                )
            for code, count in sorted(meter.error_codes.items()):
                errors.add_metric([tid, str(code)], float(count))
            timeouts.add_metric([tid], float(meter.trade_timeouts))
            disconnects.add_metric([tid], float(meter.closes.total))
            reconnects.add_metric([tid], float(max(0, meter.ready_sessions - 1)))
        yield from (up, state, rtt, latency, errors, timeouts, disconnects, reconnects)
        yield from self._runtime()
        yield self._retries()
        if self._bridge.has_sync:
            yield from self._sync()
        yield self._orders()
        yield self._alerts()
        if self._bridge.has_events:
            yield from self._events()

    def _events(self) -> Iterator[Metric]:
        relay = self._bridge.relay
        head = GaugeMetricFamily(
            "mtgate_events_head_seq", "The last outbox sequence number the relay has seen"
        )
        head.add_metric([], float(relay.head))
        lag = GaugeMetricFamily(
            "mtgate_events_outbox_lag",
            "Events written to the outbox and not yet acknowledged by the sink",
            labels=["sink"],
        )
        age = GaugeMetricFamily(
            "mtgate_events_oldest_unsent_age_seconds",
            "Age of the oldest event the sink has not acknowledged (0: none waiting)",
            labels=["sink"],
        )
        sent = CounterMetricFamily(
            "mtgate_events_sent", "Events the sink acknowledged", labels=["sink"]
        )
        failures = CounterMetricFamily(
            "mtgate_events_sink_failures",
            "Sends or connections of the sink that failed (each retried with backoff)",
            labels=["sink"],
        )
        now_ms = self._bridge.now_ms()
        for name, state in sorted(relay.states.items()):
            lag.add_metric([name], float(relay.lag(name)))
            oldest = state.oldest_unsent_at_ms
            age.add_metric([name], 0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000))
            sent.add_metric([name], float(state.sent))
            failures.add_metric([name], float(state.failures))
        unmade = CounterMetricFamily(
            "mtgate_events_unmade",
            "Events that could not be built (a bug, logged at ERROR); the change itself was kept",
        )
        unmade.add_metric([], float(events_model.unmade.count))
        yield from (head, lag, age, sent, failures, unmade)

    def _runtime(self) -> Iterator[Metric]:
        lag = HistogramMetricFamily(
            "mtgate_event_loop_lag_seconds",
            "How late the event loop ran a timer due every 5 ms (blocking work, GC pauses)",
        )
        lag.add_metric([], *_cumulative(self._bridge.loop_lag.histogram))
        gc_ = HistogramMetricFamily(
            "mtgate_gc_pause_seconds",
            "Garbage-collector pauses of the bridge's process, by generation",
            labels=["generation"],
        )
        for g, histogram in enumerate(self._bridge.gc_pauses.by_generation):
            gc_.add_metric([str(g)], *_cumulative(histogram))
        yield from (lag, gc_)

    def _retries(self) -> Metric:
        retries = CounterMetricFamily(
            "mtgate_order_retries",
            "Attempts that followed a refused or absent one, by account and retry strategy",
            labels=["account", "strategy"],
        )
        for (account, strategy), n in sorted(self._bridge.service.book.retries.items()):
            retries.add_metric([account, strategy], float(n))
        return retries

    def _sync(self) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "mtgate_sync_age_seconds",
            "Time since the account's last snapshot arrived (the sync delay)",
            labels=["account"],
        )
        stale = GaugeMetricFamily(
            "mtgate_sync_stale",
            "1 while the account's snapshots are overdue (the account_stale alert)",
            labels=["account"],
        )
        sync = self._bridge.sync
        now_ns = sync.clock.monotonic_ns()
        for account, view in sorted(sync.views.items()):
            name = str(account)
            stale.add_metric([name], 1.0 if view.stale else 0.0)
            if view.last_snapshot_ns is not None:
                age.add_metric([name], max(0.0, (now_ns - view.last_snapshot_ns) / 1e9))
        yield from (age, stale)

    def _orders(self) -> Metric:
        open_orders = GaugeMetricFamily(
            "mtgate_orders_open",
            "Orders in memory by status: submitted (awaiting an answer), unknown (being "
            "resolved), placed (pending on the server)",
            labels=["account", "status"],
        )
        counts = Counter(
            (f"{r.account_login}@{r.account_server}", r.status.value)
            for r in self._bridge.service.book.open_orders()
        )
        for (account, status), n in sorted(counts.items()):
            open_orders.add_metric([account, status], float(n))
        return open_orders

    def _alerts(self) -> Metric:
        alerts = GaugeMetricFamily(
            "mtgate_alerts_active", "Alerts raised and not cleared, by kind", labels=["kind"]
        )
        kinds = Counter(str(a.kind) for a in self._bridge.active_alerts())
        for kind, n in sorted(kinds.items()):
            alerts.add_metric([kind], float(n))
        return alerts


def _cumulative(h: PauseHistogram) -> tuple[list[tuple[str, float]], float]:
    running, buckets = 0, []
    for label, count in zip(_PAUSE_LABELS, h.buckets, strict=True):
        running += count
        buckets.append((label, float(running)))
    return buckets, h.sum_ms / 1000


def registry_for(bridge: Bridge) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BridgeCollector(bridge))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
