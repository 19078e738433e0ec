"""infra/dry_run.sh: `terraform apply` of infra/terraform against moto's server mode.

The script starts moto on a free loopback port, applies every resource moto can take (it names
the ones it skips and why), and reads facts back from the emulator. Here we hold it to the
secure defaults: the listeners and the only paths routed from outside, the group's ELB health
check and mixed instances, immutable repositories, images by digest, secrets, alarms, WAF and
flow logs. Skipped, saying why, where terraform, the AWS provider or moto's server are absent.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "dry_run.sh"
PLUGIN_DIR = Path(os.environ.get("LIBRA_TF_PLUGIN_DIR", "/opt/tf-plugins"))
PUBLIC_PATHS = ["/healthz", "/predict", "/readyz", "/v2", "/v2/*"]
SKIPPED = {"aws_elasticache_replication_group.redis", "aws_secretsmanager_secret_version.redis_url",
           "aws_budgets_budget.monthly"}


def _needs() -> None:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    if not any(PLUGIN_DIR.glob("registry.terraform.io/hashicorp/aws/*")):
        pytest.skip(f"no AWS provider in {PLUGIN_DIR} ($LIBRA_TF_PLUGIN_DIR) and the Terraform "
                    f"registry is not reachable")
    for module in ("moto.server", "flask", "flask_cors"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"moto's server mode needs {module} (pip install 'moto[server]')")


@pytest.fixture(scope="module")
def dry_run() -> str:
    _needs()
    env = {**os.environ, "LIBRA_TF_PLUGIN_DIR": str(PLUGIN_DIR), "KEEP": "0"}
    # about 2 minutes on an idle machine (the provider itself waits ~60 s for the ALB)
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=540,
                          env=env, cwd=REPO, check=False)
    assert done.returncode == 0, f"dry run failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def section(output: str, title: str) -> list[str]:
    lines = output.split(f"\n{title}", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    return [line.strip() for line in lines if line.strip()]


def readback(output: str, prefix: str) -> str:
    line = next((x for x in section(output, "READ BACK FROM THE EMULATOR:")
                 if x.startswith(prefix)), None)
    assert line is not None, f"no {prefix!r} line in the read-back:\n{output}"
    return line.removeprefix(prefix).strip()


def test_every_resource_moto_supports_is_created_and_the_rest_are_named(dry_run: str) -> None:
    created = set(section(dry_run, "CREATED"))
    skipped = {line.split(":", 1)[0] for line in section(dry_run, "SKIPPED (moto):")}
    assert skipped == SKIPPED
    assert {"aws_lb_listener.https[0]", "aws_lb_listener.http", "aws_lb_listener_rule.api",
            "aws_lb_listener_rule.worker_health", "aws_autoscaling_group.workers",
            "aws_ecs_service.router", "aws_lambda_function.infer",
            "aws_default_security_group.this[0]", "aws_flow_log.vpc[0]",
            "aws_wafv2_web_acl_association.router[0]", "aws_sns_topic_subscription.alert_email",
            "aws_secretsmanager_secret_version.api_keys[0]"} <= created
    assert not {address.split("[")[0] for address in created} & SKIPPED
    match = re.search(r"applied (\d+) of (\d+) resource blocks", dry_run)
    assert match
    assert int(match.group(2)) - int(match.group(1)) == len(SKIPPED)


def test_only_https_serves_the_api_and_only_the_public_paths(dry_run: str) -> None:
    assert readback(dry_run, "listener 80/HTTP:") == "default redirect; rules match []"
    assert readback(dry_run, "listener 443/HTTPS:") == \
        f"default fixed-response; rules match {PUBLIC_PATHS}"
    # the workers' health-check listener forwards only what no client can send
    assert readback(dry_run, "listener 8101/HTTPS:") == \
        "default fixed-response; rules match ['127.0.0.1/32']"


def test_worker_group_uses_elb_health_and_mixed_instances(dry_run: str) -> None:
    assert readback(dry_run, "group libra-workers:") == \
        "health check ELB (grace 600 s), target groups 1, capacity rebalance True"
    sent = readback(dry_run, "group libra-workers, CreateAutoScalingGroup sent:")
    assert "InstancesDistribution.OnDemandBaseCapacity=1" in sent
    # spot is opt-in (worker_spot_enabled = false): every worker above the base on-demand too
    assert "InstancesDistribution.OnDemandPercentageAboveBaseCapacity=100" in sent
    assert "InstancesDistribution.SpotAllocationStrategy=price-capacity-optimized" in sent
    assert "LaunchTemplate.Overrides.member.1.InstanceType=g4dn.xlarge" in sent


def test_images_by_digest_secrets_alarms_waf_and_flow_logs(dry_run: str) -> None:
    assert readback(dry_run, "ECR tag mutability:") == \
        "libra-lambda=IMMUTABLE, libra-router=IMMUTABLE, libra-worker=IMMUTABLE"
    assert re.fullmatch(r"\S+/libra-router@sha256:[0-9a-f]{64}",
                        readback(dry_run, "router image:"))
    assert ast.literal_eval(readback(dry_run, "router secrets:")) == \
        ["LIBRA_API_KEYS", "LIBRA_REDIS_URL"]
    assert ast.literal_eval(readback(dry_run, "alarms:")) == [
        "libra-api-5xx-rate", "libra-api-p99-latency", "libra-control-tick-errors",
        "libra-fleet-at-max", "libra-lambda-throttles"]
    assert ast.literal_eval(readback(dry_run, "WAF web ACLs:")) == ["libra-router"]
    flow_logs = ast.literal_eval(readback(dry_run, "flow logs:"))
    assert [kind for _, kind in flow_logs] == ["s3"]
