"""infra/ agrees with the code it deploys: Terraform and Dockerfiles read as data and checked
against the source.

What the code needs is derived from the code, not listed by hand: the IAM actions from the
boto3 calls in the modules each role runs (botocore's own service models name the operations),
the environment variables from `Settings` and the handlers' `os.environ` reads, the command-line
flags from the CLIs' `--help`. `terraform fmt` and `terraform test` (a mocked AWS provider:
offline, nothing created) run where terraform and the AWS provider are installed, and skip,
saying so, elsewhere. Building the images needs root, podman and minutes
(`infra/images/build.sh`, docs/benchmarks.md "Images"), too much for every test run, so here the
Dockerfiles are parsed, not built.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
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
from libra.serving.settings import Settings, env_names  # noqa: E402

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "infra" / "terraform"
DOCKER_DIR = REPO / "infra" / "docker"
USER_DATA = TF_DIR / "templates" / "worker-user-data.sh.tftpl"
SETTINGS_ENV = env_names()  # LIBRA_<FIELD>, nested platform fields with __
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
    """LIBRA_* names a module reads with os.environ.get(...), os.environ[...] or a click
    option's envvar="..."."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        key = None
        if isinstance(node, ast.keyword) and node.arg == "envvar":
            key = node.value
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
    secrets = local("router_secrets")
    unknown = (set(env) | set(secrets)) - SETTINGS_ENV
    assert not unknown, f"not fields of libra.serving.settings.Settings: {sorted(unknown)}"
    assert not set(env) & set(secrets), "a setting both in plain env and from a secret"
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
    # what the secrets hold: the URL shape local.redis_url builds, and a key entry
    monkeypatch.setenv("LIBRA_REDIS_URL", "rediss://:token@master.example.cache.amazonaws.com:6379/0")
    monkeypatch.setenv("LIBRA_API_KEYS", f"ops sha256:{'ab' * 32} admin")
    settings = Settings.from_env()
    assert settings.provisioner == "aws"
    assert settings.serverless_driver == "aws"
    assert settings.redis_url
    assert settings.api_keys
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
    assert env["LIBRA_SERVERLESS__MEMORY_MB"] == function["memory_size"]
    secrets = local("router_secrets")
    assert secrets["LIBRA_REDIS_URL"] == "${aws_secretsmanager_secret.redis_url.arn}"
    assert blocks("resource", "aws_secretsmanager_secret_version")["redis_url"][
        "secret_string"] == "${local.redis_url}"
    assert secrets["LIBRA_API_KEYS"] == "${local.api_keys_secret_arn}"
    task = blocks("resource", "aws_ecs_task_definition")["router"]
    assert "local.router_env" in task["container_definitions"]
    assert "local.router_secrets" in task["container_definitions"]
    # ECS reads each secret with the execution role, and with nothing else
    reads = next(st for st in blocks("data", "aws_iam_policy_document")["router_execution"][
        "statement"] if st["actions"] == ["secretsmanager:GetSecretValue"])
    assert reads["resources"] == "${values(local.router_secrets)}"


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
    env_names = set(re.findall(r"--env (LIBRA_\w+)\b", text))
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
    assert {"router_url", "lambda_function_name", "asg_name", "redis_endpoint",
            "router_secrets"} <= outputs


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
    assert "cpu]" not in runs
    assert "[serve" not in runs
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
# The public edge: what checkov cannot see through the listeners' conditionals
# ---------------------------------------------------------------------------------------------

def literal_choices(expression: Any) -> set[str]:
    """Every string a `${cond ? "a" : "b"}` expression (or a plain literal) can take."""
    text = str(expression)
    return set(re.findall(r'"([^"]*)"', text)) if "${" in text else {text}


def alb_path_matches(pattern: str, path: str) -> bool:
    """An ALB path pattern (case-sensitive; `*` any characters, `/` included; `?` one)."""
    return fnmatch.fnmatchcase(path, pattern)


