"""`libra-serve` settings: the platform both drivers share, plus how this deployment runs.

`Settings` has two parts:

- **the platform** (`libra.core.platform`: `vm`, `serverless`, `sla_s`, `sla_margin_s`, `tick_s`),
  in the very shape of `libra-sim --config` and `SimConfig`, so one TOML file describes the
  platform to both drivers, and a replay and a live run plan with the same figures. Its
  defaults come from a profile (`libra.profiles`): `local` (this kind of machine: worker
  processes, the local serverless pool) unless `provisioner = "aws"`, then `aws` (g4dn.xlarge +
  Lambda); `profile = NAME|FILE` picks another (a file `libra-calibrate` wrote, say).
  `[policies.NAME]` tables hold policy parameters as in `libra-sim`; the chosen policy's are used.
- **the deployment** (everything else): which mechanisms run (provisioner, serverless driver,
  Redis), fleet bounds, request limits, keys, logs.

Where a value comes from, lowest first: the profile < the config file (`config_file`,
`libra-serve --config`) < `LIBRA_*` environment variables < `libra-serve` options. Environment
names are `LIBRA_<FIELD>`, nested fields with `__` (`LIBRA_VM__BOOT_S=90`,
`LIBRA_SERVERLESS__KEEP_ALIVE_S=30`); dict fields take JSON (`LIBRA_POLICY_PARAMS='{"k": 2}'`).
Unknown keys are an error wherever they appear, `LIBRA_*` environment variables included
(`LIBRA_MAX_VMZ` fails naming itself and the likely setting), because a typo that is silently
ignored runs the wrong platform at real cost.

A VM's capacity is derived (`vm.capacity_rps` = `vm.concurrency` / `vm.service_time_mean_s`),
never set: `MOVED` lists the settings that became platform fields or were removed.
"""

from __future__ import annotations

import difflib
import logging
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, PositiveFloat, PositiveInt, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from libra.core.platform import Platform, ServerlessConfig, SpotConfig, VMConfig
from libra.core.policies import POLICIES
from libra.profiles import ProfileError, load_profile
from libra.runtime.home import default_log_dir, default_model_dir

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = "LIBRA_"

OTHER_LIBRA_ENV = frozenset({
    "LIBRA_HOME",  # libra.runtime.home: where models, logs and runs live
    "LIBRA_TOKENIZER",  # libra.runtime.inputs.text: the tokenizer file
    "LIBRA_MODEL_PATH",  # handlers.lambda_function / the local pool's instances
    "LIBRA_ORT_THREADS",  # handlers.lambda_function
    "LIBRA_PARENT_PID",  # libra.serving.children: set for the children libra-serve starts
    "LIBRA_DATA_DIR",  # libra.training: the labeled data
    "LIBRA_SHARED_DIR",  # tests and bench/: the shared traces
    "LIBRA_TF_PLUGIN_DIR",  # tests of infra/: Terraform providers
})
"""`LIBRA_*` variables other parts of Libra read: not settings, and not typos either
(tests/unit/test_settings.py checks the list against the code)."""

MOVED = {
    "vm_capacity_rps": "removed: a VM's capacity follows from vm.concurrency / "
                       "vm.service_time_mean_s",
    "vm_service_s": "vm.service_time_mean_s",
    "max_batch_size": "vm.concurrency",
    "vm_price_per_hour_usd": "vm.price_per_hour_usd",
    "vm_boot_s": "vm.boot_s",
    "boot_delay_s": "vm.boot_s (the local provisioner holds a new worker booting this long)",
    "serverless_max_concurrency": "serverless.concurrency_limit",
    "serverless_keep_alive_s": "serverless.keep_alive_s",
    "serverless_memory_mb": "serverless.memory_mb",
    "serverless_duration_s": "serverless.service_time_mean_s",
    "serverless_cold_start_s": "serverless.cold_start_s",
}
"""Settings of the flat layout before the platform was shared, and where each went."""

SIM_REPLAY_KEYS = frozenset({"history_s", "initial_vms_booting", "static_utilisation", "seed"})
"""Keys of a `libra-sim --config` file that describe a replay, not the platform: a config
file shared with the simulator may hold them; `libra-serve` says it ignores them."""


class SettingsError(ValueError):
    """A setting that is not one (an unknown `LIBRA_*` variable or config key), an unreadable
    config file or an unknown profile; the message names it."""


def _moved_hint(key: str, *, env: bool) -> str:
    where = MOVED[key]
    if where.startswith("removed"):
        return where
    path = where.split(" ", 1)[0]
    name = env_name(path) if env else path
    return f"now {name}" + where[len(path):]


