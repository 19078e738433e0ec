"""The images' pins (constraints/*.txt) agree with pyproject.toml and the Dockerfiles use them.

Each stage of infra/docker/*.Dockerfile that installs the package does `pip install -c <file>`.
A pin that contradicts pyproject.toml breaks the image build; a dependency added to
pyproject.toml but not to the file goes into the image unpinned, and the file no longer says
what the image holds. Both mean `bash constraints/compile.sh` was not re-run: this test says so
before an image build does. Markers are evaluated for Python 3.11 and 3.12 (the files are
universal: the images run 3.12, the stand-in base of infra/images/build.sh 3.11).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "infra" / "docker"
PYTHONS = ({"python_version": "3.11", "python_full_version": "3.11.2"},
           {"python_version": "3.12", "python_full_version": "3.12.8"})
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
         "implementation_name": "cpython", "platform_python_implementation": "CPython",
         "os_name": "posix"}


@dataclass(frozen=True)
class Install:
    """One `pip install -c FILE '<src>[extras]' [more]` of a Dockerfile stage."""
    dockerfile: str
    constraints: Path
    extras: tuple[str, ...]
    more: tuple[str, ...]  # requirements named beside the package (the worker's ORT_GPU)


def stages(text: str) -> list[str]:
    """The Dockerfile's stages, continuation lines joined, the lines before the first FROM
    (global ARGs) dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return ["FROM" + part for part in re.split(r"^FROM", joined, flags=re.M)[1:]]


def expand(text: str, args: dict[str, str]) -> str:
    """`${NAME}` replaced by the default of the stage's `ARG NAME=...`."""
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], text)


def installs(path: Path) -> list[Install]:
    found = []
    for stage in stages(path.read_text()):
        args = dict(re.findall(r'^ARG (\w+)=("[^"]*"|\S+)', stage, flags=re.M))
        args = {k: v.strip('"') for k, v in args.items()}
        for run in re.findall(r"^RUN (.*)$", stage, flags=re.M):
            for command in re.split(r"&&", run):
                package = re.search(r"'[^']*?\[([\w,]+)\]'", command)
                if "pip install" not in command or not package:
                    continue
                c = re.search(r"\s-c\s+(\S+)", command)
                assert c, f"{path.name}: `{command.strip()}` installs without -c constraints"
                copied = {dst: src for src, dst in re.findall(
                    r"^COPY (\S+) (\S+)$", stage, flags=re.M)}
                source = next((src for dst, src in copied.items()
                               if Path(dst).name == Path(c.group(1)).name), None)
                if source is None:  # `COPY constraints/model.txt ./` style: one of several sources
                    source = next(w for line in re.findall(r"^COPY (.*)$", stage, flags=re.M)
                                  for w in line.split() if w.endswith(Path(c.group(1)).name))
                source = expand(source, args)
                after = command[package.end():]
                more = tuple(expand(word.strip('"'), args)
                             for word in re.findall(r'"\$\{\w+\}"', after))
                found.append(Install(path.name, REPO / source,
                                     tuple(package.group(1).split(",")), more))
    return found


def all_installs() -> list[Install]:
    return [i for p in sorted(DOCKER_DIR.glob("*.Dockerfile")) for i in installs(p)]


def project_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """What `pip install '.[extras]'` asks for, self-references (`libra-serve[media]`) expanded."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    name = canonicalize_name(project["name"])
    optional = project["optional-dependencies"]
    todo, seen, out = list(extras), set(), [Requirement(r) for r in project["dependencies"]]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == name:
                todo.extend(req.extras)
            else:
                out.append(req)
    return out


def pins(path: Path) -> list[Requirement]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [Requirement(line) for line in lines if line]


def pinned_version(path: Path, name: str, env: dict[str, str]) -> str | None:
    for pin in pins(path):
        if canonicalize_name(pin.name) == canonicalize_name(name) and (
                pin.marker is None or pin.marker.evaluate(env)):
            (spec,) = pin.specifier
            assert spec.operator == "==", f"{path.name}: {pin} is not an exact pin"
            return spec.version
    return None


def test_every_image_stage_installs_the_package_with_constraints() -> None:
    found = all_installs()
    # a model stage and a runtime stage in each of the three images
    assert {(i.dockerfile, i.constraints.name) for i in found} >= {
        ("router.Dockerfile", "router.txt"), ("worker.Dockerfile", "worker.txt"),
        ("lambda.Dockerfile", "lambda.txt"), ("router.Dockerfile", "model.txt"),
        ("worker.Dockerfile", "model.txt"), ("lambda.Dockerfile", "model.txt")}
    for install in found:
        assert install.constraints.is_file(), f"{install.dockerfile}: no {install.constraints}"
        assert install.constraints.parent == REPO / "constraints"


@pytest.mark.parametrize("install", all_installs(),
                         ids=lambda i: f"{i.dockerfile}:{i.constraints.name}")
@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: p["python_version"])
def test_constraints_pin_every_requirement_within_pyproject(install: Install,
                                                            python: dict[str, str]) -> None:
    env = {**LINUX, **python, "extra": ""}
    wanted = project_requirements(install.extras) + [Requirement(r) for r in install.more]
    stale = []
    for req in wanted:
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        version = pinned_version(install.constraints, req.name, env)
        if version is None:
            stale.append(f"{req.name} not pinned")
        elif not req.specifier.contains(version, prereleases=True):
            stale.append(f"{req.name}=={version} outside {req.specifier}")
    assert not stale, (f"constraints/{install.constraints.name} is stale for "
                       f"{install.dockerfile} ({', '.join(stale)}): bash constraints/compile.sh")


def test_the_cuda12_worker_file_pins_what_its_documented_build_argument_asks_for() -> None:
    """worker.Dockerfile's comment: ORT_GPU=...==1.26.0 goes with CONSTRAINTS=...cuda12.txt."""
    text = (DOCKER_DIR / "worker.Dockerfile").read_text()
    ort = re.search(r'--build-arg ORT_GPU="([^"]+)"', text)
    constraints = re.search(r"--build-arg CONSTRAINTS=(\S+)", text)
    assert ort, "the CUDA 12 build is no longer documented in worker.Dockerfile"
    assert constraints, "the CUDA 12 build names no constraints file"
    req = Requirement(ort.group(1))
    for python in PYTHONS:
        version = pinned_version(REPO / constraints.group(1), req.name, {**LINUX, **python})
        assert version is not None, f"{constraints.group(1)} does not pin {req.name}"
        assert req.specifier.contains(version), (req, version)
