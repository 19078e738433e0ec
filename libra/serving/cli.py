"""`libra-serve`: the API, the controller, a local VM fleet and a local serverless pool.

    libra-serve                                  # the local profile, http://127.0.0.1:8000
    libra-serve --policy vm-reactive --boot-delay-s 30 --max-vms 2
    libra-serve --profile my-machine.toml --config platform.toml   # what libra-sim replays
    LIBRA_REDIS_URL=redis://127.0.0.1:6379/0 libra-serve --port 8001   # routers share state

Options override `LIBRA_*` environment variables, which override the config file, which
overrides the profile (`libra.serving.settings`).

Closed by default, open on purpose: with API keys configured (`LIBRA_API_KEYS`,
`--api-keys-file`; `libra-serve keys new` makes one) every request needs one. Without keys it
serves as it always did, but only on a loopback address: binding anything else without keys
needs `--allow-unauthenticated` (say, behind a proxy that authenticates).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

if TYPE_CHECKING:
    from libra.serving.settings import Settings

log = logging.getLogger("libra.serving.cli")


@click.group(name="libra-serve", invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="libra-serve", prog_name="libra-serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--health-port", type=int, default=None, help="also answer /healthz and /readyz "
              "on this port, from a thread of their own, so probes never wait behind requests "
              "(point load-balancer and orchestrator probes here) [$LIBRA_HEALTH_PORT]")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="`libra-model build` output [artifacts/onnx]")
@click.option("--policy", default=None, help="libra (default), vm-static, vm-reactive, "
              "serverless, spock, mark")
@click.option("--policy-params", default=None, help="JSON object of policy parameters")
@click.option("--profile", default=None, metavar="NAME|FILE",
              help="the platform's defaults: a profile name (local, aws) or a .toml file "
              "(libra-calibrate writes one) [$LIBRA_PROFILE; local, aws with the aws "
              "provisioner]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="TOML: libra-sim's --config (sla_s, [vm], [serverless], "
              "[policies.NAME]) plus deployment keys [$LIBRA_CONFIG_FILE]")
@click.option("--sla-s", type=float, default=None)
@click.option("--initial-vms", type=int, default=None)
@click.option("--max-vms", type=int, default=None)
@click.option("--boot-delay-s", "vm__boot_s", type=float, default=None,
              help="vm.boot_s: launch to ready the policy plans with; a local worker stays "
              "booting at least this long (emulates a VM boot)")
@click.option("--vm-service-time-s", "vm__service_time_mean_s", type=float, default=None,
              help="vm.service_time_mean_s: a worker's mean seconds per request at full batch")
@click.option("--vm-concurrency", "vm__concurrency", type=int, default=None,
              help="vm.concurrency: requests a worker batches at once (capacity = "
              "concurrency / service time)")
@click.option("--vm-capacity-rps", "removed_capacity", type=float, default=None, hidden=True)
@click.option("--serverless-max-concurrency", "serverless__concurrency_limit", type=int,
              default=None, help="serverless.concurrency_limit")
@click.option("--serverless-keep-alive-s", "serverless__keep_alive_s", type=float, default=None,
              help="serverless.keep_alive_s")
@click.option("--redis-url", default=None, help="[$LIBRA_REDIS_URL]")
@click.option("--api-keys-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="hashed API keys, one entry a line [$LIBRA_API_KEYS_FILE; or the entries in "
              "$LIBRA_API_KEYS]")
@click.option("--rate-limit-rps", type=float, default=None,
              help="requests/s per key, unless its entry says [10]")
@click.option("--rate-limit-burst", type=int, default=None,
              help="requests a key may send at once [20]")
@click.option("--allow-unauthenticated", is_flag=True,
              help="serve a non-loopback address without API keys")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error", "critical"],
                                               case_sensitive=False), default=None,
              help="[$LIBRA_LOG_LEVEL; info]")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="stderr lines as text or one JSON object each [$LIBRA_LOG_FORMAT; text]")
@click.pass_context
def main(ctx: click.Context, host: str, port: int, allow_unauthenticated: bool,
         policy_params: str | None, removed_capacity: float | None, **opts: Any) -> None:
    """Serve POST /predict with the LIBRA controller on this machine."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from libra.core.policies import policy_class
    from libra.serving.api import create_app

    if removed_capacity is not None:
        raise click.UsageError("--vm-capacity-rps was removed: a VM's capacity follows from "
                               "--vm-concurrency / --vm-service-time-s (see docs/serving.md)")
    if opts.get("policy"):
        try:
            policy_class(opts["policy"])
        except (KeyError, ValueError) as exc:
            raise click.BadParameter(str(exc), param_hint="--policy") from None
    if policy_params:
        try:
            opts["policy_params"] = json.loads(policy_params)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--policy-params") from None
    settings = load_settings(opts)
    from libra.serving.keys import KeyConfigError, Keyring
    from libra.serving.logs import redact_url, setup_logging

    try:
        keyring = Keyring.load(settings.api_keys, settings.api_keys_file)
    except KeyConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if not keyring and not is_loopback(host) and not allow_unauthenticated:
        raise click.UsageError(
            f"refusing to serve {host} without API keys: anyone who reaches it could start "
            f"paid VMs and serverless calls. Configure keys (LIBRA_API_KEYS or "
            f"--api-keys-file; `libra-serve keys new` makes one), or pass "
            f"--allow-unauthenticated if something in front of it authenticates.")
    if not (settings.model_dir / "manifest.json").is_file():
        raise click.ClickException(f"no model in {settings.model_dir}: run `libra-model build` "
                                   f"first")
    setup_logging(settings.log_level, settings.log_format)
    # the workers and serverless instances this process starts log the same way
    os.environ["LIBRA_LOG_LEVEL"], os.environ["LIBRA_LOG_FORMAT"] = (
        settings.log_level, settings.log_format)
    auth = (f"API keys: {len(keyring)} ({sum(k.admin for k in keyring.keys)} admin), "
            f"{settings.rate_limit_rps:g} req/s burst {settings.rate_limit_burst} per key"
            if keyring else "no API keys: open" + (" (--allow-unauthenticated)"
                                                   if allow_unauthenticated else " (loopback)"))
    log.info("libra-serve on http://%s:%d: policy %s, profile %s, model %s, provisioner %s, "
             "serverless %s, state %s; %s; log %s/%s", host, port, settings.policy,
             settings.profile, settings.model_dir, settings.provisioner,
             settings.serverless_driver,
             redact_url(settings.redis_url) if settings.redis_url else "memory", auth,
             settings.log_level, settings.log_format)
    # log_config=None: uvicorn's own lines go through our handler (text or JSON); the access log
    # only at debug (one line per request costs the fast path, and /metrics counts requests)
    from libra.serving.protocol import uvicorn_http

    health = None
    if settings.health_port is not None:
        from libra.serving.health import HealthServer

        try:
            health = HealthServer(host, settings.health_port)
        except OSError as exc:
            raise click.UsageError(f"cannot open the health port {host}:"
                                   f"{settings.health_port}: {exc.strerror or exc}") from None
        log.info("health probes on http://%s:%d/healthz and /readyz", host, health.port)
    uvicorn.run(create_app(settings=settings, health=health), host=host, port=port,
                log_config=None, log_level=settings.log_level,
                access_log=settings.log_level == "debug",
                timeout_graceful_shutdown=30, http=uvicorn_http(settings.header_timeout_s))


