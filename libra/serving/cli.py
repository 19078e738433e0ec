"""`libra-serve`: the API, the controller, a local VM fleet and a local serverless pool.

    libra-serve                                  # embedded defaults, http://127.0.0.1:8000
    libra-serve --policy vm-reactive --boot-delay-s 30 --max-vms 2
    LIBRA_REDIS_URL=redis://127.0.0.1:6379/0 libra-serve --port 8001   # routers share state

Options override `LIBRA_*` environment variables, which override the defaults
(`libra.serving.settings`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError


@click.command(name="libra-serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="`libra-model build` output [artifacts/onnx]")
@click.option("--policy", default=None, help="libra (default), vm-static, vm-reactive, "
              "serverless, spock, mark")
@click.option("--policy-params", default=None, help="JSON object of policy parameters")
@click.option("--sla-s", type=float, default=None)
@click.option("--initial-vms", type=int, default=None)
@click.option("--max-vms", type=int, default=None)
@click.option("--boot-delay-s", type=float, default=None,
              help="extra delay before a local worker counts as booted (emulates a VM boot)")
@click.option("--vm-capacity-rps", type=float, default=None)
@click.option("--serverless-max-concurrency", type=int, default=None)
@click.option("--serverless-keep-alive-s", type=float, default=None)
@click.option("--redis-url", default=None, help="[$LIBRA_REDIS_URL]")
@click.option("--log-level", default="warning", show_default=True)
def main(host: str, port: int, log_level: str, policy_params: str | None, **opts: Any) -> None:
    """Serve POST /predict with the LIBRA controller on this machine."""
    import uvicorn

    from libra.core.policies import policy_class
    from libra.serving.api import create_app
    from libra.serving.settings import Settings

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
    try:
        settings = Settings.from_env(**opts)
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    if not (settings.model_dir / "manifest.json").is_file():
        raise click.ClickException(f"no model in {settings.model_dir}: run `libra-model build` "
                                   f"first")
    click.echo(f"libra-serve: policy {settings.policy}, model {settings.model_dir}, "
               f"http://{host}:{port}")
    uvicorn.run(create_app(settings=settings), host=host, port=port, log_level=log_level,
                timeout_graceful_shutdown=30)


if __name__ == "__main__":
    main()