def test_plain_http_needs_the_explicit_opt_in() -> None:
    variables = blocks("variable")
    assert variables["allow_plain_http"]["default"] is False
    assert variables["certificate_arn"]["default"] is None
    listeners = blocks("resource", "aws_lb_listener")
    http = listeners["http"]
    assert http["port"] == 80
    # port 80 never forwards by default: it redirects to 443, or answers 404 with plain HTTP
    (action,) = http["default_action"]
    assert literal_choices(action["type"]) == {"redirect", "fixed-response"}
    assert "target_group_arn" not in action
    # ... and with neither a certificate nor the opt-in, plan stops at this precondition
    (precondition,) = http["lifecycle"][0]["precondition"]
    assert precondition["condition"] == "${var.certificate_arn != null || var.allow_plain_http}"
    assert local("https") == "${var.certificate_arn != null}"
    https = listeners["https"]
    assert https["count"] == "${local.https ? 1 : 0}"
    assert https["protocol"] == "HTTPS"
    assert "TLS13" in https["ssl_policy"]
    # no listener forwards anything by default; requests reach a target only through a rule
    for name, listener in listeners.items():
        for default in listener["default_action"]:
            assert "forward" not in literal_choices(default["type"]), name
    # the API's rule sits on the HTTPS listener whenever there is a certificate
    assert local("api_listener") == \
        "${local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http.arn}"
    ports = {int(p) for p in re.findall(r"\d+", local("alb_ports"))}
    assert ports == {80, 443}


def test_public_listener_routes_the_api_and_never_the_admin_surface() -> None:
    from libra.serving.api import create_app
    from libra.serving.auth import admin_paths_of

    rules = blocks("resource", "aws_lb_listener_rule")
    to_router = {name for name, rule in rules.items() for action in rule["action"]
                 if action.get("target_group_arn") == "${aws_lb_target_group.router.arn}"}
    assert to_router == {"api"}, "one rule forwards to the router"
    (condition,) = rules["api"]["condition"]
    assert condition["path_pattern"][0]["values"] == "${local.public_paths}"
    patterns = local("public_paths")
    assert len(patterns) <= 5, "an ALB rule condition takes at most 5 values"

    app = create_app()
    admin = admin_paths_of(app)
    routes = {getattr(route, "path", "") for route in app.routes}
    for path in admin:
        assert not any(alb_path_matches(p, path) for p in patterns), f"{path} is public"
    # every route that is not admin is reachable: a new public route must be routed here (or
    # be made admin in libra/serving/auth.py)
    for path in sorted(routes - admin):
        probe = re.sub(r"\{[^}]+\}", "x", path)
        assert any(alb_path_matches(p, probe) for p in patterns), f"{path} is not routed"
    for path in ("/predict", "/healthz", "/readyz", "/v2/models/libra/infer", "/v2/health/ready"):
        assert any(alb_path_matches(p, path) for p in patterns), path


def test_worker_health_listener_admits_no_client() -> None:
    listener = blocks("resource", "aws_lb_listener")["worker_health"]
    assert listener["port"] == "${var.worker_port}"
    assert blocks("variable")["worker_port"]["default"] not in (80, 443)
    rule = blocks("resource", "aws_lb_listener_rule")["worker_health"]
    assert rule["listener_arn"] == "${aws_lb_listener.worker_health.arn}"
    (condition,) = rule["condition"]
    # no client's address is loopback: the rule exists so the target group is health-checked
    assert condition["source_ip"][0]["values"] == ["127.0.0.1/32"]
    # and the ALB admits clients on 80/443 only (test_plain_http_needs_the_explicit_opt_in)
    ingress = blocks("resource", "aws_vpc_security_group_ingress_rule")["alb_clients"]
    assert ingress["from_port"] == ingress["to_port"] == "${each.value.port}"


def test_worker_group_is_judged_by_the_workers_readyz_and_mixes_spot() -> None:
    asg = blocks("resource", "aws_autoscaling_group")["workers"]
    assert asg["health_check_type"] == "ELB"
    assert asg["health_check_grace_period"] == "${var.worker_health_grace_s}"
    assert asg["target_group_arns"] == ["${aws_lb_target_group.worker.arn}"]
    target_group = blocks("resource", "aws_lb_target_group")["worker"]
    assert target_group["port"] == "${var.worker_port}"
    (check,) = target_group["health_check"]
    worker_routes = set(re.findall(r'@app\.get\("([^"]+)"\)',
                                   (REPO / "handlers" / "worker.py").read_text()))
    assert check["path"] == "/readyz"
    assert check["path"] in worker_routes
    assert check["matcher"] == "200"
    # mixed instances: on-demand base, spot above it, capacity rebalancing
    assert "launch_template" not in asg, "the launch template belongs in the mixed policy"
    (policy,) = asg["mixed_instances_policy"]
    (distribution,) = policy["instances_distribution"]
    assert distribution["on_demand_base_capacity"] == "${var.worker_on_demand_base}"
    # spot on: every worker above the base is spot, the base the controller's (issue 18)
    assert distribution["on_demand_percentage_above_base_capacity"] == \
        "${var.worker_spot_enabled ? 0 : 100}"
    assert blocks("variable")["worker_spot_enabled"]["default"] is False  # opt-in, as the profile
    assert "${mixed_instances_policy[0].instances_distribution[0].on_demand_base_capacity}" in \
        asg["lifecycle"][0]["ignore_changes"]
    assert asg["capacity_rebalance"] is True


