"""What calibrated product fusion costs: `Recognizer.predict` (each modality run alone, tempered,
multiplied: up to three graph calls) against `predict_raw` (one call, the graph's own fusion).

ORT on the CPU with 1 intra-op thread (a Lambda vCPU), batch 1 and batch 16 of full requests
(3.5 s of audio, 8 face frames, a 20-token sentence: bench/model_variants.py's request), median of
`--runs` calls in interleaved rounds. Nothing is asserted; the figures go to docs/model.md:

    libra-model build && python bench/calibrated_fusion.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from model_variants import requests  # noqa: E402

from libra.runtime.recognizer import Recognizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "artifacts" / "onnx")
    parser.add_argument("--variant", action="append", default=None)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    full = requests()["full"]
    for variant in args.variant or ["int8", "fp32"]:
        rec = Recognizer(args.model_dir / f"{variant}.onnx", threads=1)
        print(f"{variant}: calibration {rec.calibration.fusion} "
              f"{dict(rec.calibration.temperatures)}")
        for batch in (1, 16):
            rows = [full] * batch
            times: dict[str, list[float]] = {"predict_raw": [], "predict": []}
            for _ in range(args.rounds):
                for name, measured in times.items():
                    fn = getattr(rec, name)
                    fn(rows)  # warm-up
                    for _ in range(args.runs if batch == 1 else max(args.runs // 4, 5)):
                        t0 = time.perf_counter()
                        fn(rows)
                        measured.append(1000 * (time.perf_counter() - t0))
            raw, cal = (statistics.median(times[k]) for k in ("predict_raw", "predict"))
            print(f"  batch {batch:2}: graph fusion {raw:7.1f} ms, calibrated product "
                  f"{cal:7.1f} ms ({cal / raw:.2f}x)")


if __name__ == "__main__":
    main()
