"""Prometheus metrics of one `libra-serve` process, in its own registry (tests start several).

Requests by backend and status, latency histograms, the fleet (VMs running and booting),
serverless in flight and cold starts, the cost so far, and the decision stream (target VMs,
rates, policy evaluation time, failed ticks), and `libra_build_info`.

Names and types follow what `promtool check metrics` accepts: counters end in `_total` (and only
counters do), values are in base units (seconds, dollars), and a cumulative value is a counter.
`tests/unit/test_metrics_names.py` checks those rules on the rendered text.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class CostTotals:
    """`libra_cost_usd_total{backend}`: the cost meter's running totals exposed as a counter.

    Why a collector and not `Counter.inc`: the VM cost is billed time (per-second billing with a
    minimum), which the cost meter recomputes from the fleet each tick rather than adding up per
    event; the collector reports its total, never lower than one it reported before (a counter
    that went down would read as a restart to `rate()`)."""

    def __init__(self) -> None:
        self.usd: dict[str, float] = {}

    def set_total(self, backend: str, usd: float) -> None:
        self.usd[backend] = max(self.usd.get(backend, 0.0), usd)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("libra_cost_usd", "Estimated cost so far, in US dollars",
                                     labels=["backend"])
        for backend, usd in sorted(self.usd.items()):
            family.add_metric([backend], usd)
        yield family


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("libra_requests_total", "Requests answered",
                                ["backend", "status"], registry=r)
        self.latency = Histogram("libra_request_latency_seconds", "End-to-end latency",
                                 ["backend"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.vms_running = Gauge("libra_vms_running", "VM workers ready", registry=r)
        self.vms_booting = Gauge("libra_vms_booting", "VM workers booting", registry=r)
        self.vms_draining = Gauge("libra_vms_draining", "VM workers draining", registry=r)
        self.serverless_in_flight = Gauge("libra_serverless_in_flight",
                                          "Serverless invocations in flight", registry=r)
        self.cold_starts = Counter("libra_serverless_cold_starts_total",
                                   "Serverless invocations that met a cold start", registry=r)
        self.retries = Counter("libra_retries_total", "Requests retried: on serverless after "
                               "a VM failed (vm_to_serverless), on another instance after one "
                               "crashed (serverless_crashed)", ["kind"], registry=r)
        self.shed = Counter("libra_requests_shed_total", "Requests refused for capacity or "
                            "time (503 + Retry-After), by reason", ["reason"], registry=r)
        self.serverless_errors = Counter("libra_serverless_errors_total",
                                         "Serverless invocations that failed, by code",
                                         ["code"], registry=r)
        self.lambda_throttles = Counter("libra_lambda_throttles_total",
                                        "Lambda invocations throttled (each retried attempt)",
                                        registry=r)
        self.admitted = Gauge("libra_admitted_requests", "Requests admitted and not yet "
                              "answered (limit: max_admitted_requests)", registry=r)
        self.decode_held = Gauge("libra_decode_jobs", "Decoding jobs queued or running",
                                 registry=r)
        self.tick_late = Gauge("libra_control_tick_late_seconds", "How late the last control "
                               "tick started against its schedule", registry=r)
        self.cost = CostTotals()
        r.register(self.cost)
        self.build_info = Gauge("libra_build_info", "Always 1: the package version, the model "
                                "version and the Python version serving", ["version",
                                "model_version", "python"], registry=r)
        self.target_vms = Gauge("libra_policy_target_vms", "Target VMs of the last decision",
                                registry=r)
        self.rate = Gauge("libra_arrival_rate_rps", "Mean arrival rate, last 10 s", registry=r)
        self.policy_eval = Histogram("libra_policy_eval_seconds", "Policy decide() time",
                                     buckets=(1e-5, 1e-4, 1e-3, 1e-2, 0.1), registry=r)
        self.tick_errors = Counter("libra_control_tick_errors_total", "Failed control ticks",
                                   registry=r)
        self.spot_notices = Counter("libra_spot_notices_total", "VM workers seen draining "
                                    "after a spot interruption notice (routed around from "
                                    "then on)", registry=r)
        self.fleet_errors = Counter("libra_fleet_update_errors_total", "Fleet API calls that "
                                    "failed and were worked around (the size set without the "
                                    "on-demand base), by operation", ["op"], registry=r)
        self.serverless_instances = Gauge("libra_serverless_instances",
                                          "Serverless instances alive, busy or idle", registry=r)
        self.serverless_warm_target = Gauge("libra_serverless_warm_target",
                                            "Instances the policy keeps warm", registry=r)
        self.warm_errors = Counter("libra_serverless_warm_errors_total",
                                   "Keep-warm rounds that failed", registry=r)
        self.redis_errors = Counter("libra_redis_errors_total", "Redis operations that failed "
                                    "or timed out (not those the breaker refused)", ["op"],
                                    registry=r)
        self.redis_breaker = Gauge("libra_redis_breaker_state", "Redis circuit breaker: 0 "
                                   "closed, 1 half-open, 2 open (calls refused)", registry=r)
        self.auth_failures = Counter("libra_auth_failures_total", "Requests refused for a "
                                     "missing or bad API key (401) or a non-admin key on the "
                                     "admin surface (403)", ["reason"], registry=r)
        self.rate_limited = Counter("libra_rate_limited_total", "Requests refused by their "
                                    "key's rate limit (429)", ["key"], registry=r)

    def set_build_info(self, model_version: str) -> None:
        """`libra_build_info{version,model_version,python} 1`, to join on in queries."""
        try:
            version = importlib.metadata.version("libra-serve")
        except importlib.metadata.PackageNotFoundError:  # run from a source tree
            version = "unknown"
        self.build_info.labels(version, model_version, platform.python_version()).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
