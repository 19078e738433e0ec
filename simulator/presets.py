"""Named settings as data: one TOML file per preset in `simulator/presets/`.

A preset holds a `description`, a `[config]` table of `SimConfig` fields, `[policies.NAME]`
tables of policy parameters and a `[trace]` table of trace-reading options (`spread`,
`epoch_s`). The CLI
layers them: preset, then `--config FILE`, then `--set KEY=VALUE`, then explicit trace options.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
_TRACE_OPTIONS = frozenset({"spread", "epoch_s"})


class PresetError(ValueError):
    """An unknown preset name, or a preset file that is not a valid preset."""


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)

    def config_data(self) -> dict[str, Any]:
        """The config tables as `--config` would give them (policies under `policies`)."""
        data = _deep_copy(self.config)
        if self.policies:
            data["policies"] = _deep_copy(self.policies)
        return data


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_preset(name: str) -> Preset:
    """The preset called `name` (its file `presets/NAME.toml`)."""
    path = PRESETS_DIR / f"{name}.toml"
    if not path.is_file():
        raise PresetError(f"unknown preset {name!r}; valid presets: {', '.join(preset_names())}")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PresetError(f"{path}: cannot read preset: {exc}") from None
    unknown = set(data) - {"description", "config", "policies", "trace"}
    if unknown:
        raise PresetError(f"{path}: unknown tables {', '.join(sorted(unknown))}; a preset has "
                          "description, [config], [policies.NAME] and [trace]")
    trace = data.get("trace", {})
    bad = set(trace) - _TRACE_OPTIONS
    if bad:
        raise PresetError(f"{path}: [trace] has {', '.join(sorted(bad))}; valid: "
                          f"{', '.join(sorted(_TRACE_OPTIONS))}")
    return Preset(name=name, description=str(data.get("description", "")).strip(), path=path,
                  config=data.get("config", {}), policies=data.get("policies", {}), trace=trace)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, table by table (a key in `top` wins; tables merge recursively)."""
    out = _deep_copy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = _deep_copy(value)
    return out


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
