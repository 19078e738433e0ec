"""`libra-sim`: replay a request trace through the scaling policies and compare cost and SLA."""

from __future__ import annotations

import json
import math
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from libra.core.policies import POLICIES, UnknownPolicyError
from libra.profiles import Profile, ProfileError, load_profile
from simulator.config import SimConfig
from simulator.errors import TraceFormatError
from simulator.presets import Preset, PresetError, deep_merge, load_preset, preset_names
from simulator.runner import DEFAULT_POLICIES, default_workers, run_policies
from simulator.traces import FORMATS, open_trace


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _apply_override(data: dict[str, Any], assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{assignment!r} is not KEY=VALUE (e.g. vm.boot_s=90)",
                                 param_hint="--set")
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise click.BadParameter(f"{key!r}: {part!r} is not a section", param_hint="--set")
    node[leaf] = _parse_value(value)


def load_config(
    path: Path | None, overrides: tuple[str, ...], preset: Preset | None = None,
    profile: Profile | None = None,
) -> tuple[SimConfig, dict[str, Any]]:
    """SimConfig from a profile's platform, then a preset, then a TOML/JSON file, then `--set`
    overrides.

    `[policies.NAME]` tables hold policy parameters. A file's values replace the preset's one by
    one (tables merge), so a file can change one VM field of a preset and keep the rest.
    """
    data: dict[str, Any] = profile.platform.model_dump() if profile is not None else {}
    if preset is not None:
        data = deep_merge(data, preset.config_data())
    if path is not None:
        try:
            text = path.read_text()
            from_file = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"{path}: cannot read config: {exc}") from None
        if not isinstance(from_file, dict):
            raise click.ClickException(f"{path}: a config must be a table of fields, not "
                                       f"{type(from_file).__name__}")
        data = deep_merge(data, from_file)
    for assignment in overrides:
        _apply_override(data, assignment)
    policy_params = data.pop("policies", {})
    where = f"{path}: " if path else f"preset {preset.name}: " if preset else ""
    if not isinstance(policy_params, dict):
        raise click.ClickException(f"{where}'policies' must be a table of policy names")
    for name, params in policy_params.items():
        if name not in POLICIES:
            raise click.ClickException(
                f"{where}policies.{name}: unknown policy; valid policies: {', '.join(POLICIES)}")
        if not isinstance(params, dict):
            raise click.ClickException(f"{where}policies.{name} must be a table of parameters")
    try:
        return SimConfig.model_validate(data), policy_params
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise click.ClickException(f"{where}bad config: {problems}") from None


def _check_output(path: Path | None, option: str, *, image: bool = False) -> None:
    """Fail before simulating, not after, on an output path that cannot be written."""
    if path is None:
        return
    if not path.parent.is_dir():
        raise click.BadParameter(f"cannot write {path}: folder {path.parent} does not exist",
                                 param_hint=option)
    if image:
        try:
            from matplotlib.backend_bases import FigureCanvasBase
        except ModuleNotFoundError:  # a simulator-only install: matplotlib is the [plot] extra
            raise click.UsageError(f"{option} needs matplotlib: pip install 'libra-serve[plot]' "
                                   f"(or leave {option} out)") from None

        kinds = FigureCanvasBase.get_supported_filetypes()
        if path.suffix.lstrip(".").lower() not in kinds:
            raise click.BadParameter(
                f"{path}: unknown image type; use one of .{', .'.join(sorted(kinds))}",
                param_hint=option)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="libra-serve", prog_name="libra-sim")
@click.option("--trace", "traces", multiple=True, type=click.Path(path_type=Path),
              help="trace file; repeat to concatenate Azure 2019 day files")
@click.option("--format", "fmt", type=click.Choice(["auto", *FORMATS]), default="auto",
              show_default=True, help="trace format (docs/cli.md); auto detects it from the file")
@click.option("--time-field", "--time-column", "time_field", default=None, metavar="NAME",
              help="jsonl/csv: the field or column holding each request's time (count csv: "
              "each bin's) [default: the one named like a time]")