# ---------------------------------------------------------------------------------------------
# Secrets, images
# ---------------------------------------------------------------------------------------------

def hcl_regex(condition: str) -> re.Pattern[str]:
    """The pattern of the first `regex("...")` in a validation condition, HCL escapes undone."""
    match = re.search(r'regex\("((?:[^"\\]|\\.)*)"', condition)
    assert match, condition
    return re.compile(match.group(1).replace("\\\\", "\\"))


def test_api_key_entries_check_agrees_with_the_key_parser() -> None:
    from libra.serving.keys import KeyConfigError, parse_keys

    (validation,) = blocks("variable")["api_key_entries"]["validation"]
    pattern = hcl_regex(validation["condition"])
    digest = hashlib.sha256(b"x" * 40).hexdigest()
    samples = [f"alice sha256:{digest}", f"ops {digest} admin",
               f"bob SHA256:{digest.upper()} rate_rps=2.5 burst=40", f"a.b@c-d_e sha256:{digest}",
               "alice libra_" + "A" * 43, f"alice sha256:{digest[:40]}", "alice",
               f"sha256:{digest}", f"alice sha256:{digest} root", f"al ice sha256:{digest}",
               f"alice sha256:{digest}; bob sha256:{digest}"]
    for entry in samples:
        try:
            parsed = parse_keys(entry, "sample")
            accepted_by_code = len(parsed) == 1
        except KeyConfigError:
            accepted_by_code = False
        assert bool(pattern.fullmatch(entry.strip())) == accepted_by_code, entry


def test_secrets_stay_out_of_plain_text() -> None:
    text = USER_DATA.read_text()
    assert "secretsmanager get-secret-value" in text
    launch_template = blocks("resource", "aws_launch_template")["worker"]
    assert "local.redis_url" not in launch_template["user_data"]
    assert "redis_url" not in str(local("router_env"))
    worker_reads = [st for st in blocks("data", "aws_iam_policy_document")["worker_host"][
        "statement"] if "secretsmanager:GetSecretValue" in st["actions"]]
    assert [st["resources"] for st in worker_reads] == [
        ["${aws_secretsmanager_secret.redis_url.arn}"]]
    redis = blocks("resource", "aws_elasticache_replication_group")["redis"]
    assert "auth_token" in redis
    assert "auth_token" in redis["lifecycle"][0]["ignore_changes"]
    assert blocks("variable")["redis_transit_encryption"]["default"] is True
    for name, body in blocks("output").items():
        assert "local.redis_url" not in str(body["value"]), f"output {name} leaks the token"


def test_images_are_immutable_and_deployed_by_digest() -> None:
    repository = blocks("resource", "aws_ecr_repository")["image"]
    assert repository["image_tag_mutability"] == "IMMUTABLE"
    assert "@${var.image_digests[k]}" in local("image_uri")
    assert "image_tag" not in blocks("variable")
    assert blocks("resource", "aws_lambda_function")["infer"]["image_uri"] == \
        '${local.image_uri["lambda"]}'


# ---------------------------------------------------------------------------------------------
# Alarms, metrics, budget
# ---------------------------------------------------------------------------------------------

def emf_example() -> dict[str, Any]:
    """The EMF line infra/README.md promises the router prints (section "Metrics")."""
    readme = (REPO / "infra" / "README.md").read_text()
    section = readme.split("\n## Metrics", 1)[1]
    match = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert match, "infra/README.md, Metrics: no ```json EMF example"
    return dict(json.loads(match.group(1)))


def test_tick_error_alarm_watches_the_documented_emf_metric() -> None:
    alarm = blocks("resource", "aws_cloudwatch_metric_alarm")["control_tick_errors"]
    namespace, service = local("metrics_namespace"), local("router_service_name")
    assert alarm["namespace"] == "${local.metrics_namespace}"
    assert alarm["dimensions"] == {"ServiceName": "${local.router_service_name}"}
    service_value = service.replace("${var.name}", blocks("variable")["name"]["default"])
    # the EMF document: spec fields, the namespace, the dimension and the metric the alarm reads
    line = emf_example()
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert isinstance(line["_aws"]["Timestamp"], int)
    assert directive["Namespace"] == namespace
    assert directive["Dimensions"] == [["ServiceName"]]
    assert alarm["metric_name"] in [m["Name"] for m in directive["Metrics"]]
    assert line["ServiceName"] == service_value
    assert isinstance(line[alarm["metric_name"]], int | float)
    # the router is told both values (the aws-embedded-metrics library's variables)
    env = local("router_metrics_env")
    assert env["AWS_EMF_NAMESPACE"] == "${local.metrics_namespace}"
    assert env["AWS_EMF_SERVICE_NAME"] == "${local.router_service_name}"
    task = blocks("resource", "aws_ecs_task_definition")["router"]["container_definitions"]
    assert "local.router_metrics_env" in task


