"""`libra-load`: replay a request trace against a running `libra-serve`, print libra-sim's table.

    libra-load --trace traces/azure.csv --speedup 60 --duration 120 --max-requests 5000

The trace is read with the simulator's readers (`simulator.load_trace`, its public API); arrival
times are divided by `--speedup` and cut at `--duration` seconds of wall time and `--max-requests`.
Each arrival sends one `POST /predict` (a short text by default; `--audio` adds a 3 s clip) at its
time from an asyncio loop, without waiting for earlier answers (open loop, as real clients arrive).
At the end it reads the server's `/status` for cost and prints the same columns as `libra-sim`:
requests, SLA violations (latency over `--sla-s`, or no 200), latency percentiles, VM and
serverless cost, serverless share, peak VMs. """

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
import numpy as np

TEXTS = ("I can't believe you did that!", "That's wonderful news, congratulations!",
         "Leave me alone.", "Okay, see you tomorrow then.", "Oh no, what happened to him?",
         "Ugh, that smell is disgusting.", "Wait, you're getting married?!")


def wav_clip(seconds: float = 3.0, rate_hz: int = 16000) -> bytes:
    """A 3 s WAV of a gliding tone: real audio for the decoder, the same for every request."""
    import io

    import soundfile as sf

    t = np.arange(int(seconds * rate_hz)) / rate_hz
    wave = 0.3 * np.sin(2 * np.pi * (180 + 40 * t) * t)
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), rate_hz, format="WAV")
    return buf.getvalue()


@dataclass
class Outcome:
    sent_s: float
    latency_s: float
    status: int
    backend: str | None
    cold_start: bool = False


@dataclass
class LoadReport:
    outcomes: list[Outcome] = field(default_factory=list)
    peak_vms: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def result(self, policy: str, sla_s: float) -> Any:
        from simulator import PolicyResult

        ok = [o for o in self.outcomes if o.status == 200]
        lat = np.array([o.latency_s for o in self.outcomes]) if self.outcomes else np.zeros(1)
        violations = sum(o.status != 200 or o.latency_s > sla_s for o in self.outcomes)
        n = len(self.outcomes)
        served_vm = sum(o.backend == "vm" for o in ok)
        served_sls = sum(o.backend == "serverless" for o in ok)
        cost = self.status.get("cost_usd", {})
        vm_cost, sls_cost = float(cost.get("vm", 0.0)), float(cost.get("serverless", 0.0))
        return PolicyResult(
            policy=policy, requests=n, served_vm=served_vm, served_serverless=served_sls,
            dropped=n - len(ok), sla_violations=violations,
            sla_violation_pct=100 * violations / n if n else 0.0,
            p50_latency_s=float(np.percentile(lat, 50)),
            p95_latency_s=float(np.percentile(lat, 95)),
            p99_latency_s=float(np.percentile(lat, 99)), vm_cost_usd=vm_cost,
            serverless_cost_usd=sls_cost, total_cost_usd=vm_cost + sls_cost,
            serverless_share_pct=100 * served_sls / len(ok) if ok else 0.0,
            vm_hours=0.0, peak_vms=self.peak_vms,
            cold_starts=sum(o.cold_start for o in ok), throttled=0)


TIMELINE_FIELDS = ("t_s", "vms_ready", "vms_booting", "target_vms", "serverless_in_flight",
                   "serverless_cold_starts", "serverless_instances", "serverless_warm_target",
                   "routed_vm", "routed_serverless", "reason")


def timeline_row(t_s: float, status: dict[str, Any]) -> dict[str, Any]:
    """One poll of `/status` as a row with the columns `libra-sim --decisions` also has."""
    decision = status.get("decision") or {}
    routed = status.get("routed", {})
    return {"t_s": round(t_s, 2), "vms_ready": status["fleet"]["ready"],
            "vms_booting": status["fleet"]["booting"],
            "target_vms": decision.get("target_vms", ""),
            "serverless_in_flight": status["serverless"]["in_flight"],
            "serverless_cold_starts": status["serverless"]["cold_starts"],
            "serverless_instances": status["serverless"].get("instances", ""),
            "serverless_warm_target": status["serverless"].get("warm_target", ""),
            "routed_vm": routed.get("vm", 0), "routed_serverless": routed.get("serverless", 0),
            "reason": decision.get("reason", "")}