def env_name(path: str) -> str:
    """The environment variable of a dotted settings path: vm.boot_s -> LIBRA_VM__BOOT_S."""
    return ENV_PREFIX + "__".join(path.split(".")).upper()


class Settings(BaseSettings):
    """Everything `libra-serve` runs with (see module docs)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      extra="forbid", frozen=True)

    # where the platform's figures come from
    profile: str | None = Field(
        None, description="profile name or .toml file giving the platform's defaults "
        "(default: local, or aws with provisioner 'aws')")
    config_file: Path | None = Field(
        None, description="TOML file: libra-sim's --config shape plus deployment keys")
    # the platform (libra.core.platform.Platform): always filled from the profile
    vm: VMConfig = Field(description="the VM worker type (profile, then overrides)")
    serverless: ServerlessConfig = Field(description="the serverless function")
    spot: SpotConfig = Field(description="spot capacity for the VM workers")
    sla_s: PositiveFloat = Field(description="end-to-end latency SLA per request")
    slo: float | None = Field(None, gt=0, lt=1, description="fraction of requests to answer "
                              "inside the SLA (None: no stated objective)")
    sla_penalty_usd: float = Field(ge=0, description="$ per late or dropped request")
    sla_margin_s: float = Field(ge=0, description="routing budget = sla_s - sla_margin_s")
    tick_s: PositiveFloat = Field(description="controller period")
    # the policy
    policy: str = Field("libra", description="scaling policy (the names libra-sim uses)")
    policies: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="[policies.NAME] parameter tables, as libra-sim's")
    policy_params: dict[str, Any] = Field(
        default_factory=dict, description="parameters of the chosen policy, over its "
        "[policies.NAME] table")
    # VM workers
    provisioner: Literal["local", "aws"] = "local"
    max_vms: PositiveInt = 4
    initial_vms: int = Field(1, ge=0, description="VMs started with the router (local: ready "
                             "as soon as their process is, without the emulated vm.boot_s)")
    worker_threads: PositiveInt = 1
    worker_cpu_precision: Literal["fp32", "int8", "int4"] = "fp32"
    max_batch_delay_ms: float = Field(5.0, ge=0)
    asg_name: str | None = None
    aws_region: str | None = None
    # serverless
    serverless_driver: Literal["local", "aws", "noop"] = Field(
        "local", description="noop answers at once (bench/router_overhead.py)")
    serverless_precision: Literal["int8", "int4"] = "int8"
    lambda_function: str | None = None
    # shared state
    redis_url: str | None = None
    model_dir: Path = Field(default_factory=default_model_dir,
                            description="`libra-model build` output folder "
                            "(libra.runtime.home: $LIBRA_HOME/onnx, ./artifacts/onnx)")
    # request limits
    max_body_bytes: PositiveInt = 25 * 2**20
    max_text_chars: PositiveInt = 5000
    body_timeout_s: PositiveFloat = Field(
        30.0, description="the whole body must arrive within this, else 408 body_timeout "
        "(a client that stalls half-way holds nothing longer)")
    header_timeout_s: PositiveFloat = Field(
        10.0, description="a request's line and headers must arrive within this of the "
        "connection opening or the request starting, else the connection is closed (slowloris)")
    health_port: int | None = Field(
        None, ge=0, le=65535, description="serve /healthz and /readyz on this port too, from a "
        "thread of their own (libra.serving.health): probes never wait behind requests on the "
        "event loop; point the load balancer's health check and the orchestrator's probes here")
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

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest first: options (init), environment, config file, profile (module docs)."""
        assert isinstance(init_settings, InitSettingsSource)
        assert isinstance(env_settings, EnvSettingsSource)
        env = _CheckedEnvSource(settings_cls, env_settings)
        config = _ConfigFileSource(settings_cls, init_settings, env)
        return init_settings, env, config, _ProfileSource(settings_cls, init_settings, env,
                                                          config)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        self.platform  # noqa: B018  (the platform's own checks: margin < SLA, service <= SLA)
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
        for name in [self.policy, *self.policies]:
            if name not in POLICIES:
                raise ValueError(f"unknown policy {name!r}; valid policies: "
                                 f"{', '.join(POLICIES)}")
        return self

    @property
    def platform(self) -> Platform:
        """The platform part, as `libra-sim` and the core read it."""
        return Platform(vm=self.vm, serverless=self.serverless, spot=self.spot,
                        sla_s=self.sla_s, slo=self.slo, sla_penalty_usd=self.sla_penalty_usd,
                        sla_margin_s=self.sla_margin_s, tick_s=self.tick_s)

    @property
    def chosen_policy_params(self) -> dict[str, Any]:
        """The chosen policy's parameters: its `[policies.NAME]` table, then `policy_params`."""
        return {**self.policies.get(self.policy, {}), **self.policy_params}

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """`Settings(**overrides)`: profile, config file, environment, then `overrides` (kept
        for callers that say where the values come from)."""
        return cls(**overrides)