def load_settings(opts: dict[str, Any]) -> Settings:
    """Settings from the options given (`vm__boot_s` is the nested field `vm.boot_s`) over the
    environment, the config file and the profile; any error is a usage error naming it."""
    from libra.serving.settings import Settings, SettingsError

    given: dict[str, Any] = {}
    for key, value in opts.items():
        if value is None:
            continue
        *parents, leaf = key.split("__")
        node = given
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return Settings(**given)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    except ValidationError as exc:
        problems = "\n  ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                               for e in exc.errors())
        raise click.UsageError(f"bad settings:\n  {problems}") from None


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


@main.group()
def keys() -> None:
    """Make API keys and the hashes libra-serve keeps (libra.serving.keys)."""


@keys.command("new")
@click.option("--name", default="client", show_default=True, help="logged with its requests")
@click.option("--admin", is_flag=True, help="may read /status, /metrics and the docs")
@click.option("--rate-rps", type=float, default=None, help="this key's own rate limit")
@click.option("--burst", type=int, default=None, help="this key's own burst")
def keys_new(name: str, admin: bool, rate_rps: float | None, burst: int | None) -> None:
    """A new random key, and the entry (its hash) for LIBRA_API_KEYS or the keys file."""
    from libra.serving.keys import KeyConfigError, hash_key, new_key, parse_keys

    key = new_key()
    options = {"admin": admin, f"rate_rps={rate_rps}": rate_rps is not None,
               f"burst={burst}": burst is not None}
    entry = " ".join([name, hash_key(key), *(o for o, wanted in options.items() if wanted)])
    try:
        parse_keys(entry, "the new entry")
    except KeyConfigError as exc:
        raise click.UsageError(exc.why) from None
    click.echo(f"key:   {key}\n       (give it to the client; libra-serve keeps only its hash)")
    click.echo(f"entry: {entry}\n       (add it to LIBRA_API_KEYS or the keys file)")


@keys.command("hash")
def keys_hash() -> None:
    """The stored form of existing keys: one key a line on stdin, one hash a line out."""
    from libra.serving.keys import hash_key

    if sys.stdin.isatty():
        lines = [click.prompt("API key", hide_input=True)]
    else:
        lines = [line.strip() for line in sys.stdin if line.strip()]
    for key in lines:
        try:
            click.echo(hash_key(key))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None


if __name__ == "__main__":
    main()