@click.option("--time-unit", type=click.Choice(["s", "ms", "us", "ns"]), default=None,
              help="jsonl/csv: unit of numeric times [default: from the name (time_ms), or the "
              "size of epoch times; ISO-8601 needs none]")
@click.option("--count-column", default=None, metavar="NAME",
              help="csv of counts per bin: the column of counts [default: the one named like a "
              "count: count, requests, invocations, ...]")
@click.option("--bin-s", type=float, default=None,
              help="counts, per-second, count csv: seconds per bin [default: 1; a count csv: "
              "the step of its time column]")
@click.option("--function", default=None, help="Azure trace: replay one function (HashFunction)")
@click.option("--app", default=None, help="Azure trace: replay one app (HashApp), all functions")
@click.option("--top", type=click.IntRange(min=1), default=None,
              help="Azure 2019 trace: replay the N functions with the most invocations, summed")
@click.option("--scale", type=float, default=1.0, show_default=True, help="multiply the rate")
@click.option("--start-s", type=float, default=0.0, show_default=True, help="window start")
@click.option("--end-s", type=float, default=None, help="window end (default: trace end)")
@click.option("--spread", type=click.Choice(["poisson", "uniform"]), default=None,
              help="how per-minute/second counts become arrivals [default: the preset's, else "
              "poisson]")
@click.option("--epoch-s", type=float, default=None,
              help="move each arrival to the start of its epoch of this many seconds "
              "[default: the preset's, else none]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--policies", default=",".join(DEFAULT_POLICIES), show_default=True,
              help=f"comma-separated, of: {', '.join(POLICIES)}")
@click.option("--preset", default=None, metavar="NAME",
              help="start from a named setting (`libra-sim presets` lists them), e.g. "
              "libra-ic2e21")
@click.option("--profile", "profile_name", default=None, metavar="NAME|FILE",
              help="start from a profile's platform (local, aws, or a .toml file "
              "libra-calibrate wrote): what libra-serve runs on [default: SimConfig's, the aws "
              "figures]")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="TOML or JSON file of SimConfig fields (see docs/simulator.md)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override one config field, e.g. --set vm.boot_s=90 "
              "--set policies.libra.period_s=600")
@click.option("--slo", type=str, default=None, metavar="FRACTION",
              help="the fraction of requests that must be answered inside the SLA, e.g. 0.999 "
              "(the config's `slo`): policies that read it size for it, every report says "
              "whether each policy met it")
@click.option("--sla-penalty", type=str, default=None, metavar="USD",
              help="$ per late or dropped request (the config's `sla_penalty_usd`): reports add "
              "the cost including penalties")
@click.option("--spot/--no-spot", default=None,
              help="offer spot VMs (the config's `spot.enabled`): policies that use them (libra, "
              "libra-forecast) split their fleet into an on-demand base and spot above it "
              "[default: the config's, off]")
@click.option("--spot-price", type=str, default=None, metavar="USD_PER_HOUR",
              help="spot price of the VM type (`spot.price_per_hour_usd`)")
@click.option("--spot-interruptions-per-day", type=str, default=None, metavar="RATE",
              help="spot interruptions per instance-day, e.g. 0.05 for 5% "
              "(`spot.interruptions_per_instance_hour` x 24)")
@click.option("--spot-interruptions-file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="interrupt spot VMs at these times (s, one a line; a time "
                                 "repeated interrupts several VMs) instead of at the rate")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of the table")
@click.option("--csv", "as_csv", is_flag=True, help="print CSV instead of the table")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="draw demand, VMs and serverless over time per policy to this PNG")
@click.option("--decisions", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="write every controller tick of every policy to this CSV")
@click.option("--timeline", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="write per-second arrivals, VMs ready/booting, VM quota and serverless in "
              "flight of every policy to this CSV (docs/cli.md)")
@click.option("--workers", default="auto", show_default=True,
              help="policies replayed at once in separate processes ('auto': one per core)")