def env_names() -> frozenset[str]:
    """Every `LIBRA_*` name a setting answers to (nested fields with `__`; dict fields also
    take any key below them, e.g. `LIBRA_POLICIES__LIBRA__PERIOD_S`)."""
    names = set()
    for name, info in Settings.model_fields.items():
        names.add(env_name(name))
        model = _model_of(info)
        if model is not None:
            names.update(env_name(f"{name}.{sub}") for sub in model.model_fields)
    return frozenset(names)


def _model_of(info: FieldInfo) -> type[BaseModel] | None:
    kind = info.annotation
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _dict_fields() -> tuple[str, ...]:
    return tuple(name for name, info in Settings.model_fields.items()
                 if getattr(info.annotation, "__origin__", None) is dict)


def unknown_env(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """One line per `LIBRA_*` variable that is no setting (nor another part's, see
    `OTHER_LIBRA_ENV`): what it is, or what it likely meant."""
    known = env_names()
    dict_prefixes = tuple(env_name(name) + "__" for name in _dict_fields())
    problems = []
    for raw in sorted(environ):
        name = raw.upper()
        if (not name.startswith(ENV_PREFIX) or name in known or name in OTHER_LIBRA_ENV
                or name.startswith(dict_prefixes)):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key in MOVED:
            problems.append(f"{raw}: {_moved_hint(key, env=True)}")
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        problems.append(f"{raw} is not a libra-serve setting"
                        + (f" (did you mean {close[0]}?)" if close else ""))
    return problems


class _CheckedEnvSource(PydanticBaseSettingsSource):
    """pydantic-settings' environment source, after refusing unknown `LIBRA_*` names (it would
    ignore them)."""

    def __init__(self, settings_cls: type[BaseSettings], env: EnvSettingsSource) -> None:
        super().__init__(settings_cls)
        self.env = env
        self._values: dict[str, Any] | None = None

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ answers for every field at once

    def __call__(self) -> dict[str, Any]:
        if self._values is None:
            problems = unknown_env(os.environ)
            if problems:
                raise SettingsError("unknown LIBRA_* environment variables:\n  "
                                    + "\n  ".join(problems))
            self._values = self.env()
        return self._values


class _ConfigFileSource(PydanticBaseSettingsSource):
    """`config_file` (from the options or the environment): the TOML `libra-sim --config` reads
    plus deployment keys. `libra-sim`'s replay keys are ignored (said once in the log)."""

    def __init__(self, settings_cls: type[BaseSettings], init: InitSettingsSource,
                 env: _CheckedEnvSource) -> None:
        super().__init__(settings_cls)
        self.init, self.env = init, env
        self._values: dict[str, Any] | None = None

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self._values is None:
            path = self.init.init_kwargs.get("config_file") or self.env().get("config_file")
            self._values = {} if path is None else read_config_file(Path(path))
        return self._values


def read_config_file(path: Path) -> dict[str, Any]:
    """A config file's settings (see `_ConfigFileSource`)."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read config: {exc}") from None
    if "config_file" in data:
        raise SettingsError(f"{path}: config_file cannot be set inside a config file")
    moved = [f"{key}: {_moved_hint(key, env=False)}" for key in data if key in MOVED]
    if moved:
        raise SettingsError(f"{path}: settings that moved:\n  " + "\n  ".join(moved))
    replay = sorted(SIM_REPLAY_KEYS & set(data))
    if replay:
        log.warning("%s: %s: replay settings of libra-sim, not used by libra-serve", path,
                    ", ".join(replay))
    return {k: v for k, v in data.items() if k not in SIM_REPLAY_KEYS}


class _ProfileSource(PydanticBaseSettingsSource):
    """The lowest layer: the platform of the profile the higher layers name (module docs)."""

    def __init__(self, settings_cls: type[BaseSettings], init: InitSettingsSource,
                 env: _CheckedEnvSource, config: _ConfigFileSource) -> None:
        super().__init__(settings_cls)
        self.layers: tuple[PydanticBaseSettingsSource, ...] = (init, env, config)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def _first(self, key: str) -> Any:
        for layer in self.layers:
            value = layer().get(key)
            if value is not None:
                return value
        return None

    def __call__(self) -> dict[str, Any]:
        name = self._first("profile") or ("aws" if self._first("provisioner") == "aws"
                                          else "local")
        try:
            platform = load_profile(name).platform
        except ProfileError as exc:
            raise SettingsError(str(exc)) from None
        return {"profile": str(name), **platform.model_dump()}
