"""infra/ agrees with the code it deploys: Terraform and Dockerfiles read as data and checked
against the source.

What the code needs is derived from the code, not listed by hand: the IAM actions from the
boto3 calls in the modules each role runs (botocore's own service models name the operations),
the environment variables from `Settings` and the handlers' `os.environ` reads, the command-line
flags from the CLIs' `--help`. `terraform fmt` and `terraform test` (a mocked AWS provider:
offline, nothing created) run where terraform and the AWS provider are installed, and skip,
saying so, elsewhere. Images cannot be built here (no Docker engine, no registry access), so the
Dockerfiles are parsed, not built.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from importlib.metadata import distribution
from pathlib import Path
from typing import Any, TypeGuard

import pytest

hcl2 = pytest.importorskip("hcl2", reason="parsing the Terraform needs python-hcl2 (dev extra)")
dockerfile_parse = pytest.importorskip(
    "dockerfile_parse", reason="parsing the Dockerfiles needs dockerfile-parse (dev extra)")
botocore_session = pytest.importorskip("botocore.session", reason="needs boto3 (dev extra)")

from libra.core.policies import policy_class  # noqa: E402
from libra.serving.settings import Settings  # noqa: E402

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "infra" / "terraform"
DOCKER_DIR = REPO / "infra" / "docker"
USER_DATA = TF_DIR / "templates" / "worker-user-data.sh.tftpl"
SETTINGS_ENV = {f"LIBRA_{name.upper()}" for name in Settings.model_fields}
# Which IAM role runs the boto3 calls of which source files (a new boto3 user must be placed).
ROLE_SOURCES = {"router_calls": ["libra/**/*.py"], "lambda_calls": ["handlers/lambda_function.py"]}
# Operations whose IAM action is not named after the operation.
IAM_ACTION_OF = {"lambda:Invoke": "lambda:InvokeFunction"}
TF_PLUGIN_DIR = Path(os.environ.get("LIBRA_TF_PLUGIN_DIR", "/opt/tf-plugins"))


# ---------------------------------------------------------------------------------------------
# Reading the Terraform
# ---------------------------------------------------------------------------------------------

def load_hcl(path: Path) -> dict[str, Any]:
    """One HCL file as data: literals unquoted, `${...}` for expressions, no comments."""
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(with_comments=False, explicit_blocks=False,
                                   strip_string_quotes=True)
    with path.open() as fh:
        return dict(hcl2.load(fh, serialization_options=options))


@cache
def terraform() -> dict[str, list[dict[str, Any]]]:
    """Every .tf file of infra/terraform parsed and merged by top-level kind."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(TF_DIR.glob("*.tf")):
        for kind, items in load_hcl(path).items():
            merged.setdefault(kind, []).extend(items)
    return merged


def blocks(kind: str, type_: str | None = None) -> dict[str, dict[str, Any]]:
    """`resource`/`data` blocks of one type by name, or `variable`/`output` blocks by name."""
    out: dict[str, dict[str, Any]] = {}
    for item in terraform().get(kind, []):
        for key, body in item.items():
            if type_ is None:
                out[key] = body
            elif key == type_:
                out.update(body)
    return out


def local(name: str) -> Any:
    for item in terraform()["locals"]:
        if name in item:
            return item[name]
    raise KeyError(f"no local {name!r} in infra/terraform")


def policy_actions(document: str) -> set[str]:
    return {action for statement in blocks("data", "aws_iam_policy_document")[document]["statement"]
            for action in statement["actions"]}


def variable_default(expression: str) -> Any:
    """The default of `${var.x}`, or None where the expression is not a plain variable."""
    match = re.fullmatch(r"\$\{var\.(\w+)\}", str(expression))
    return blocks("variable")[match.group(1)].get("default") if match else None


# ---------------------------------------------------------------------------------------------
# Reading the code
# ---------------------------------------------------------------------------------------------

def boto3_calls(path: Path) -> set[tuple[str, str]]:
    """(service, method) of every call on a boto3 client in a module: clients made with
    `boto3.client("<service>")` and called as `self.client.m(...)`, `client.m(...)` or
    `boto3.client(...).m(...)`."""
    tree = ast.parse(path.read_text())

    def is_client_factory(node: ast.AST) -> TypeGuard[ast.Call]:
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "client" and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "boto3")

    services = {str(node.args[0].value) for node in ast.walk(tree) if is_client_factory(node)
                and node.args and isinstance(node.args[0], ast.Constant)}
    if not services:
        return set()
    assert len(services) == 1, f"{path}: clients of several services {services}; the scan " \
                               f"here cannot tell which call goes to which"
    service = services.pop()
    methods = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target = node.func.value
        if (is_client_factory(target)
                or (isinstance(target, ast.Attribute) and target.attr == "client")
                or (isinstance(target, ast.Name) and target.id == "client")):
            methods.add(node.func.attr)
    return {(service, method) for method in methods}


