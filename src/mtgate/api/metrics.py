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
from mtgate.sessions.session import SessionState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STATES = [s.value for s in SessionState] + ["disconnected"]


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
            "Trade requests from send to answer",
            labels=["terminal"],
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
        for tid in sorted(registry.grants()):
            session = registry.session(tid)
            current = session.state.value if session is not None else "disconnected"
            up.add_metric([tid], 1.0 if current == SessionState.READY else 0.0)
            for name in _STATES:
                state.add_metric([tid, name], 1.0 if name == current else 0.0)
            if session is not None and session.rtt_ms is not None:
                rtt.add_metric([tid], session.rtt_ms / 1000)
            meter = registry.meters[tid]
            running, buckets = 0, []
            for bound, count in zip(
                (*LATENCY_BUCKETS_MS, float("inf")), meter.trade_buckets, strict=True
            ):
                running += count
                label = "+Inf" if bound == float("inf") else repr(bound / 1000)
                buckets.append((label, float(running)))
            latency.add_metric([tid], buckets, sum_value=meter.trade_sum_ms / 1000)
            for code, count in sorted(meter.error_codes.items()):
                errors.add_metric([tid, str(code)], float(count))
            timeouts.add_metric([tid], float(meter.trade_timeouts))
            disconnects.add_metric([tid], float(meter.closes.total))
        yield from (up, state, rtt, latency, errors, timeouts, disconnects)
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


def registry_for(bridge: Bridge) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BridgeCollector(bridge))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
