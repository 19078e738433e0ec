"""`libra-calibrate`: measure this machine and write a profile the simulator and `libra-serve`
both read.

It starts the real things and times them: local worker processes (launch to ready, and their
closed-loop throughput on text requests at their batch size, from which the per-request service
time follows as slots / capacity), and the local serverless pool (a cold call and warm calls).
Each measured figure is written with the command, the date and its spread over the rounds; the
other figures (prices, limits, the SLA) are copied from the base profile with their sources.

    libra-calibrate --out my-machine.toml            # about 2 minutes on 2 cores
    libra-sim --profile my-machine.toml --trace ...   # replay on what was measured
"""

from __future__ import annotations

import asyncio
import datetime
import statistics
import tempfile
import time
from pathlib import Path

import click
import httpx
import numpy as np

from libra.core.platform import Platform
from libra.profiles import Figure, Profile, dump_profile, load_profile
from libra.runtime.home import default_model_dir
from libra.runtime.payload import encode_input
from libra.runtime.recognizer import ModelInput
from libra.serving.backends.local_pool import LocalServerlessPool, PoolConfig
from libra.serving.provision.worker_process import WorkerProcess


def text_request(seed: int = 0) -> ModelInput:
    """A 20-token sentence, the shape of a real text request."""
    rng = np.random.default_rng(seed)
    ids = np.zeros(64, np.int64)
    ids[:20] = np.r_[101, rng.integers(1000, 20000, 18), 102]
    return ModelInput(text=(ids, (ids > 0).astype(np.int64)))


def spread(values: list[float], unit: str, scale: float = 1.0) -> str:
    return (f"{scale * min(values):.4g}-{scale * max(values):.4g} {unit} over {len(values)} "
            f"rounds (median {scale * statistics.median(values):.4g})")


async def worker_throughput(url: str, concurrency: int, seconds: float) -> float:
    """Closed-loop text requests per second one worker answers."""
    body = {"request_id": "calibrate", "inputs": encode_input(text_request())}
    done = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for _ in range(3):
            await client.post(f"{url}/infer", json=body)
        stop = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                (await client.post(f"{url}/infer", json=body)).raise_for_status()
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def measure_workers(model_dir: Path, rounds: int, slots: int, seconds: float
                    ) -> tuple[list[float], list[float]]:
    """(launch-to-ready seconds, text requests/s) of `rounds` fresh workers."""
    boots, rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            started = time.monotonic()
            worker = WorkerProcess(model_dir, log_dir=Path(tmp), extra_args=(
                "--threads", "1", "--max-batch-size", str(slots)))
            try:
                url = worker.wait_ready(300)
                boots.append(time.monotonic() - started)
                rates.append(asyncio.run(worker_throughput(url, slots, seconds)))
            finally:
                worker.drain()
                worker.wait(30)
                worker.close()
    return boots, rates


async def pool_round(model: Path, warm_calls: int) -> tuple[float, float]:
    """(cold call, median warm call) in seconds, on a fresh one-instance pool."""
    pool = LocalServerlessPool(PoolConfig(model, max_concurrency=1))
    event = {"request_id": "calibrate", "inputs": encode_input(text_request())}
    try:
        cold = await pool.invoke(event)
        warm = [(await pool.invoke(event)).latency_s for _ in range(warm_calls)]
        return cold.latency_s, statistics.median(warm)
    finally:
        await pool.aclose()