def iam_actions(calls: set[tuple[str, str]]) -> set[str]:
    """IAM actions of boto3 calls, from botocore's service models (an unknown method fails)."""
    session = botocore_session.get_session()
    actions = set()
    for service, method in calls:
        client = session.create_client(service, region_name="us-east-1",
                                       aws_access_key_id="x", aws_secret_access_key="x")
        mapping = client.meta.method_to_api_mapping
        assert method in mapping, f"{service}.{method} is not a {service} API operation"
        action = f"{client.meta.service_model.signing_name}:{mapping[method]}"
        actions.add(IAM_ACTION_OF.get(action, action))
    return actions


def code_actions(role: str) -> set[str]:
    calls: set[tuple[str, str]] = set()
    for pattern in ROLE_SOURCES[role]:
        for path in REPO.glob(pattern):
            calls |= boto3_calls(path)
    return iam_actions(calls)


def env_reads(path: Path) -> set[str]:
    """LIBRA_* names a module reads with os.environ.get(...) or os.environ[...]."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        key = None
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get" and ast.unparse(node.func.value) == "os.environ"
                and node.args):
            key = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
        if isinstance(key, ast.Constant) and str(key.value).startswith("LIBRA_"):
            names.add(str(key.value))
    return names


@cache
def cli_flags(*command: str) -> set[str]:
    """Long options a CLI offers, from its --help."""
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60,
                          cwd=REPO, check=True)
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", done.stdout))


def console_scripts() -> dict[str, str]:
    """Console script name -> `module:function`, as installed from pyproject.toml."""
    return {ep.name: ep.value for ep in distribution("libra-serve").entry_points
            if ep.group == "console_scripts"}


def script_flags(script: str, *subcommand: str) -> set[str]:
    """Long options of one of the project's console scripts (run as `python -m <module>`)."""
    scripts = console_scripts()
    assert script in scripts, f"{script} is not a console script of the project"
    return cli_flags(sys.executable, "-m", scripts[script].split(":")[0], *subcommand)


def dockerfile(name: str) -> Any:
    parser = dockerfile_parse.DockerfileParser(path=str(DOCKER_DIR / f"{name}.Dockerfile"))
    assert parser.structure, f"{name}.Dockerfile parses to nothing"
    return parser


def final_stage(parser: Any) -> list[dict[str, Any]]:
    """Instructions after the last FROM."""
    structure = parser.structure
    last_from = max(i for i, ins in enumerate(structure) if ins["instruction"] == "FROM")
    return structure[last_from:]


def exec_form(parser: Any, instruction: str) -> list[str]:
    values = [ins["value"] for ins in final_stage(parser) if ins["instruction"] == instruction]
    assert values, f"no {instruction} in the final stage"
    parsed = json.loads(values[-1])
    assert isinstance(parsed, list), f"{instruction} must be in exec form (JSON list)"
    return parsed