def write_timeline(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TIMELINE_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


async def replay(url: str, offsets_s: np.ndarray, bodies: list[dict[str, Any]],
                 timeout_s: float = 60.0, poll_s: float = 1.0) -> LoadReport:
    """Send one request per offset (seconds from now); returns every outcome."""
    report = LoadReport()
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        start = time.perf_counter()

        async def one(i: int, at_s: float) -> None:
            delay = at_s - (time.perf_counter() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            try:
                r = await client.post(f"{url}/predict", json=bodies[i % len(bodies)])
                body = r.json() if r.status_code == 200 else {}
                report.outcomes.append(Outcome(sent - start, time.perf_counter() - sent,
                                               r.status_code, body.get("backend"),
                                               bool(body.get("cold_start"))))
            except httpx.HTTPError:
                report.outcomes.append(Outcome(sent - start, time.perf_counter() - sent, 0,
                                               None))

        async def watch() -> None:
            while True:
                try:
                    status = (await client.get(f"{url}/status")).json()
                    fleet = status["fleet"]
                    report.peak_vms = max(report.peak_vms, fleet["ready"] + fleet["booting"])
                    report.timeline.append(timeline_row(time.perf_counter() - start, status))
                except (httpx.HTTPError, KeyError, ValueError, TypeError):
                    pass
                await asyncio.sleep(poll_s)

        watcher = asyncio.ensure_future(watch())
        await asyncio.gather(*(one(i, float(t)) for i, t in enumerate(offsets_s)))
        watcher.cancel()
        report.status = (await client.get(f"{url}/status")).json()
    report.outcomes.sort(key=lambda o: o.sent_s)
    return report


@click.command(name="libra-load", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="libra-serve", prog_name="libra-load")
@click.option("--trace", "trace_path", type=click.Path(exists=True, dir_okay=False,
                                                       path_type=Path), required=True)
@click.option("--url", default="http://127.0.0.1:8000", show_default=True)
@click.option("--speedup", type=float, default=1.0, show_default=True,
              help="Replay K times faster than the trace.")
@click.option("--duration", "duration_s", type=float, default=60.0, show_default=True,
              help="Wall seconds of replay at most.")
@click.option("--max-requests", type=int, default=10_000, show_default=True)
@click.option("--start-s", type=float, default=0.0, help="Trace time to start at.")
@click.option("--scale", type=float, default=1.0, help="Multiply the trace's rate.")
@click.option("--sla-s", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int, default=0)
@click.option("--audio", is_flag=True, help="Send a 3 s audio clip with each text.")
@click.option("--timeline", "timeline_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the server's fleet and decision, polled every second, to this CSV.")
def main(trace_path: Path, url: str, speedup: float, duration_s: float, max_requests: int,
         start_s: float, scale: float, sla_s: float, seed: int, audio: bool,
         timeline_path: Path | None) -> None:
    """Replay TRACE against a running libra-serve and print libra-sim's table."""
    from simulator import TraceFormatError, load_trace, table

    if speedup <= 0 or duration_s <= 0 or max_requests < 1:
        raise click.UsageError("--speedup and --duration must be positive, --max-requests >= 1")
    try:
        trace = load_trace(trace_path, scale=scale, seed=seed, start_s=start_s,
                           end_s=start_s + duration_s * speedup)
    except TraceFormatError as exc:
        raise click.ClickException(str(exc)) from None
    offsets = trace.arrivals_s[:max_requests] / speedup  # the reader starts the window at 0
    try:
        status = httpx.get(f"{url}/status", timeout=5).json()
    except httpx.HTTPError as exc:
        raise click.ClickException(f"no libra-serve at {url} ({exc})") from None
    bodies: list[dict[str, Any]] = [{"text": t} for t in TEXTS]
    if audio:
        import base64

        clip = base64.b64encode(wav_clip()).decode()
        bodies = [b | {"audio": clip} for b in bodies]
    click.echo(f"replaying {len(offsets):,} requests of {trace.name} over "
               f"{offsets[-1] if len(offsets) else 0:.0f} s against {url} "
               f"(policy {status.get('policy')})")
    report = asyncio.run(replay(url, offsets, bodies))
    click.echo(table([report.result(f"{status.get('policy')} (live)", sla_s)]))
    if timeline_path is not None:
        write_timeline(timeline_path, report.timeline)
        click.echo(f"timeline written to {timeline_path}")


if __name__ == "__main__":
    main()