@click.option("--mode", type=click.Choice(["batched", "naive"]), default="batched",
              show_default=True, help="naive: one SimPy process per request (slow baseline)")
@click.option("--progress/--no-progress", default=None,
              help="progress bar (default: when stderr is a terminal)")
@click.pass_context
def main(ctx: click.Context, traces: tuple[Path, ...], fmt: str, time_field: str | None,
         time_unit: str | None, count_column: str | None, bin_s: float | None,
         function: str | None,
         app: str | None, top: int | None, scale: float, start_s: float, end_s: float | None,
         spread: str | None, epoch_s: float | None, seed: int, policies: str, preset: str | None,
         profile_name: str | None, config_path: Path | None, overrides: tuple[str, ...],
         slo: str | None, sla_penalty: str | None, spot: bool | None, spot_price: str | None,
         spot_interruptions_per_day: str | None, spot_interruptions_file: Path | None,
         as_json: bool, as_csv: bool,
         plot: Path | None, decisions: Path | None, timeline: Path | None, workers: str,
         mode: str, progress: bool | None) -> None:
    """Replay a request trace through the scaling policies and compare SLA violations and cost.

    \b
    libra-sim --trace traces/azure.csv --plot sim.png
    libra-sim --trace AzureLLMInferenceTrace_code.csv --scale 20 --json
    libra-sim --preset libra-ic2e21 --trace ../shared/traces/libra/wits_logs.txt
    """
    if ctx.invoked_subcommand is not None:
        return
    if not traces:
        raise click.UsageError("give a trace: libra-sim --trace traces/azure.csv")
    if as_json and as_csv:
        raise click.UsageError("--json and --csv are exclusive")
    names = [n.strip() for n in policies.split(",") if n.strip()]
    if not names:
        raise click.UsageError(f"give at least one policy; valid: {', '.join(POLICIES)}")
    _check_output(plot, "--plot", image=True)
    _check_output(decisions, "--decisions")
    _check_output(timeline, "--timeline")
    n_workers = _parse_workers(workers)
    for name in names:
        if name not in POLICIES:
            raise click.BadParameter(str(UnknownPolicyError(
                f"unknown policy {name!r}; valid policies: {', '.join(POLICIES)}")),
                param_hint="--policies")
    try:
        chosen = load_preset(preset) if preset is not None else None
    except PresetError as exc:
        raise click.BadParameter(str(exc), param_hint="--preset") from None
    try:
        profile = load_profile(profile_name) if profile_name is not None else None
    except ProfileError as exc:
        raise click.BadParameter(str(exc), param_hint="--profile") from None
    overrides = (*overrides, *_slo_overrides(slo, sla_penalty),
                 *_spot_overrides(spot, spot_price, spot_interruptions_per_day,
                                  spot_interruptions_file))
    cfg, params = load_config(config_path, overrides, chosen, profile)
    cfg = cfg.model_copy(update={"seed": seed}) if seed != cfg.seed else cfg
    if spread is None:
        spread = chosen.trace.get("spread", "poisson") if chosen is not None else "poisson"
    if epoch_s is None and chosen is not None:
        epoch_s = chosen.trace.get("epoch_s")
    try:
        trace = open_trace(list(traces), fmt=fmt, function=function, app=app, top=top,
                           scale=scale, start_s=start_s, end_s=end_s,
                           spread=spread, seed=seed, epoch_s=epoch_s,  # type: ignore[arg-type]
                           time_field=time_field, time_unit=time_unit, count_column=count_column,
                           bin_s=bin_s)
        n_requests = trace.n_requests
    except TraceFormatError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    show_progress = sys.stderr.isatty() if progress is None else progress
    started = time.perf_counter()
    try:
        runs = run_policies(trace, None, names, cfg, params=params,
                            mode=mode, progress=show_progress,  # type: ignore[arg-type]
                            keep_requests=False,
                            record_ticks=any(p is not None for p in (plot, decisions, timeline)),
                            workers=n_workers, trace_name=trace.name, preset=preset or "")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    wall_s = time.perf_counter() - started
    results = [r.result for r in runs]
    meta = {"trace": trace.name, "source": trace.source, "requests": n_requests,
            "duration_s": trace.duration_s, "scale": scale, "seed": seed, "mode": mode,
            "preset": preset, "spread": spread, "epoch_s": epoch_s, "wall_s": round(wall_s, 3),
            "config": {**cfg.model_dump(), "policies": params}}
    if as_json:
        from simulator.report import to_json
        click.echo(to_json(results, meta))
    elif as_csv:
        from simulator.report import to_csv
        click.echo(to_csv(results), nl=False)
    else:
        from simulator.report import table
        setting = f"preset {preset}; " if preset else ""
        click.echo(f"trace {trace.name}: {n_requests:,} requests over {trace.duration_s:,.0f} s "
                   f"(scale x{scale:g}); {setting}SLA {cfg.sla_s:g} s; {wall_s:.1f} s wall")
        click.echo(table(results))
    try:
        if plot is not None:
            from simulator.report import plot as draw
            draw(runs, plot, f"{trace.name} (x{scale:g}), SLA {cfg.sla_s:g} s")
            click.echo(f"plot written to {plot}", err=True)
        if decisions is not None:
            from simulator.report import write_decisions
            write_decisions(runs, decisions)
            click.echo(f"decisions written to {decisions}", err=True)
        if timeline is not None:
            from simulator.report import write_timeline
            write_timeline(runs, timeline)
            click.echo(f"timeline written to {timeline}", err=True)
    except OSError as exc:
        raise click.ClickException(f"cannot write output: {exc}") from None