def stage_env(parser: Any) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in final_stage(parser):
        if ins["instruction"] == "ENV":
            for pair in shlex.split(ins["value"]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def model_build(parser: Any) -> tuple[str, set[str]]:
    """(--out folder, variants) of the `libra-model build` the model stage runs."""
    for ins in parser.structure:
        if ins["instruction"] == "RUN" and "libra-model build" in ins["value"]:
            command = ins["value"].split("libra-model build", 1)[1]
            out = re.search(r"--out\s+(\S+)", command)
            assert out, "libra-model build without --out"
            return out.group(1), set(re.findall(r"--variant\s+(\w+)", command))
    raise AssertionError("no stage runs `libra-model build`")


def copies_from_model(parser: Any) -> list[tuple[str, str]]:
    pairs = []
    for ins in final_stage(parser):
        if ins["instruction"] == "COPY" and ins["value"].startswith("--from=model"):
            source, dest = ins["value"].split()[1:3]
            pairs.append((source, dest))
    return pairs


def user_data_worker_command() -> list[str]:
    """The worker's arguments: what follows the image in the user_data's `docker run`."""
    text = USER_DATA.read_text().replace("\\\n", " ")
    run = next(line for line in text.splitlines() if line.startswith("docker run "))
    words = shlex.split(run)
    return words[words.index("${image}") + 1:]


# ---------------------------------------------------------------------------------------------
# IAM: exactly the calls the code makes
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", sorted(ROLE_SOURCES))
def test_iam_policy_grants_exactly_the_boto3_calls_the_code_makes(role: str) -> None:
    needed = code_actions(role)
    assert needed, f"found no boto3 calls for {role}: the source scan is broken"
    granted = policy_actions(role)
    assert granted >= needed, f"{role} lacks {sorted(needed - granted)}"
    assert granted <= needed, f"{role} grants {sorted(granted - needed)}, which no code calls"


def test_every_module_calling_aws_has_a_role() -> None:
    placed = {path for patterns in ROLE_SOURCES.values() for pattern in patterns
              for path in REPO.glob(pattern)}
    for path in [*REPO.glob("libra/**/*.py"), *REPO.glob("handlers/*.py")]:
        if boto3_calls(path):
            assert path in placed, f"{path.relative_to(REPO)} calls AWS but no IAM role in " \
                                   f"infra/terraform is derived from it (ROLE_SOURCES)"


def test_code_policies_are_on_the_roles_that_run_the_code() -> None:
    policies = blocks("resource", "aws_iam_role_policy")
    by_role: dict[str, list[str]] = {}
    for policy in policies.values():
        by_role.setdefault(policy["role"], []).append(policy["policy"])
    # the router task role holds the router's calls and nothing else
    assert by_role["${aws_iam_role.router_task.id}"] == [
        "${data.aws_iam_policy_document.router_calls.json}"]
    attachments = blocks("resource", "aws_iam_role_policy_attachment").values()
    assert not [a for a in attachments if "router_task" in a["role"]]
    task = blocks("resource", "aws_ecs_task_definition")["router"]
    assert task["task_role_arn"] == "${aws_iam_role.router_task.arn}"
    assert "${data.aws_iam_policy_document.lambda_calls.json}" in by_role[
        "${aws_iam_role.lambda.id}"]
    assert blocks("resource", "aws_lambda_function")["infer"]["role"] == \
        "${aws_iam_role.lambda.arn}"


# ---------------------------------------------------------------------------------------------
# Environment variables
# ---------------------------------------------------------------------------------------------

def test_router_env_names_are_settings_fields_and_its_defaults_validate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    env = local("router_env")
    unknown = set(env) - SETTINGS_ENV
    assert not unknown, f"not fields of libra.serving.settings.Settings: {sorted(unknown)}"
    image_env = {k: v for k, v in stage_env(dockerfile("router")).items()
                 if k.startswith("LIBRA_")}
    assert not set(image_env) - SETTINGS_ENV
    # the default deployment's values, resources standing in as names, through Settings itself
    for key in [k for k in os.environ if k.startswith("LIBRA_")]:
        monkeypatch.delenv(key)
    for key, value in {**image_env, **env}.items():
        default = variable_default(value)
        resolved = default if default is not None else value
        if "${" in str(resolved):
            resolved = f"stand-in-for-{key.lower()}"
        monkeypatch.setenv(key, str(resolved).lower() if isinstance(resolved, bool)
                           else str(resolved))
    settings = Settings.from_env()
    assert settings.provisioner == "aws"
    assert settings.serverless_driver == "aws"
    assert settings.redis_url
    policy_class(settings.policy)


def test_policy_choices_are_the_policies() -> None:
    from libra.core.policies import POLICIES

    allowed = blocks("variable")["policy"]["validation"][0]["condition"]
    assert set(re.findall(r'\\?"([a-z-]+)\\?"', allowed)) == set(POLICIES)


def test_router_settings_follow_the_resources_they_describe() -> None:
    env = local("router_env")
    asg = blocks("resource", "aws_autoscaling_group")["workers"]
    function = blocks("resource", "aws_lambda_function")["infer"]
    assert env["LIBRA_MAX_VMS"] == asg["max_size"]
    assert env["LIBRA_ASG_NAME"] == "${aws_autoscaling_group.workers.name}"
    assert env["LIBRA_LAMBDA_FUNCTION"] == "${aws_lambda_function.infer.function_name}"
    assert env["LIBRA_SERVERLESS_MEMORY_MB"] == function["memory_size"]
    assert env["LIBRA_REDIS_URL"] == "${local.redis_url}"
    task = blocks("resource", "aws_ecs_task_definition")["router"]
    assert "local.router_env" in task["container_definitions"]


def test_lambda_env_is_what_the_handler_reads_and_points_at_the_baked_model() -> None:
    reads = env_reads(REPO / "handlers" / "lambda_function.py")
    assert reads, "the handler reads no LIBRA_* variable: the scan is broken"
    function_env = blocks("resource", "aws_lambda_function")["infer"]["environment"][0][
        "variables"]
    parser = dockerfile("lambda")
    image_env = stage_env(parser)
    for env in (function_env, {k: v for k, v in image_env.items() if k.startswith("LIBRA_")}):
        assert set(env) <= reads, f"the handler does not read {sorted(set(env) - reads)}"
    dests = [dest for _, dest in copies_from_model(parser)]
    assert function_env["LIBRA_MODEL_PATH"] == image_env["LIBRA_MODEL_PATH"]
    assert image_env["LIBRA_MODEL_PATH"] in dests


def test_worker_user_data_env_and_flags_exist() -> None:
    text = USER_DATA.read_text()
    env_names = set(re.findall(r"--env (LIBRA_\w+)=", text))
    assert env_names, "the worker gets no LIBRA_* variable: Redis registration needs one"
    assert env_names <= SETTINGS_ENV
    assert env_names <= env_reads(REPO / "handlers" / "worker.py")
    flags = {w for w in user_data_worker_command() if w.startswith("--")}
    offered = script_flags("libra-worker")
    assert flags <= offered, f"libra-worker has no {sorted(flags - offered)}"
    # registered under the instance id, which libra/serving/provision/aws.py matches
    args = user_data_worker_command()
    assert args[args.index("--worker-id") + 1] == "$INSTANCE_ID"
    assert re.search(r"^INSTANCE_ID=\$\(imds instance-id\)$", text, re.M)


def test_template_variables_are_all_passed() -> None:
    used = set(re.findall(r"\$\{(\w+)", USER_DATA.read_text()))
    launch_template = blocks("resource", "aws_launch_template")["worker"]
    passed = set(re.findall(r"(\w+) = ", launch_template["user_data"].split('.tftpl", {', 1)[1]))
    assert used <= passed, f"user_data uses {sorted(used - passed)} that templatefile() lacks"


# ---------------------------------------------------------------------------------------------
# The Auto Scaling group the provisioner drives
# ---------------------------------------------------------------------------------------------

def test_asg_leaves_desired_capacity_and_protection_to_the_provisioner() -> None:
    from libra.core.lifecycle import VMState
    from libra.serving.provision.aws import STATE_OF

    asg = blocks("resource", "aws_autoscaling_group")["workers"]
    assert "desired_capacity" in asg["lifecycle"][0]["ignore_changes"]
    assert not blocks("resource", "aws_autoscaling_policy"), "the controller alone scales"
    # the provisioner protects busy instances and unprotects the rest before a scale-in
    assert "autoscaling:SetInstanceProtection" in code_actions("router_calls")
    assert asg["protect_from_scale_in"] is False
    # the termination hook holds an instance in Terminating:Wait, which routers treat as draining
    hooks = asg["initial_lifecycle_hook"]
    assert [h["lifecycle_transition"] for h in hooks] == ["autoscaling:EC2_INSTANCE_TERMINATING"]
    assert STATE_OF["Terminating:Wait"] is VMState.DRAINING


def test_lambda_timeout_fits_the_router_read_timeout() -> None:
    from libra.serving.backends.serverless import AwsLambdaDriver

    read_timeout = inspect.signature(AwsLambdaDriver).parameters["read_timeout_s"].default
    assert blocks("variable")["lambda_timeout_s"]["default"] <= read_timeout


# ---------------------------------------------------------------------------------------------
# Variables, outputs
# ---------------------------------------------------------------------------------------------

def test_variables_and_outputs_are_described() -> None:
    for kind in ("variable", "output"):
        for name, body in blocks(kind).items():
            assert str(body.get("description", "")).strip(), f"{kind} {name} has no description"
    outputs = set(blocks("output"))
    assert {"router_url", "lambda_function_name", "asg_name", "redis_url"} <= outputs


def test_example_tfvars_sets_only_declared_variables() -> None:
    example = load_hcl(TF_DIR / "terraform.tfvars.example")
    assert example, "the example sets nothing"
    assert set(example) <= set(blocks("variable"))


# ---------------------------------------------------------------------------------------------
# Dockerfiles
# ---------------------------------------------------------------------------------------------

def test_each_ecr_repository_has_a_dockerfile() -> None:
    images = local("images")
    names = set(re.findall(r'"(\w+)"', images)) if isinstance(images, str) else set(images)
    assert names == {p.name.removesuffix(".Dockerfile") for p in DOCKER_DIR.glob("*.Dockerfile")}


@pytest.mark.parametrize("name", ["worker", "lambda", "router"])
def test_runtime_stage_has_no_torch_and_the_model_stage_builds_the_model(name: str) -> None:
    parser = dockerfile(name)
    froms = [ins for ins in parser.structure if ins["instruction"] == "FROM"]
    assert len(froms) >= 2
    assert froms[0]["value"].endswith(" AS model")
    runtime_runs = " ".join(ins["value"] for ins in final_stage(parser)
                            if ins["instruction"] == "RUN")
    assert "torch" not in runtime_runs
    assert "[train]" not in runtime_runs
    out, variants = model_build(parser)
    from libra.training.build import VARIANTS

    assert variants
    assert variants <= set(VARIANTS)
    assert {"--out", "--variant"} <= script_flags("libra-model", "build")
    assert all(source.startswith(out) for source, _ in copies_from_model(parser))


def test_worker_image_entry_point_serves_fp16_on_the_cuda_provider() -> None:
    parser = dockerfile("worker")
    entry = exec_form(parser, "ENTRYPOINT")
    flags = {w for w in entry + exec_form(parser, "CMD") if w.startswith("--")}
    assert flags <= script_flags(entry[0])
    model_dir = entry[entry.index("--model") + 1]
    out, variants = model_build(parser)
    assert (out, model_dir) in copies_from_model(parser)
    assert "fp16" in variants  # handlers/worker.py picks fp16.onnx under CUDA
    runs = " ".join(ins["value"] for ins in final_stage(parser) if ins["instruction"] == "RUN")
    assert "'.[worker]'" in runs  # no ONNX Runtime of its own: the GPU one is the only one
    assert "cpu]" not in runs and "[serve" not in runs
    assert "ORT_GPU" in runs
    assert "CUDAExecutionProvider" in runs


def test_lambda_image_handler_exists() -> None:
    handler = exec_form(dockerfile("lambda"), "CMD")
    assert len(handler) == 1
    module, _, function = handler[0].rpartition(".")
    path = REPO / Path(*module.split(".")).with_suffix(".py")
    assert path.is_file(), f"{handler[0]}: no module {path}"
    defs = {node.name: node for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef)}
    assert function in defs, f"{path} defines no {function}"
    assert len(defs[function].args.args) == 2, f"{handler[0]} is not a function(event, context)"


