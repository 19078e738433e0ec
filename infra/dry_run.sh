#!/usr/bin/env bash
# Dry run: `terraform apply` of infra/terraform against moto's server mode, a local AWS emulator
# (pip install 'moto[server]'), on a free loopback port. No AWS account, no network.
#
# What it shows: the AWS provider accepts every argument and the emulated APIs accept the calls
# it makes, in dependency order, for the resources moto implements; then it reads a few facts
# back from the emulator (listeners, the group's health check and instance mix, image tag
# mutability, secrets) and prints them. What it cannot show: IAM evaluation, quotas, real
# health checks, anything moto does not model (see SKIPPED below).
#
# Usage: infra/dry_run.sh            (about a minute or two)
# Env:   LIBRA_TF_PLUGIN_DIR  a local provider mirror for `terraform init -plugin-dir`
#                             (default /opt/tf-plugins; unset it to use the Terraform registry)
#        KEEP=1               keep the work folder (state, logs) and print where it is
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PLUGIN_DIR=${LIBRA_TF_PLUGIN_DIR-/opt/tf-plugins}
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/libra-dry-run.XXXXXX")
MOTO_PID=""

cleanup() {
    if [[ -n "$MOTO_PID" ]]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
    if [[ "${KEEP:-0}" == 1 ]]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Resources moto cannot take, each with why (and everything that needs them is left out too).
declare -A SKIPPED=(
    [aws_elasticache_replication_group.redis]="moto creates the group but not its member cache cluster, which the provider reads back (CacheClusterNotFound)"
    [aws_secretsmanager_secret_version.redis_url]="its value is the Redis URL, which needs the replication group's endpoint"
    [aws_budgets_budget.monthly]="moto has no DescribeSubscribersForNotification, which the provider calls after creating it (it retries the 500 until it times out)"
)

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ENDPOINT="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1 TF_INPUT=0
export AWS_ENDPOINT_URL="$ENDPOINT"

# AWS managed policies (AmazonSSMManagedInstanceCore for the workers) exist only when loaded.
MOTO_IAM_LOAD_MANAGED_POLICIES=true "$PYTHON" -m moto.server -H 127.0.0.1 -p "$PORT" \
    >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
deadline=$((SECONDS + 60))
until "$PYTHON" -c "import urllib.request; urllib.request.urlopen('$ENDPOINT/moto-api/', timeout=2)" 2>/dev/null; do
    if ((SECONDS > deadline)) || ! kill -0 "$MOTO_PID" 2>/dev/null; then
        echo "moto_server did not come up on $ENDPOINT:" >&2; cat "$WORK/moto.log" >&2; exit 1
    fi
    sleep 0.5
done
echo "moto_server on $ENDPOINT (pid $MOTO_PID)"

mkdir "$WORK/tf"
cp -r "$REPO/infra/terraform/." "$WORK/tf/"
rm -rf "$WORK/tf/.terraform" "$WORK/tf/.terraform.lock.hcl" "$WORK/tf/tests" "$WORK/tf"/*.tfstate* "$WORK/tf/terraform.tfvars"
cd "$WORK/tf"

# Every API the stack calls goes to moto (an override file merges into versions.tf's provider).
SERVICES=(autoscaling budgets cloudwatch ec2 ecr ecs elasticache elbv2 iam lambda logs s3
          secretsmanager sns ssm sts wafv2)
{
    echo 'provider "aws" {'
    echo '  skip_credentials_validation = true'
    echo '  skip_metadata_api_check     = true'
    echo '  s3_use_path_style           = true'
    echo '  endpoints {'
    for service in "${SERVICES[@]}"; do echo "    $service = \"$ENDPOINT\""; done
    echo '  }'
    echo '}'
} >moto_override.tf

# The ALB checks that the HTTPS listener's certificate exists: make one in moto's ACM.
CERT_ARN=$("$PYTHON" -c "
import boto3
acm = boto3.client('acm', endpoint_url='$ENDPOINT')
print(acm.request_certificate(DomainName='api.libra.example')['CertificateArn'])")

# The secure default: HTTPS, API keys (hashes), images by digest, alerts; a pinned AMI (moto has
# no Deep Learning AMI parameter) that moto knows.
cat >dry_run.auto.tfvars <<EOF
certificate_arn = "$CERT_ARN"
api_key_entries = ["ops sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae admin"]
alert_email     = "oncall@example.com"
worker_ami_id   = "ami-12c6146b"
enable_waf      = true
image_digests = {
  router = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
  worker = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
  lambda = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
}
EOF

init=(init -backend=false -input=false -no-color)
if [[ -n "$PLUGIN_DIR" ]]; then init+=("-plugin-dir=$PLUGIN_DIR"); fi
terraform "${init[@]}" >"$WORK/init.log" 2>&1 || { cat "$WORK/init.log" >&2; exit 1; }
echo "terraform init: done; planning"

# Every managed resource of the full plan except the skipped ones (-target pulls in what a
# target depends on, so none of the targets may depend on a skipped resource).
terraform plan -no-color -out="$WORK/full.tfplan" >"$WORK/plan.log" 2>&1 || { cat "$WORK/plan.log" >&2; exit 1; }
mapfile -t ALL < <(terraform show -json "$WORK/full.tfplan" 2>>"$WORK/cli.log" | "$PYTHON" -c '
import json, sys
plan = json.load(sys.stdin)
seen = []
for change in plan["resource_changes"]:
    if change["mode"] == "managed":
        address = change["type"] + "." + change["name"]
        if address not in seen:
            seen.append(address)
print("\n".join(seen))')
TARGETS=()
for address in "${ALL[@]}"; do
    [[ -n "${SKIPPED[$address]+x}" ]] || TARGETS+=("-target=$address")
done

start=$SECONDS
# The provider's debug log keeps the requests it sent (read back below where moto loses data).
if ! TF_LOG=DEBUG TF_LOG_PATH="$WORK/provider-debug.log" \
        terraform apply -auto-approve -no-color -parallelism=20 "${TARGETS[@]}" >"$WORK/apply.log" 2>&1; then
    grep -A12 '^Error' "$WORK/apply.log" >&2 || tail -40 "$WORK/apply.log" >&2
    exit 1
fi
echo "applied ${#TARGETS[@]} of ${#ALL[@]} resource blocks in $((SECONDS - start)) s"

echo
terraform state list 2>>"$WORK/cli.log" | grep -v '^data\.' >"$WORK/created.txt"
echo "CREATED ($(wc -l <"$WORK/created.txt") resources):"
sed 's/^/  /' "$WORK/created.txt"
echo
echo "SKIPPED (moto):"
for address in "${!SKIPPED[@]}"; do echo "  $address: ${SKIPPED[$address]}"; done | sort

echo
echo "READ BACK FROM THE EMULATOR:"
PROVIDER_LOG="$WORK/provider-debug.log" "$PYTHON" - <<'EOF'
import os
import re
from urllib.parse import parse_qsl

import boto3

elbv2, asg = boto3.client("elbv2"), boto3.client("autoscaling")
lb = elbv2.describe_load_balancers(Names=["libra-router"])["LoadBalancers"][0]
for listener in sorted(elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"],
                       key=lambda item: item["Port"]):
    default = listener["DefaultActions"][0]["Type"]
    forwards = sorted(value for rule in elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
                      for condition in rule.get("Conditions", [])
                      for value in condition.get("Values", []) or
                      condition.get("PathPatternConfig", {}).get("Values", []) or
                      condition.get("SourceIpConfig", {}).get("Values", []))
    print(f"  listener {listener['Port']}/{listener['Protocol']}: default {default}; "
          f"rules match {forwards}")
group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["libra-workers"])["AutoScalingGroups"][0]
print(f"  group libra-workers: health check {group['HealthCheckType']} "
      f"(grace {group['HealthCheckGracePeriod']} s), target groups {len(group['TargetGroupARNs'])}, "
      f"capacity rebalance {group['CapacityRebalance']}")
# moto's UpdateAutoScalingGroup clears the mixed-instances policy when the update does not
# name it (AWS keeps it), and the provider follows its create with such an update: show what
# the create sent.
create = next(line for line in open(os.environ["PROVIDER_LOG"])
              if "Action=CreateAutoScalingGroup" in line)
params = dict(parse_qsl(re.search(r"(Action=CreateAutoScalingGroup[^\s\"]*)", create).group(1)))
mix = {k.removeprefix("MixedInstancesPolicy."): v for k, v in params.items()
       if k.startswith("MixedInstancesPolicy.") and v}
print("  group libra-workers, CreateAutoScalingGroup sent: " +
      ", ".join(f"{k}={v}" for k, v in sorted(mix.items()) if "LaunchTemplateId" not in k))
print(f"  group libra-workers, as moto keeps it: MixedInstancesPolicy "
      f"{'present' if 'MixedInstancesPolicy' in group else 'dropped (moto UpdateAutoScalingGroup)'}")
repos = boto3.client("ecr").describe_repositories()["repositories"]
print("  ECR tag mutability: " + ", ".join(f"{r['repositoryName']}={r['imageTagMutability']}"
                                           for r in sorted(repos, key=lambda r: r["repositoryName"])))
task = boto3.client("ecs").describe_task_definition(taskDefinition="libra-router")["taskDefinition"]
container = task["containerDefinitions"][0]
print(f"  router image: {container['image']}")
print(f"  router secrets: {sorted(s['name'] for s in container.get('secrets', []))}")
alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
print(f"  alarms: {sorted(a['AlarmName'] for a in alarms)}")
acls = boto3.client("wafv2").list_web_acls(Scope="REGIONAL")["WebACLs"]
print(f"  WAF web ACLs: {[a['Name'] for a in acls]}")
flow = boto3.client("ec2").describe_flow_logs()["FlowLogs"]
print(f"  flow logs: {[(f['ResourceId'], f['LogDestinationType']) for f in flow]}")
EOF