def _slo_overrides(slo: str | None, penalty: str | None) -> tuple[str, ...]:
    """`--slo` and `--sla-penalty` as config overrides (so the platform validates them once, as
    it does the same keys in a config file), refusing what is not a number in range first."""
    out = []
    if slo is not None:
        try:
            value = float(slo)
        except ValueError:
            value = math.nan
        if not 0.0 < value < 1.0:
            raise click.BadParameter(
                f"{slo!r} is not a fraction between 0 and 1 (0.999: 99.9% of requests inside "
                f"the SLA)", param_hint="--slo")
        out.append(f"slo={value!r}")
    if penalty is not None:
        try:
            cost = float(penalty)
        except ValueError:
            cost = math.nan
        if not (math.isfinite(cost) and cost >= 0.0):
            raise click.BadParameter(f"{penalty!r} is not a dollar amount >= 0",
                                     param_hint="--sla-penalty")
        out.append(f"sla_penalty_usd={cost!r}")
    return tuple(out)


def _spot_overrides(spot: bool | None, price: str | None, per_day: str | None,
                    file: Path | None) -> tuple[str, ...]:
    """The `--spot*` options as config overrides (validated by the platform, as the same keys in
    a config file are); an interruptions file is read here, so a bad line fails before any
    replay, naming the file and line."""
    out = [] if spot is None else [f"spot.enabled={json.dumps(spot)}"]
    for text, option, key, factor in ((price, "--spot-price", "price_per_hour_usd", 1.0),
                                      (per_day, "--spot-interruptions-per-day",
                                       "interruptions_per_instance_hour", 1 / 24)):
        if text is None:
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0.0):
            raise click.BadParameter(f"{text!r} is not a number >= 0", param_hint=option)
        out.append(f"spot.{key}={value * factor!r}")
    if file is not None:
        from simulator.spot import read_interruptions

        try:
            read_interruptions(file)
        except TraceFormatError as exc:
            raise click.ClickException(str(exc)) from None
        out.append(f"spot.interruptions_file={json.dumps(str(file))}")
    return tuple(out)


def _parse_workers(text: str) -> int:
    if text == "auto":
        return default_workers()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise click.BadParameter(f"{text!r} is not 'auto' or a whole number >= 1",
                                 param_hint="--workers")
    return value


