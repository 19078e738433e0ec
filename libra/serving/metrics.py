"""Prometheus metrics of one `libra-serve` process, in its own registry (tests start several).

Requests by backend and status, latency histograms, the fleet (VMs running and booting),
serverless in flight and cold starts, the cost so far, and the decision stream (target VMs,
rates, policy evaluation time, failed ticks).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


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
        self.cost = Gauge("libra_cost_usd", "Estimated cost so far", ["backend"], registry=r)
        self.target_vms = Gauge("libra_policy_target_vms", "Target VMs of the last decision",
                                registry=r)
        self.rate = Gauge("libra_arrival_rate_rps", "Mean arrival rate, last 10 s", registry=r)
        self.policy_eval = Histogram("libra_policy_eval_seconds", "Policy decide() time",
                                     buckets=(1e-5, 1e-4, 1e-3, 1e-2, 0.1), registry=r)
        self.tick_errors = Counter("libra_control_tick_errors_total", "Failed control ticks",
                                   registry=r)
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
