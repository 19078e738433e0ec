"""The GPU check: the FP16 model under ONNX Runtime's CUDA execution provider, alone and behind
the real worker, in one run that prints every figure docs/benchmarks.md asks for.

Run it through `bench/gpu_check.sh` (which installs the carried wheels and finds the CUDA
libraries first; "GPU check: how to run it" in docs/benchmarks.md); `--cpu` runs the same
measurements on the CPU execution provider with short durations, to test the script anywhere.

1. the session: which execution providers it got (the CUDA one must come first: ONNX Runtime
   falls back to the CPU silently when a CUDA library fails to load);
2. the model alone (`Recognizer`, no HTTP): batch-1 latency p50/p99 of a full request (3.5 s of
   audio, 8 face frames, a 20-token sentence), and requests/s at batch 1 and at `--batch`;
3. the worker (`handlers.worker` processes, HTTP + the dynamic batcher), driven closed-loop by
   `--concurrency` clients spread over `--client-procs` processes: requests/s with
   `--max-batch-size 1` against dynamic batching (`--batch`, `--delay-ms`), and their ratio
   (target: at least 5x);
4. the batching worker end to end at a fixed open-loop rate (`--rate-rps` for `--seconds`):
   p50/p99 latency timed from each request's scheduled send (client queueing counts), the rate
   achieved and the errors.

Nothing is asserted; the exit status is 1 when CUDA was asked for and not used (then the figures
would be CPU figures), else 0. `--json PATH` writes the figures as well.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.model_variants import requests  # noqa: E402
from libra.runtime.home import default_model_dir  # noqa: E402
from libra.runtime.payload import encode_input  # noqa: E402
from libra.runtime.recognizer import Recognizer  # noqa: E402

CUDA_EP = "CUDAExecutionProvider"


def machine() -> str:
    """The GPU and driver (nvidia-smi), else the CPU: the card is named with every figure."""
    if shutil.which("nvidia-smi"):
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=30, check=False)
        if done.returncode == 0 and done.stdout.strip():
            return "GPU " + done.stdout.strip().splitlines()[0]
    return f"CPU {platform.processor() or platform.machine()}"


def percentile_ms(seconds: list[float], q: float) -> float:
    return 1000 * float(np.percentile(seconds, q)) if seconds else float("nan")


# ------------------------------------------------------------------------------ the model alone


def model_figures(model: Path, device: str, batch: int, seconds: float) -> dict[str, Any]:
    """Latency at batch 1 and requests/s at batch 1 and `batch`, in this process."""
    import onnxruntime as ort

    started = time.perf_counter()
    recognizer = Recognizer(model, device=device)
    session_s = time.perf_counter() - started
    row = requests()["full"]
    for rows in ([row], [row] * batch):  # warm-up: CUDA kernels, cuDNN autotuning, arenas
        for _ in range(5):
            recognizer.predict(rows)

    def timed(rows: list[Any]) -> list[float]:
        times, stop = [], time.perf_counter() + seconds
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            recognizer.predict(rows)
            times.append(time.perf_counter() - t0)
        return times

    one = timed([row])
    many = timed([row] * batch)
    figures = {
        "onnxruntime": ort.__version__, "model": str(model),
        "precision": recognizer.info.precision, "providers": list(recognizer.providers),
        "cuda_ep_in_use": recognizer.providers[0] == CUDA_EP,
        "session_create_s": round(session_s, 3),
        "batch1_p50_ms": round(percentile_ms(one, 50), 3),
        "batch1_p99_ms": round(percentile_ms(one, 99), 3),
        "batch1_rps": round(len(one) / sum(one), 1),
        "batch": batch,
        "batchN_p50_ms": round(percentile_ms(many, 50), 3),
        "batchN_rps": round(batch * len(many) / sum(many), 1),
    }
    figures["model_batching_speedup"] = round(figures["batchN_rps"] / figures["batch1_rps"], 2)
    return figures  # the session goes with this frame: its GPU memory is free for the workers


# ---------------------------------------------------------------------------------- the worker


async def _closed(url: str, body: bytes, concurrency: int, start_at: float, seconds: float
                  ) -> tuple[list[float], int]:
    import httpx

    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(
            max_connections=concurrency, max_keepalive_connections=concurrency)) as client:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        stop = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await client.post(f"{url}/infer", content=body,
                                      headers={"content-type": "application/json"})
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return latencies, errors


async def _open(url: str, body: bytes, rate_rps: float, offset_s: float, start_at: float,
                seconds: float) -> tuple[list[float], int]:
    """Send at a fixed rate whatever the answers do; latency from the scheduled send."""
    import httpx

    latencies: list[float] = []
    errors = 0
    n = int(seconds * rate_rps)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1000)) as client:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        t_start = time.perf_counter()

        async def one(due: float) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            r = await client.post(f"{url}/infer", content=body,
                                  headers={"content-type": "application/json"})
            if r.status_code == 200:
                latencies.append(time.perf_counter() - due)
            else:
                errors += 1

        await asyncio.gather(*(one(t_start + offset_s + i / rate_rps) for i in range(n)))
    return latencies, errors


def _client(args: tuple[str, Any]) -> tuple[list[float], int]:
    kind, params = args
    import uvloop

    uvloop.install()
    return asyncio.run(_closed(*params) if kind == "closed" else _open(*params))


def drive(kind: str, url: str, body: bytes, procs: int, seconds: float, *, concurrency: int = 0,
          rate_rps: float = 0.0) -> dict[str, Any]:
    """Load from `procs` client processes (one Python process cannot keep a GPU worker busy)."""
    start_at = time.time() + 2.0  # every client process starts at the same moment
    if kind == "closed":
        parts = [("closed", (url, body, max(1, concurrency // procs), start_at, seconds))
                 for _ in range(procs)]
    else:
        parts = [("open", (url, body, rate_rps / procs, i / rate_rps, start_at, seconds))
                 for i in range(procs)]
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        results = pool.map(_client, parts)
    latencies = [x for lat, _ in results for x in lat]
    errors = sum(e for _, e in results)
    return {"requests": len(latencies), "errors": errors,
            "rps": round(len(latencies) / seconds, 1),
            "p50_ms": round(percentile_ms(latencies, 50), 2),
            "p99_ms": round(percentile_ms(latencies, 99), 2)}


def with_worker(model: Path, device: str, max_batch: int, delay_ms: float, tmp: Path,
                fn: Any) -> tuple[str, Any]:
    """Start a real `handlers.worker`, run `fn(url)` against it, drain it."""
    import httpx

    from libra.serving.provision.worker_process import WorkerProcess

    extra = ("--device", device, "--max-batch-size", str(max_batch),
             "--max-batch-delay-ms", str(delay_ms if max_batch > 1 else 0))
    worker = WorkerProcess(model, log_dir=tmp, extra_args=extra)
    try:
        url = worker.wait_ready(300)
        got = httpx.get(f"{url}/readyz", timeout=30).json().get("device", "?")
        return got, fn(url)
    finally:
        worker.drain()
        worker.wait(30)
        worker.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--cpu", "cpu_mode", is_flag=True,
              help="the CPU execution provider, short runs: a dry run of the script anywhere")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path),
              default=default_model_dir, show_default="$LIBRA_HOME/onnx or artifacts/onnx")
@click.option("--cpu-precision", type=click.Choice(["fp32", "int8"]), default="int8",
              show_default=True, help="the variant --cpu runs (the GPU runs fp16)")
@click.option("--batch", type=int, default=None, help="max batch size [64; --cpu 8]")
@click.option("--delay-ms", type=float, default=2.0, show_default=True,
              help="the batcher's max delay")
@click.option("--concurrency", type=int, default=None, help="closed-loop clients [256; --cpu 8]")
@click.option("--client-procs", type=int, default=None, help="client processes [4; --cpu 1]")
@click.option("--rate-rps", type=float, default=None, help="the fixed rate [200; --cpu 4]")
@click.option("--seconds", type=float, default=None, help="each run's length [15; --cpu 3]")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="also write the figures here")
def main(cpu_mode: bool, model_dir: Path, cpu_precision: str, batch: int | None, delay_ms: float,
         concurrency: int | None, client_procs: int | None, rate_rps: float | None,
         seconds: float | None, json_path: Path | None) -> None:
    """Print the GPU check's figures (see the module docstring)."""
    t0 = time.perf_counter()
    device = "cpu" if cpu_mode else "cuda"
    batch = batch or (8 if cpu_mode else 64)
    concurrency = concurrency or (8 if cpu_mode else 256)
    procs = client_procs or (1 if cpu_mode else 4)
    rate_rps = rate_rps or (4.0 if cpu_mode else 200.0)
    seconds = seconds or (3.0 if cpu_mode else 15.0)
    model = model_dir / f"{cpu_precision if cpu_mode else 'fp16'}.onnx"
    if not model.is_file():
        raise click.ClickException(f"no {model}: run `libra-model build` (or carry it there)")
    report: dict[str, Any] = {"machine": machine(), "device": device}
    print(f"GPU check on {report['machine']} ({'--cpu dry run' if cpu_mode else 'CUDA'})",
          flush=True)

    report["model"] = m = model_figures(model, device, batch, seconds)
    print(f"onnxruntime {m['onnxruntime']}, {model.name}: providers {', '.join(m['providers'])}"
          f" -> CUDA EP in use: {'yes' if m['cuda_ep_in_use'] else 'NO'}", flush=True)
    print(f"model alone, {m['precision']} batch 1 (full request): p50 {m['batch1_p50_ms']} ms, "
          f"p99 {m['batch1_p99_ms']} ms; {m['batch1_rps']} req/s", flush=True)
    print(f"model alone, batch {batch}: {m['batchN_rps']} req/s ({m['model_batching_speedup']}x "
          f"batch 1), p50 {m['batchN_p50_ms']} ms a batch", flush=True)

    body = json.dumps({"request_id": "gpu-check",
                       "inputs": encode_input(requests()["full"])}).encode()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        devices = {}
        for name, size in (("batch1", 1), ("batched", batch)):
            devices[name], report[f"worker_{name}"] = with_worker(
                model, device, size, delay_ms, tmp,
                lambda url: drive("closed", url, body, procs, seconds, concurrency=concurrency))
        devices["fixed_rate"], report["worker_fixed_rate"] = with_worker(
            model, device, batch, delay_ms, tmp,
            lambda url: drive("open", url, body, procs, seconds, rate_rps=rate_rps))
    report["worker_devices"] = devices
    one, many = report["worker_batch1"], report["worker_batched"]
    speedup = many["rps"] / one["rps"] if one["rps"] else float("nan")
    report["worker_batching_speedup"] = round(speedup, 2)
    print(f"worker, {concurrency} closed-loop clients in {procs} processes, {seconds:g} s each "
          f"(worker devices: {', '.join(f'{k} {v}' for k, v in devices.items())}):", flush=True)
    print(f"  max batch 1:   {one['rps']} req/s, p50 {one['p50_ms']} ms, errors {one['errors']}")
    print(f"  max batch {batch:<3} {many['rps']} req/s, p50 {many['p50_ms']} ms, errors "
          f"{many['errors']} (delay {delay_ms:g} ms)")
    print(f"  dynamic batching: {speedup:.2f}x batch 1 (target >= 5x: "
          f"{'met' if speedup >= 5 else 'NOT met'})")
    f = report["worker_fixed_rate"]
    print(f"worker end to end at {rate_rps:g} req/s for {seconds:g} s (open loop): p50 "
          f"{f['p50_ms']} ms, p99 {f['p99_ms']} ms, {f['rps']} req/s answered, "
          f"errors {f['errors']}")
    report["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(f"elapsed {report['elapsed_s']} s", flush=True)
    if json_path:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    used_cuda = m["cuda_ep_in_use"] and set(devices.values()) == {"cuda"}
    if not cpu_mode and not used_cuda:
        raise SystemExit("CUDA was asked for and not used: the figures above are CPU figures "
                         "(see ONNX Runtime's warnings above for the library that failed)")


if __name__ == "__main__":
    main()