@main.command("presets")
@click.argument("name", required=False)
def presets_cmd(name: str | None) -> None:
    """List the named settings for --preset, or print one preset's file."""
    if name is None:
        for preset_name in preset_names():
            click.echo(f"{preset_name}\n    {load_preset(preset_name).description}")
        return
    try:
        chosen = load_preset(name)
    except PresetError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    click.echo(chosen.path.read_text(), nl=False)


@main.command("fetch-trace")
@click.argument("name")
@click.option("--dest", type=click.Path(path_type=Path, file_okay=False),
              default=Path("traces/real"),
              show_default=True)
@click.option("--base-url", default=None, help="mirror to download from instead of the origin")
def fetch_trace_cmd(name: str, dest: Path, base_url: str | None) -> None:
    """Download a real public trace (needs internet): see `traces/README.md` for the list."""
    from simulator.fetch import TRACES, FetchError, fetch_trace

    if name not in TRACES:
        raise click.BadParameter(f"unknown trace {name!r}; valid: {', '.join(TRACES)}",
                                 param_hint="NAME")
    try:
        paths = fetch_trace(name, dest, base_url=base_url, progress=sys.stderr.isatty())
    except FetchError as exc:
        raise click.ClickException(str(exc)) from None
    for path in paths:
        click.echo(str(path))


_KIND_OPTIONS = {
    "azure2019": (),
    "step": ("base_rps", "factor", "step_at_s", "ramp_s", "hold_s", "duration_s"),
    "diurnal": ("mean_rps", "days"),
}


@main.command("make-trace")
@click.option("--kind", type=click.Choice(list(_KIND_OPTIONS)), default="azure2019",
              show_default=True,
              help="azure2019: the shipped synthetic day (per-minute counts, CSV); step: a flash "
              "crowd; diurnal: days of a low-rate server (both per-second counts, one a line)")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("traces/azure.csv"), show_default=True,
              help="file to write (per-second kinds: gzip'd when it ends in .gz)")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--base-rps", type=float, default=None, help="step: rate before the step [200]")
@click.option("--factor", type=float, default=None, help="step: rate after / before [5]")
@click.option("--step-at-s", type=float, default=None, help="step: when the ramp starts [1800]")
@click.option("--ramp-s", type=float, default=None,
              help="step: seconds from base to factor x base (0: sheer) [60]")
@click.option("--hold-s", type=float, default=None,
              help="step: seconds at the high rate before ramping back [to the end]")
@click.option("--duration-s", type=int, default=None, help="step: trace length [3600]")
@click.option("--mean-rps", type=float, default=None, help="diurnal: mean rate [1]")
@click.option("--days", type=float, default=None, help="diurnal: trace length in days [7]")
def make_trace_cmd(kind: str, out: Path, seed: int, **shape: float | None) -> None:
    """Write a synthetic trace: the Azure-2019-format sample, a step, or a diurnal week.

    \b
    libra-sim make-trace --out traces/azure.csv
    libra-sim make-trace --kind step --base-rps 200 --factor 5 --ramp-s 60 --out step.txt
    libra-sim make-trace --kind diurnal --days 7 --mean-rps 1 --out week.txt.gz
    """
    from simulator import tracegen

    given = {name: value for name, value in shape.items() if value is not None}
    stray = sorted(set(given) - set(_KIND_OPTIONS[kind]))
    if stray:
        flags = ", ".join("--" + name.replace("_", "-") for name in stray)
        raise click.UsageError(f"{flags} do(es) not apply to --kind {kind}")
    try:
        if kind == "azure2019":
            tracegen.generate_azure2019(out, seed=seed)
        else:
            make = tracegen.synthetic_step if kind == "step" else tracegen.synthetic_diurnal
            tracegen.write_per_second(out, make(seed=seed, **given).counts)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc}") from None
    click.echo(str(out))


if __name__ == "__main__":
    main(prog_name="libra-sim")
