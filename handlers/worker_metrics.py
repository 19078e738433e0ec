"""Prometheus metrics of one VM worker (`GET /metrics`), in a registry of its own.

Requests by status and code, receipt-to-answer latency, requests answered without running because
their deadline had passed (on arrival or while queued for a batch), and the batcher's own counts
read when scraped (batches, requests batched, queue timeouts, model errors, in flight), so the
batcher keeps one set of counters and `/stats` and `/metrics` never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from libra.runtime.batching import BatchStats
from libra.serving.metrics import LATENCY_BUCKETS_S


class _BatcherCollector(Collector):
    def __init__(self, stats: Callable[[], tuple[BatchStats, int]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s, in_flight = self.stats()
        yield CounterMetricFamily("libra_worker_batches", "Batches the model ran", s.batches)
        yield CounterMetricFamily("libra_worker_batched_requests",
                                  "Requests the model ran, in those batches", s.requests)
        yield CounterMetricFamily("libra_worker_queue_timeouts",
                                  "Requests whose deadline passed while queued for a batch",
                                  s.timeouts)
        yield CounterMetricFamily("libra_worker_model_errors",
                                  "Requests failed by the model call", s.errors)
        yield GaugeMetricFamily("libra_worker_in_flight", "Requests submitted to the batcher "
                                "and not answered", in_flight)


class WorkerMetrics:
    def __init__(self, batcher_stats: Callable[[], tuple[BatchStats, int]] | None = None
                 ) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("libra_worker_requests_total", "Requests answered, by HTTP "
                                "status and code (ok for 200)", ["status", "code"], registry=r)
        self.latency = Histogram("libra_worker_request_seconds", "Receipt to answer of "
                                 "requests answered 200", buckets=LATENCY_BUCKETS_S, registry=r)
        self.expired = Counter("libra_worker_expired_total", "Requests answered 504 without "
                               "running because their deadline passed", ["where"], registry=r)
        self.spot_notices = Counter("libra_worker_spot_notices_total", "Spot notices read "
                                    "from the instance metadata (or injected by SIGUSR1), by "
                                    "kind: interruption (the worker drains) or rebalance "
                                    "(reported only)", ["kind"], registry=r)
        self.drains = Counter("libra_worker_drains_completed_total", "Drains after an "
                              "interruption notice that finished every request in flight and "
                              "left the registry", registry=r)
        if batcher_stats is not None:
            r.register(_BatcherCollector(batcher_stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)
