#!/usr/bin/env bash
# The GPU check in one command: install what the GPU machine lacks from what was carried to it,
# find its CUDA libraries, then run bench/gpu_check.py, which prints the CUDA EP in use, FP16
# batch-1 latency, throughput at batch 1 and with dynamic batching, and the worker's end-to-end
# p50/p99 at a fixed rate (about 3 minutes on a GPU; docs/benchmarks.md, "GPU check").
#
#   bash bench/gpu_check.sh [--json FILE] [gpu_check.py options]   # on the GPU machine
#   bash bench/gpu_check.sh --cpu                                    # a dry run, anywhere
#
# No network needed: onnxruntime-gpu comes from .gpu/kept/ (parts, joined and checked against
# SHA256SUMS) or a whole wheel in .whl/, the worker's missing dependencies from .whl/ (both made
# by bench/gpu_check_pack.sh), installed with --target into $LIBRA_GPU_SITE, which goes first on
# PYTHONPATH so that its onnxruntime hides a CPU-only one already installed. CUDA and cuDNN are
# the NVIDIA pip wheels already there (the ones torch uses), put on LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=${LIBRA_GPU_SITE:-/tmp/libra-gpu-site}
export PYTHONUNBUFFERED=1

cuda_ep() {  # does the onnxruntime this python imports offer the CUDA execution provider?
    PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c 'import sys, onnxruntime as o
sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' 2>/dev/null
}

if [[ " $* " != *" --cpu "* ]]; then
    mkdir -p "$SITE"
    if ! cuda_ep; then
        wheels=()
        if compgen -G ".gpu/kept/onnxruntime_gpu-*.whl.part-*" >/dev/null; then
            first=$(ls .gpu/kept/onnxruntime_gpu-*.whl.part-* | head -n 1)
            name=$(basename "${first%.part-*}")
            mkdir -p /tmp/libra-gpu-wheel
            cat .gpu/kept/"$name".part-* > "/tmp/libra-gpu-wheel/$name"
            (cd /tmp/libra-gpu-wheel && sha256sum -c "$OLDPWD/.gpu/kept/SHA256SUMS") \
                || { echo "gpu_check: $name is incomplete: send the missing parts again" >&2; exit 2; }
            wheels+=("/tmp/libra-gpu-wheel/$name")
        fi
        wheels+=(.whl/*.whl)
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "${wheels[@]}"
    fi
    export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    # every folder of shared libraries the NVIDIA wheels put under site-packages/nvidia
    nv=$("$PY" - <<'EOF'
import pathlib, site, sys
roots = [pathlib.Path(p) / "nvidia" for p in site.getsitepackages() + sys.path if p]
dirs = {str(f.parent) for r in roots if r.is_dir() for f in r.rglob("lib*.so*")}
print(":".join(sorted(dirs)))
EOF
)
    export LD_LIBRARY_PATH="$nv${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    cuda_ep || { echo "gpu_check: this onnxruntime offers no CUDA execution provider:" >&2
                 "$PY" -c 'import onnxruntime as o; print(o.__file__, o.get_available_providers())' >&2
                 exit 2; }
    if [ ! -f artifacts/onnx/fp16.onnx ]; then  # not carried: build it, where torch is there
        "$PY" -m libra.training.cli build --out artifacts/onnx --variant fp16
    fi
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv
fi
"$PY" -c 'import fastapi, uvicorn, pydantic, httpx, uvloop, click, onnxruntime' \
    || { echo "gpu_check: a dependency is missing: see bench/gpu_check_pack.sh" >&2; exit 2; }
exec "$PY" bench/gpu_check.py --model-dir artifacts/onnx "$@"
