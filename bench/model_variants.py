"""ONNX variants side by side: file size, session creation, batch-1 latency, GPU throughput.

For each variant built by `libra-model build` (artifacts/onnx by default) it prints:
- size on disk;
- session creation time, median over `--repeats` (what a Lambda cold start pays on top of
  fetching the file);
- ORT CPU latency at batch 1 with 1 thread (one Lambda-like core), median over `--runs` calls,
  for a full request (3.5 s of audio, 8 face frames, a 20-token sentence) and a text-only one;
- with `--cuda` where onnxruntime-gpu sees a GPU: latency at batch 1 and throughput at batch 64
  under the CUDA execution provider.

Variants are measured in interleaved rounds (fp32, fp16, int8, int4, fp32, ...) so that noise on
a shared machine hits them alike and their ratios are fair. Nothing is asserted; the figures go
to docs/model.md with this command:

    libra-model build && python bench/model_variants.py
    python bench/model_variants.py --cuda --variant fp16 --variant fp32   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from libra.runtime.model_input import AudioInput, VideoInput  # noqa: E402
from libra.runtime.recognizer import ModelInput, Recognizer, assemble  # noqa: E402

VARIANTS = ("fp32", "fp16", "int8", "int4")


def requests(seed: int = 0) -> dict[str, ModelInput]:
    """A full request and a text-only one, with the shapes real inputs have."""
    rng = np.random.default_rng(seed)
    mel = np.full((64, 798), 0.0, np.float32)
    mel[:, :350] = rng.normal(-4, 3, (64, 350))  # 3.5 s at a 10 ms hop
    ids = np.zeros(64, np.int64)
    ids[:20] = np.r_[101, rng.integers(1000, 20000, 18), 102]
    text = (ids, (ids > 0).astype(np.int64))
    return {
        "full": ModelInput(audio=AudioInput(mel, 350, 3.5),
                           video=VideoInput(rng.random((8, 48, 48), dtype=np.float32), True,
                                            3.5, 105),
                           text=text),
        "text": ModelInput(text=text),
    }


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def bench_cpu(folder: Path, variants: list[str], repeats: int, runs: int, rounds: int
              ) -> dict[str, dict[str, float]]:
    feeds = {name: assemble([row]) for name, row in requests().items()}
    out: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    sessions = {}
    for _ in range(rounds):
        for v in variants:
            path = folder / f"{v}.onnx"
            creation = []
            for _ in range(repeats):
                started = time.perf_counter()
                sessions[v] = Recognizer(path, threads=1)
                creation.append(1000 * (time.perf_counter() - started))
            out[v].setdefault("session_ms", []).append(statistics.median(creation))
            for kind, f in feeds.items():
                rec = sessions[v]
                for _ in range(3):
                    rec.run(f)  # warm-up
                out[v].setdefault(f"{kind}_b1_ms", []).append(
                    median_ms(lambda r=rec, f=f: r.run(f), runs))
    return {v: {"mb": (folder / f"{v}.onnx").stat().st_size / 1e6,
                **{k: statistics.median(x) for k, x in m.items()}} for v, m in out.items()}


def bench_cuda(folder: Path, variants: list[str], runs: int) -> dict[str, dict[str, float]]:
    full = requests()["full"]
    out = {}
    one, many = assemble([full]), assemble([full] * 64)
    for v in variants:
        rec = Recognizer(folder / f"{v}.onnx", device="cuda")
        if rec.device != "cuda":
            print(f"{v}: no CUDA execution provider here ({rec.providers}); skipped")
            continue
        for _ in range(10):
            rec.run(one)
            rec.run(many)
        b1 = median_ms(lambda r=rec: r.run(one), runs)
        b64 = median_ms(lambda r=rec: r.run(many), max(runs // 4, 5))
        out[v] = {"cuda_b1_ms": b1, "cuda_b64_ms": b64, "cuda_b64_rps": 64_000 / b64}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-dir", type=Path, default=REPO / "artifacts" / "onnx")
    parser.add_argument("--variant", action="append", choices=VARIANTS)
    parser.add_argument("--repeats", type=int, default=5, help="session creations per round")
    parser.add_argument("--runs", type=int, default=40, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cuda", action="store_true", help="also measure the CUDA provider")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    variants = [v for v in (args.variant or VARIANTS) if (args.onnx_dir / f"{v}.onnx").is_file()]
    if not variants:
        sys.exit(f"{args.onnx_dir} has no ONNX variants: run `libra-model build` first")
    print(f"{platform.processor() or platform.machine()}, {len(variants)} variants, "
          f"{args.rounds} rounds x {args.runs} calls (medians)")
    figures = bench_cpu(args.onnx_dir, variants, args.repeats, args.runs, args.rounds)
    if args.cuda:
        for v, m in bench_cuda(args.onnx_dir, variants, args.runs).items():
            figures[v] |= m
    ref = figures.get("fp32")
    print(f"{'variant':8} {'MB':>7} {'session ms':>11} {'full b1 ms':>11} {'text b1 ms':>11} "
          f"{'x fp32':>7}")
    for v, m in figures.items():
        ratio = f"{ref['full_b1_ms'] / m['full_b1_ms']:7.2f}" if ref else ""
        print(f"{v:8} {m['mb']:7.1f} {m['session_ms']:11.1f} {m['full_b1_ms']:11.2f} "
              f"{m['text_b1_ms']:11.2f} {ratio}")
        if "cuda_b1_ms" in m:
            print(f"{'':8} CUDA: batch 1 {m['cuda_b1_ms']:.2f} ms, batch 64 "
                  f"{m['cuda_b64_ms']:.2f} ms ({m['cuda_b64_rps']:.0f} requests/s)")
    print("x fp32: fp32's full-request latency over this variant's (above 1 is faster)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
