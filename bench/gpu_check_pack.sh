#!/usr/bin/env bash
# Packs, on a machine with PyPI, what bench/gpu_check.sh needs on a GPU machine that has none
# (this workplace's device machine: python3 3.12 with numpy, onnxruntime for the CPU, torch, no
# network, 64 MiB of carried files per call). Writes, all ignored by git:
#   .whl/                   the worker's pure-Python dependencies missing there (+ pydantic-core),
#                           at the versions installed here, as cp312 wheels (a few MB)
#   .gpu/1 ... .gpu/N       the onnxruntime-gpu wheel (about 255 MB) in parts of $PART_MIB MiB,
#                           one folder per call; .gpu/1 also holds the wheel's SHA256SUMS
#   artifacts/onnx/fp16.onnx  built here if missing (`libra-model build --variant fp16`, 48 MB)
# and prints the sequence of device calls (docs/benchmarks.md, "GPU check: how to run it").
#
#   bash bench/gpu_check_pack.sh                      # ORT_GPU=onnxruntime-gpu==1.31.1 PART_MIB=50
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_GPU=${ORT_GPU:-onnxruntime-gpu==1.31.1}  # built for CUDA 13 / cuDNN 9: the device's torch
PART_MIB=${PART_MIB:-50}                      # + ~7 MB of working tree stays under 64 MiB a call

for ignored in /.whl/ /.gpu/; do
    grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >> .git/info/exclude
done

download() {  # folder, requirements...: cp312 manylinux wheels, no dependencies resolved
    local into=$1
    shift
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d "$into" "$@"
}

# 1. what the worker and the check import, less what the device image has in a version that
#    works (numpy, uvloop: binary, there) and the project itself (it runs from the tree)
rm -rf .whl && mkdir -p .whl
mapfile -t needed < <(python3 - <<'EOF'
import importlib.metadata as md
import sys

sys.path.insert(0, ".")
import bench.gpu_check  # noqa: F401  (imports the worker's chain too)
import handlers.worker  # noqa: F401

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

OPTIONAL = {"pygments", "rich", "orjson", "python-multipart", "watchfiles", "setuptools"}
THERE = {"numpy", "uvloop", "libra-serve"}
tops = {name.split(".")[0] for name in sys.modules} - set(sys.stdlib_module_names)
owners = md.packages_distributions()
todo = [d for top in tops for d in owners.get(top, [])]
found: dict[str, str] = {}
while todo:  # what was imported, and what those need at run time (httpcore, h11, ...)
    name = canonicalize_name(todo.pop())
    if name in found or name in OPTIONAL | THERE:
        continue
    found[name] = md.version(name)
    for line in md.requires(name) or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": "", "python_version": "3.12"}):
            todo.append(req.name)
for name, version in sorted(found.items()):
    print(f"{name}=={version}")
EOF
)
echo "wheels for .whl/: ${needed[*]}"
download .whl "${needed[@]}"

# 2. onnxruntime-gpu in parts, one folder per call
rm -rf .gpu && mkdir -p .gpu/whole
download .gpu/whole "$ORT_GPU"
wheel=$(cd .gpu/whole && ls onnxruntime_gpu-*.whl)
(cd .gpu/whole && sha256sum "$wheel" > SHA256SUMS && split -b "${PART_MIB}M" -d -a 2 "$wheel" "$wheel.part-")
n=0
for part in .gpu/whole/"$wheel".part-*; do
    n=$((n + 1))
    mkdir -p ".gpu/$n" && mv "$part" ".gpu/$n/"
done
mv .gpu/whole/SHA256SUMS .gpu/1/ && rm -rf .gpu/whole

# 3. the FP16 model (the check runs FP16 under CUDA)
if [ ! -f artifacts/onnx/fp16.onnx ]; then
    python3 -m libra.training.cli build --out artifacts/onnx --variant fp16
fi

du -sh .whl .gpu/* artifacts/onnx/fp16.onnx
cat <<EOF

Device calls, back to back (a machine stays warm 30 s after a call; see docs/benchmarks.md):
EOF
for i in $(seq 1 "$n"); do
    echo "  run(carry=[\".gpu/$i\"], timeout_s=120, command=\"mkdir -p .gpu/kept && mv .gpu/$i/* .gpu/kept/ && ls -l .gpu/kept\")"
done
echo "  run(carry=[\".whl\", \"artifacts/onnx/fp16.onnx\"], timeout_s=600, command=\"set -o pipefail; bash bench/gpu_check.sh --json \$OUT/gpu_check.json 2>&1 | tee \$OUT/gpu_check.log\")"
echo "  give_back()"
