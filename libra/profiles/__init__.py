"""Named profiles: the platform's figures as data, each with where it comes from.

A profile is a `libra.core.platform.Platform` (VM type, serverless function, SLA) plus, for every
figure, its provenance: measured (the command that measured it, the date and the spread), published
(the source), or scaled (from what, and how). `local` describes this kind of machine (worker
processes and the local serverless pool, measured by `bench/` and `libra-sim calibrate`); `aws`
describes g4dn.xlarge workers and AWS Lambda. The simulator and the live platform read the same
file, so a replay and a live run start from the same numbers.

    load_profile("local").platform        # a Platform
    load_profile(Path("my-machine.toml"))  # what `libra-sim calibrate` wrote
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from libra.core.platform import Platform

PROFILES_DIR = Path(__file__).resolve().parent


class ProfileError(ValueError):
    """An unknown profile name, or a profile file that is not a valid profile."""


class Figure(BaseModel):
    """Where one figure of the platform comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["measured", "published", "scaled", "chosen"] = Field(
        description="measured here; published by the provider; scaled from a measurement; or a "
        "choice of the operator (the SLA, a limit), not a fact about the platform")
    how: str = Field(description="the command that measured it, the publication, or the "
                     "scaling rule")
    date: str | None = Field(None, description="when it was measured (ISO date)")
    spread: str | None = Field(None, description="how much it varied (e.g. min-max of 3 runs)")


class Profile(BaseModel):
    """A named platform with the provenance of every figure (see module docs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    platform: Platform
    figures: dict[str, Figure]

    @model_validator(mode="after")
    def _every_figure_has_a_source(self) -> Profile:
        leaves = set(platform_leaves(self.platform))
        missing = sorted(leaves - set(self.figures))
        if missing:
            raise ValueError(f"profile {self.name!r}: no source for {', '.join(missing)} "
                             f"(every figure needs a [figures.\"path\"] entry)")
        unknown = sorted(set(self.figures) - leaves)
        if unknown:
            raise ValueError(f"profile {self.name!r}: [figures] names {', '.join(unknown)}, "
                             f"which the platform does not have")
        return self

    def figure_table(self) -> list[tuple[str, Any, Figure]]:
        """(path, value, provenance) for every figure, in path order."""
        values = platform_leaves(self.platform)
        return [(path, values[path], self.figures[path]) for path in sorted(self.figures)]


def platform_leaves(platform: Platform) -> dict[str, Any]:
    """Every scalar field of a platform by dotted path ("vm.boot_s" -> 120.0)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                out[f"{prefix}{key}"] = value

    walk("", platform.model_dump())
    return out


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """A profile by name (`libra/profiles/NAME.toml`) or from a file."""
    path = Path(name_or_path)
    if not (isinstance(name_or_path, Path) or path.suffix == ".toml"):
        path = PROFILES_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise ProfileError(f"unknown profile {name_or_path!r}; valid profiles: "
                               f"{', '.join(profile_names())}, or a path to a .toml file")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc}") from None
    try:
        return Profile.model_validate({"name": path.stem, **data})
    except ValidationError as exc:
        raise ProfileError(f"{path}: not a valid profile:\n{exc}") from None


def dump_profile(profile: Profile) -> str:
    """The profile as TOML text, `load_profile` reads it back equal."""
    import tomli_w

    data = profile.model_dump(exclude={"name"}, exclude_none=True)
    return tomli_w.dumps(data)
