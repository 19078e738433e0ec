"""bench/gpu_check.sh runs end to end where no GPU is (its --cpu dry run: the same code path as
on the GPU, real worker processes, the CPU execution provider), and refuses a wheel that did not
arrive whole. Figures are printed, not asserted: only that every one was measured."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.sh"


def test_the_cpu_dry_run_measures_every_figure(built_models: tuple[Path, dict],
                                                tmp_path: Path) -> None:
    out, _ = built_models
    report = tmp_path / "gpu_check.json"
    done = subprocess.run(
        ["bash", str(SCRIPT), "--cpu", "--model-dir", str(out), "--seconds", "1", "--batch", "2",
         "--concurrency", "2", "--rate-rps", "2", "--json", str(report)],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(report.read_text())
    assert figures["device"] == "cpu"
    assert figures["model"]["cuda_ep_in_use"] is False
    assert figures["model"]["providers"] == ["CPUExecutionProvider"]
    assert figures["worker_devices"] == {"batch1": "cpu", "batched": "cpu", "fixed_rate": "cpu"}
    for run in ("worker_batch1", "worker_batched", "worker_fixed_rate"):
        assert figures[run]["requests"] > 0, run
        assert figures[run]["errors"] == 0, run
        assert figures[run]["p50_ms"] <= figures[run]["p99_ms"], run
    assert figures["model"]["batch1_p50_ms"] > 0
    for line in ("CUDA EP in use: NO", "model alone, int8 batch 1", "dynamic batching:",
                 "worker end to end at 2 req/s"):
        assert line in done.stdout


def test_a_wheel_missing_a_part_is_refused_before_installing(tmp_path: Path) -> None:
    """On the GPU path, with parts that do not add up to the wheel whose sha256 was sent."""
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider already: the script installs none")
    (tmp_path / "bench").mkdir()
    shutil.copy(SCRIPT, tmp_path / "bench" / "gpu_check.sh")
    kept = tmp_path / ".gpu" / "kept"
    kept.mkdir(parents=True)
    name = "onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl"
    whole = b"part one|part two|part three"
    (kept / "SHA256SUMS").write_text(f"{hashlib.sha256(whole).hexdigest()}  {name}\n")
    (kept / f"{name}.part-00").write_bytes(b"part one|")
    (kept / f"{name}.part-02").write_bytes(b"part three")  # part-01 never arrived
    done = subprocess.run(["bash", str(tmp_path / "bench" / "gpu_check.sh")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHON": sys.executable,
                               "LIBRA_GPU_SITE": str(tmp_path / "site")})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"gpu_check: {name} is incomplete: send the missing parts again" in done.stderr
    assert not (tmp_path / "site" / "onnxruntime").exists()