def test_every_alarm_notifies_and_the_budget_mails_the_alert_address() -> None:
    alarms = blocks("resource", "aws_cloudwatch_metric_alarm")
    assert set(alarms) == {"api_5xx_rate", "api_p99_latency", "control_tick_errors",
                           "lambda_throttles", "fleet_at_max"}
    for name, alarm in alarms.items():
        assert alarm["alarm_actions"] == "${local.alarm_actions}", name
        assert alarm["treat_missing_data"] == "notBreaching", name
    assert local("alarm_actions") == ["${aws_sns_topic.alerts.arn}"]
    subscription = blocks("resource", "aws_sns_topic_subscription")["alert_email"]
    assert subscription["endpoint"] == "${var.alert_email}"
    assert "default" not in blocks("variable")["alert_email"], "alerts need a real address"
    budget = blocks("resource", "aws_budgets_budget")["monthly"]
    assert {tuple(n["subscriber_email_addresses"]) for n in budget["notification"]} == {
        ("${var.alert_email}",)}
    assert {n["notification_type"] for n in budget["notification"]} == {"ACTUAL", "FORECASTED"}
    # the fleet alarm compares metrics the group must be told to publish
    asg = blocks("resource", "aws_autoscaling_group")["workers"]
    fleet = str(alarms["fleet_at_max"]["metric_query"])
    for metric in ("GroupInServiceInstances", "GroupMaxSize"):
        assert metric in fleet
        assert metric in asg["enabled_metrics"]
    assert alarms["api_p99_latency"]["extended_statistic"] == "p99"
    assert alarms["api_p99_latency"]["metric_name"] == "TargetResponseTime"


def test_default_security_group_flow_logs_and_access_logs() -> None:
    default_sg = blocks("resource", "aws_default_security_group")["this"]
    assert "ingress" not in default_sg
    assert "egress" not in default_sg
    variables = blocks("variable")
    assert variables["enable_flow_logs"]["default"] is True
    assert variables["enable_alb_access_logs"]["default"] is True
    (access_logs,) = blocks("resource", "aws_lb")["router"]["access_logs"]
    assert access_logs["enabled"] == "${var.enable_alb_access_logs}"
    flow = blocks("resource", "aws_flow_log")["vpc"]
    assert flow["vpc_id"] == "${local.vpc_id}"
    assert flow["traffic_type"] == "ALL"


def test_every_checkov_skip_has_a_reason() -> None:
    text = (REPO / "infra" / ".checkov.yaml").read_text()
    block = text.split("skip-check:\n", 1)[1]
    items = [line for line in block.splitlines() if line.strip().startswith("- ")]
    assert items, "no skips listed: the parse is broken"
    for line in items:
        match = re.fullmatch(r"\s*- (CKV2?_AWS_\d+)\s+# (.+)", line)
        assert match, f"a skip without a reason comment: {line!r}"
        assert len(match.group(2).split()) >= 5, f"{match.group(1)}: say why, not just what"
    ids = [re.search(r"CKV2?_AWS_\d+", line).group(0) for line in items]  # type: ignore[union-attr]
    assert len(ids) == len(set(ids)), "a check skipped twice"


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


def test_the_router_prints_the_documented_emf_line() -> None:
    """libra.serving.emf writes what the alarm reads, in the documented shape."""
    import io

    from libra.serving.emf import EmfReporter

    example = emf_example()
    out = io.StringIO()
    env = {"AWS_EMF_NAMESPACE": example["_aws"]["CloudWatchMetrics"][0]["Namespace"],
           "AWS_EMF_SERVICE_NAME": example["ServiceName"]}
    reporter = EmfReporter.from_env(env)
    reporter.out, reporter.clock = out, lambda: example["_aws"]["Timestamp"] / 1000
    reporter.put({"ControlTickErrors": 1})
    assert json.loads(out.getvalue()) == example
    silent = EmfReporter.from_env({})
    silent.out = io.StringIO()
    silent.put({"ControlTickErrors": 1})
    assert silent.out.getvalue() == ""
