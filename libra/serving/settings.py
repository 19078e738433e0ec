"""`libra-serve` settings: one strict pydantic model, defaults for the embedded single machine.

Every field can be set by an environment variable `LIBRA_<FIELD>` (upper case) or a CLI option;
`LIBRA_REDIS_URL` switches the rate store and the worker registry to Redis, `serverless_driver`
= "aws" with `lambda_function` uses AWS Lambda, `provisioner` = "aws" with `asg_name` drives an
EC2 Auto Scaling group.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from libra.runtime.home import default_log_dir, default_model_dir

REPO_ROOT = Path(__file__).resolve().parents[2]


LAMBDA_GB_S_USD = 0.0000166667
LAMBDA_REQUEST_USD = 0.0000002
AWS_VM_BOOT_S = 120.0  # EC2 GPU boot + container start + model load (simulator default)


def lambda_cost_usd(duration_s: float, memory_mb: int) -> float:
    """One Lambda invocation's bill: duration in 1 ms steps times memory, plus the request fee."""
    billed_s = max(1, -(-round(duration_s * 1e6) // 1000)) / 1000
    return billed_s * memory_mb / 1024 * LAMBDA_GB_S_USD + LAMBDA_REQUEST_USD


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_dir: Path = Field(default_factory=default_model_dir,
                            description="`libra-model build` output folder "
                            "(libra.runtime.home: $LIBRA_HOME/onnx, ./artifacts/onnx)")
    policy: str = Field("libra", description="scaling policy (the names libra-sim uses)")
    policy_params: dict[str, Any] = Field(default_factory=dict)
    tick_s: PositiveFloat = 1.0
    sla_s: PositiveFloat = Field(1.0, description="end-to-end latency SLA per request")
    sla_margin_s: float = Field(0.1, ge=0)
    # VM workers
    provisioner: Literal["local", "aws"] = "local"
    boot_delay_s: float = Field(0.0, ge=0, description="extra delay emulating a VM boot (local)")
    vm_boot_s: float | None = Field(
        None, ge=0, description="expected launch-to-ready the policy plans with (default: "
        "boot_delay_s locally, 120 s on AWS)")
    max_vms: PositiveInt = 4
    initial_vms: int = Field(1, ge=0)
    worker_threads: PositiveInt = 1
    worker_cpu_precision: Literal["fp32", "int8", "int4"] = "fp32"
    max_batch_size: PositiveInt = 16
    max_batch_delay_ms: float = Field(5.0, ge=0)
    vm_service_s: PositiveFloat = Field(0.05, description="expected worker time per request")
    vm_capacity_rps: PositiveFloat = Field(40.0, description="requests/s one worker sustains")
    vm_price_per_hour_usd: float = Field(0.526, ge=0, description="g4dn.xlarge on demand")
    asg_name: str | None = None
    aws_region: str | None = None
    # serverless
    serverless_driver: Literal["local", "aws", "noop"] = Field(
        "local", description="noop answers at once (bench/router_overhead.py)")
    serverless_precision: Literal["int8", "int4"] = "int8"
    serverless_max_concurrency: PositiveInt = 4
    serverless_keep_alive_s: float = Field(60.0, ge=0)
    serverless_memory_mb: PositiveInt = 2048
    serverless_duration_s: PositiveFloat = Field(
        0.1, description="billed duration of one warm invocation (bench/serverless_latency.py)")
    serverless_cold_start_s: float = Field(
        0.75, ge=0, description="expected cold start: 0.75 s measured for the local pool "
        "(bench/serverless_latency.py); the simulator assumes 1.5 s for AWS Lambda")
    lambda_function: str | None = None
    # shared state
    redis_url: str | None = None
    # request limits
    max_body_bytes: PositiveInt = 25 * 2**20
    max_text_chars: PositiveInt = 5000
    body_timeout_s: PositiveFloat = Field(
        30.0, description="the whole body must arrive within this, else 408 body_timeout "
        "(a client that stalls half-way holds nothing longer)")
    header_timeout_s: PositiveFloat = Field(
        10.0, description="a request's line and headers must arrive within this of the "
        "connection opening or the request starting, else the connection is closed (slowloris)")
    # overload and admission (libra.serving.admission, docs/serving.md "Overload and admission")
    max_admitted_requests: PositiveInt = Field(
        64, description="requests admitted at once per router (door to answer); past it 503 "
        "overloaded at once")
    decode_threads: PositiveInt = Field(2, description="threads decoding media and tokenizing "
                                        "(their own pool, not asyncio's default executor)")
    request_timeout_s: PositiveFloat | None = Field(
        None, description="hard deadline after arrival: unanswered by then, a request is "
        "answered 503 deadline_exceeded and the worker drops it (default 2 x sla_s)")
    log_dir: Path = Field(default_factory=default_log_dir)
    # API keys and per-key limits (libra.serving.auth); no keys: no gate, loopback only (cli)
    api_keys: str | None = Field(None, repr=False, description="hashed key entries, one per "
                                 "line or ';'-separated (libra.serving.keys)")
    api_keys_file: Path | None = Field(None, description="a file of such entries")
    rate_limit_rps: PositiveFloat = Field(10.0, description="requests/s per key (token bucket)")
    rate_limit_burst: PositiveInt = Field(20, description="requests a key may send at once")
    # logs (libra.serving.logs; children inherit LIBRA_LOG_LEVEL / LIBRA_LOG_FORMAT)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["text", "json"] = "text"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.sla_margin_s >= self.sla_s:
            raise ValueError(f"sla_margin_s ({self.sla_margin_s}) must be < sla_s ({self.sla_s})")
        if self.initial_vms > self.max_vms:
            raise ValueError(f"initial_vms ({self.initial_vms}) must be <= max_vms "
                             f"({self.max_vms})")
        if self.serverless_driver == "aws" and not self.lambda_function:
            raise ValueError("serverless_driver 'aws' needs lambda_function (name or ARN)")
        if self.provisioner == "aws" and not self.asg_name:
            raise ValueError("provisioner 'aws' needs asg_name (the Auto Scaling group)")
        if self.request_timeout_s is not None and self.request_timeout_s < self.sla_s:
            raise ValueError(f"request_timeout_s ({self.request_timeout_s}) must be >= sla_s "
                             f"({self.sla_s})")
        return self

    @property
    def expected_vm_boot_s(self) -> float:
        """Launch to ready, as the policy plans with it: the given `vm_boot_s`, else the emulated
        delay locally (the worker loads its model inside it) or a GPU VM's boot on AWS."""
        if self.vm_boot_s is not None:
            return self.vm_boot_s
        return self.boot_delay_s if self.provisioner == "local" else AWS_VM_BOOT_S

    @property
    def serverless_cost_per_request_usd(self) -> float:
        """Lambda x86 price: GB-s at $0.0000166667 for the expected duration, plus $0.20/M."""
        return lambda_cost_usd(self.serverless_duration_s, self.serverless_memory_mb)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, then `LIBRA_*` environment variables, then `overrides` (CLI options)."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            env = os.environ.get(f"LIBRA_{name.upper()}")
            if env is not None and name != "policy_params":
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
