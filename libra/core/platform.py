"""The platform both drivers describe: one VM type, one serverless function, the SLA.

`libra-sim` replays traces on this description and `libra-serve` runs on it, so they agree by
construction: `SimConfig` is a `Platform` plus replay settings, the live `Settings` a `Platform`
plus deployment settings. Capacity is derived (slots / mean service time), never a second knob.

Prices: AWS on-demand, us-east-1, as published on the EC2 and Lambda pricing pages (2025):
g4dn.xlarge (1 x NVIDIA T4, 4 vCPU, 16 GiB) $0.526/h, billed per second with a 60 s minimum;
Lambda x86 $0.0000166667 per GB-s (billed per 1 ms) plus $0.20 per million requests. Lambda's
default account concurrency is 1,000 and a function scales by up to 1,000 instances every 10 s.
Since August 2025 the INIT phase of a cold start is billed too.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

# A request is late when its latency exceeds the SLA by more than this. Sums of float seconds
# (arrival + wait + service) carry rounding noise of ~1e-11 s on a day-long trace; a 1 s request
# served at once must not be counted late because of it. One microsecond is far below anything
# measured.
SLA_TOLERANCE_S = 1e-6


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VMConfig(Strict):
    """One GPU VM worker type."""

    instance_type: str = Field("g4dn.xlarge", description="EC2 instance type priced below")
    price_per_hour_usd: PositiveFloat = Field(0.526, description="on-demand price, us-east-1")
    min_billing_s: float = Field(60.0, ge=0, description="EC2 per-second billing minimum")
    boot_s: float = Field(
        120.0, ge=0, description="launch to ready: EC2 boot + container start + model load"
    )
    concurrency: PositiveInt = Field(8, description="requests served at once (batch slots)")
    service_time_mean_s: PositiveFloat = Field(0.05, description="mean per-request service time")
    service_time_cv: float = Field(
        0.3, ge=0, description="coefficient of variation (lognormal; 1.0 with 'exponential')"
    )
    service_time_dist: Literal["lognormal", "exponential", "deterministic"] = "lognormal"
    queue_timeout_s: PositiveFloat = Field(
        30.0, description="a request that would wait longer in the VM queue is dropped"
    )
    routing_quantile: float = Field(
        0.999, gt=0, lt=1, description="the router plans a VM request with this quantile of "
        "the service time"
    )

    @property
    def routing_service_s(self) -> float:
        """The service time the router plans with: the `routing_quantile` (p99.9), so a request
        routed at the edge of the SLA budget still finishes inside it 999 times in 1000.

        Why not the p99: under sustained load the VM queue sits at the edge of the budget, so
        every VM-served request then has the planning quantile's chance of being late; at p99
        that was a third of `libra`'s violations on the Azure LLM conv trace.
        """
        q = self.routing_quantile
        if self.service_time_dist == "deterministic" or self.service_time_cv == 0:
            return self.service_time_mean_s
        if self.service_time_dist == "exponential":
            return self.service_time_mean_s * -math.log1p(-q)
        sigma = math.sqrt(math.log1p(self.service_time_cv**2))
        z = NormalDist().inv_cdf(q)
        return self.service_time_mean_s * math.exp(-sigma * sigma / 2.0 + z * sigma)

    @property
    def capacity_rps(self) -> float:
        """Saturation throughput of one VM: slots / mean service time."""
        return self.concurrency / self.service_time_mean_s

    @property
    def price_per_s_usd(self) -> float:
        return self.price_per_hour_usd / 3600.0


class ServerlessConfig(Strict):
    """One serverless function (AWS Lambda) running the quantized model on CPU."""

    memory_mb: PositiveInt = Field(2048, description="function memory; sets the GB-s price")
    price_per_gb_s_usd: PositiveFloat = Field(0.0000166667, description="Lambda x86 duration")
    price_per_request_usd: float = Field(0.0000002, ge=0, description="$0.20 per 1M requests")
    billing_granularity_s: PositiveFloat = Field(0.001, description="duration rounded up to this")
    service_time_mean_s: PositiveFloat = Field(0.25, description="INT8 model on Lambda CPU")
    service_time_cv: float = Field(0.2, ge=0)
    service_time_dist: Literal["lognormal", "exponential", "deterministic"] = "lognormal"
    cold_start_s: float = Field(1.5, ge=0, description="init: container image + ORT session")
    bill_cold_start: bool = Field(True, description="INIT phase billed (AWS, since Aug 2025)")
    invoke_overhead_s: float = Field(0.02, ge=0, description="invoke API round trip")
    keep_alive_s: float = Field(600.0, ge=0, description="idle instance kept warm this long")
    concurrency_limit: PositiveInt = Field(1000, description="account concurrency limit")
    scale_burst: PositiveInt = Field(1000, description="new instances allowed at once")
    scale_rate_per_s: PositiveFloat = Field(100.0, description="1,000 new instances per 10 s")
    warm_ping_s: float = Field(
        0.1, ge=0, description="a keep-warm ping holds its instance this long (billed), so "
        "concurrent pings reach distinct instances"
    )

    @property
    def memory_gb(self) -> float:
        return self.memory_mb / 1024.0

    def cost_per_request_usd(self, duration_s: float | None = None) -> float:
        """Cost of one warm invocation of `duration_s` (default: the mean service time)."""
        from libra.core.billing import invocation_cost_usd  # billing builds on this module

        return invocation_cost_usd(self.service_time_mean_s if duration_s is None else duration_s,
                                   self)


class SpotConfig(Strict):
    """Spot capacity for the VM workers: cheaper, but AWS may reclaim an instance at any time
    after a two-minute notice. Off by default: a policy then runs on-demand VMs only.

    Interruptions are a rate per instance-hour (a Poisson process per spot VM; AWS's Spot
    Instance Advisor publishes frequency bands per month) or, for a replay, a file of times.
    """

    enabled: bool = Field(False, description="VMs above the policy's on-demand base are spot")
    price_per_hour_usd: PositiveFloat = Field(
        0.2104, description="spot price of the VM type (see the profile's source)")
    interruptions_per_instance_hour: float = Field(
        0.20 / 730.0, ge=0, description="mean interruptions per spot instance-hour (20% per "
        "instance-month: the Spot Instance Advisor's worst band's edge; the profile's source)")
    notice_s: float = Field(120.0, ge=0, description="interruption notice before the instance "
                            "is reclaimed (AWS: two minutes)")
    interruptions_file: str | None = Field(
        None, description="replay only: a file of interruption times (s) instead of the rate")

    @property
    def price_per_s_usd(self) -> float:
        return self.price_per_hour_usd / 3600.0


class Platform(Strict):
    """What the simulator and the live platform must agree on (see module docs)."""

    vm: VMConfig = VMConfig()
    serverless: ServerlessConfig = ServerlessConfig()
    spot: SpotConfig = SpotConfig()
    sla_s: PositiveFloat = Field(1.0, description="end-to-end latency SLA per request")
    slo: float | None = Field(
        None, gt=0, lt=1, description="the fraction of requests that must be answered inside "
        "the SLA (0.999: at most 1 in 1,000 late or dropped); None: no stated objective")
    sla_penalty_usd: float = Field(
        0.0, ge=0, description="$ per late or dropped request, for the cost-with-penalties view")
    sla_margin_s: float = Field(
        0.0, ge=0, description="routing budget = SLA - margin (room for network jitter)"
    )
    tick_s: PositiveFloat = Field(1.0, description="controller period; LIBRA assumes 1 s")

    @model_validator(mode="before")
    @classmethod
    def _routing_follows_slo(cls, data: object) -> object:
        """With a stated SLO the router plans a VM request with the service time's
        1 - ROUTING_SHARE * (1 - slo) quantile when that is above `vm.routing_quantile`: at the
        edge of the budget a VM request is late only in that tail, so its share of the
        violation budget (`libra.core.policies.slo`) bounds it. Without an SLO nothing
        changes. (Validated input only: `model_copy(update=...)` skips this.)"""
        if not isinstance(data, dict):
            return data
        slo = data.get("slo")
        if not isinstance(slo, int | float) or isinstance(slo, bool) or not 0 < slo < 1:
            return data
        from libra.core.policies.slo import ROUTING_SHARE  # pure, no cycle at import time

        wanted = 1.0 - ROUTING_SHARE * (1.0 - float(slo))
        vm = data.get("vm", {})
        if isinstance(vm, VMConfig):
            if vm.routing_quantile < wanted:
                vm = vm.model_copy(update={"routing_quantile": wanted})
        elif isinstance(vm, dict):
            current = vm.get("routing_quantile", VMConfig.model_fields["routing_quantile"].default)
            if isinstance(current, int | float) and current < wanted:
                vm = {**vm, "routing_quantile": wanted}
        else:
            return data
        return {**data, "vm": vm}

    @model_validator(mode="after")
    def _check_platform(self) -> Platform:
        if self.sla_margin_s >= self.sla_s:
            raise ValueError(f"sla_margin_s ({self.sla_margin_s}) must be < sla_s ({self.sla_s})")
        if self.vm.service_time_mean_s > self.sla_s:
            raise ValueError(
                f"vm.service_time_mean_s ({self.vm.service_time_mean_s}) must be <= sla_s "
                f"({self.sla_s}): no request could meet the SLA"
            )
        return self

    @property
    def sla_budget_s(self) -> float:
        return self.sla_s - self.sla_margin_s