def test_router_image_and_task_command_run_libra_serve() -> None:
    parser = dockerfile("router")
    command = exec_form(parser, "CMD")
    offered = script_flags(command[0])
    task = blocks("resource", "aws_ecs_task_definition")["router"]["container_definitions"]
    task_flags = set(re.findall(r'"(--[a-z-]+)"', task))
    assert task_flags
    assert {w for w in command if w.startswith("--")} | task_flags <= offered
    env = stage_env(parser)
    out, variants = model_build(parser)
    assert (out, env["LIBRA_MODEL_DIR"]) in copies_from_model(parser)
    # the image's embedded mode runs what it ships: local workers and the local serverless pool
    assert env["LIBRA_WORKER_CPU_PRECISION"] in variants
    assert Settings.model_fields["serverless_precision"].default in variants


# ---------------------------------------------------------------------------------------------
# terraform itself (where installed)
# ---------------------------------------------------------------------------------------------

def _terraform_or_skip() -> str:
    exe = shutil.which("terraform")
    if exe is None:
        pytest.skip("terraform is not installed")
    return exe


def test_terraform_fmt() -> None:
    exe = _terraform_or_skip()
    done = subprocess.run([exe, "fmt", "-check", "-recursive", "-diff", str(TF_DIR)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration
def test_terraform_validate_and_mocked_test(tmp_path: Path) -> None:
    exe = _terraform_or_skip()
    if not any(TF_PLUGIN_DIR.glob("registry.terraform.io/hashicorp/aws/*")):
        pytest.skip(f"no AWS provider in {TF_PLUGIN_DIR} ($LIBRA_TF_PLUGIN_DIR) and the "
                    f"Terraform registry is not reachable")
    work = tmp_path / "terraform"
    shutil.copytree(TF_DIR, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}

    def run(*args: str) -> str:
        done = subprocess.run([exe, *args, "-no-color"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=240, check=False)
        assert done.returncode == 0, f"terraform {args[0]}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    run("init", "-backend=false", "-input=false", f"-plugin-dir={TF_PLUGIN_DIR}")
    run("validate")
    out = run("test")
    assert re.search(r"Success! \d+ passed, 0 failed", out), out