def calibrated(base: Profile, *, boots: list[float], rates: list[float], colds: list[float],
               warms: list[float], command: str, today: str) -> Profile:
    """`base` with the measured figures replaced (see module docs)."""
    slots = base.platform.vm.concurrency
    capacity = statistics.median(rates)
    warm = statistics.median(warms)
    cold_start = max(0.0, statistics.median(colds) - warm)
    data = base.platform.model_dump()
    data["vm"].update(boot_s=round(statistics.median(boots), 2),
                      service_time_mean_s=round(slots / capacity, 5))
    data["serverless"].update(service_time_mean_s=round(warm, 5), cold_start_s=round(cold_start, 3))
    figures = dict(base.figures)
    figures["vm.boot_s"] = Figure(source="measured", how=f"{command}: launch to ready of a local "
                                  "worker (process start, model load, warm-up)", date=today,
                                  spread=spread(boots, "s"))
    figures["vm.service_time_mean_s"] = Figure(
        source="measured", how=f"{command}: slots / closed-loop text throughput of one worker "
        f"({slots} slots, 1 ORT thread; {capacity:.1f} req/s)", date=today,
        spread=spread(rates, "req/s"))
    figures["serverless.service_time_mean_s"] = Figure(
        source="measured", how=f"{command}: warm text call of the local pool", date=today,
        spread=spread(warms, "ms", 1000))
    figures["serverless.cold_start_s"] = Figure(
        source="measured", how=f"{command}: cold call minus warm call of the local pool",
        date=today, spread=spread(colds, "ms (cold call)", 1000))
    description = (f"{base.description.strip()}\n\nCalibrated on this machine by `{command}` "
                   f"on {today}.")
    return Profile(name="calibrated", description=description,
                   platform=Platform.model_validate(data), figures=figures)


@click.command(name="libra-calibrate")
@click.version_option(package_name="libra-serve", prog_name="libra-calibrate")
@click.help_option("-h", "--help")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="where to write the profile (TOML)")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path),
              default=default_model_dir,
              show_default="$LIBRA_HOME/onnx, else the checkout's or ./ artifacts/onnx")
@click.option("--base", default="local", show_default=True,
              help="profile whose other figures (prices, limits, SLA) are kept")
@click.option("--sla-s", type=float, default=None,
              help="the SLA to write (a choice, not a measurement) [the base profile's]")
@click.option("--rounds", type=int, default=3, show_default=True)
@click.option("--seconds", type=float, default=8.0, show_default=True,
              help="length of each throughput run")
def main(out: Path, model_dir: Path, base: str, sla_s: float | None, rounds: int,
         seconds: float) -> None:
    """Measure this machine's workers and serverless pool; write a profile."""
    if not (model_dir / "manifest.json").is_file():
        raise click.ClickException(f"no model in {model_dir}: run `libra-model build` first")
    base_profile = load_profile(base)
    if sla_s is not None:
        base_profile = base_profile.model_copy(update={"platform": base_profile.platform.model_copy(
            update={"sla_s": sla_s})})
    command = (f"libra-calibrate --out {out.name} --base {base} --rounds {rounds} "
               f"--seconds {seconds:g}" + (f" --sla-s {sla_s:g}" if sla_s is not None else ""))
    click.echo(f"workers: {rounds} starts and {seconds:.0f} s throughput runs ...", err=True)
    boots, rates = measure_workers(model_dir, rounds, base_profile.platform.vm.concurrency,
                                   seconds)
    click.echo("serverless pool: cold and warm calls ...", err=True)
    pool = [asyncio.run(pool_round(model_dir / "int8.onnx", 20)) for _ in range(rounds)]
    today = datetime.date.today().isoformat()
    try:
        profile = calibrated(base_profile, boots=boots, rates=rates,
                             colds=[c for c, _ in pool], warms=[w for _, w in pool],
                             command=command, today=today)
    except ValueError as exc:  # e.g. a worker slower than the SLA on a busy machine
        raise click.ClickException(f"the measured figures do not make a valid platform: {exc}"
                                   f"\n(measured: {rates} req/s per worker; is the machine busy? "
                                   f"or pass a larger --sla-s)") from None
    out.write_text(dump_profile(profile))
    for path, value, figure in profile.figure_table():
        if figure.source == "measured" and figure.date == today:
            click.echo(f"{path:32} {value!s:>10}   {figure.spread}")
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
