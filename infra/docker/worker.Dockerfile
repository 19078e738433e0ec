# syntax=docker/dockerfile:1
# Libra GPU worker (handlers/worker.py): ONNX Runtime with the CUDA execution provider, serving
# the FP16 model. Build from the repository root:
#   docker build -f infra/docker/worker.Dockerfile -t libra-worker .
# Run on a host with the NVIDIA driver and container toolkit:
#   docker run --gpus all -p 8101:8101 libra-worker
# CUDA and cuDNN come from PyPI wheels beside onnxruntime-gpu (its `cuda` and `cudnn` extras), so
# the base image needs no CUDA and the host only the driver: onnxruntime-gpu 1.27 and later are
# built for CUDA 13 (driver >= 580); on an older driver build with
#   --build-arg ORT_GPU="onnxruntime-gpu[cuda,cudnn]==1.26.0" \
#   --build-arg CONSTRAINTS=constraints/worker-cuda12.txt           (CUDA 12, driver >= 525)
# Versions come from constraints/*.txt (constraints/compile.sh). With ONNX files built already,
# skip the model stage (and torch): --build-context model=DIR, DIR holding opt/libra/onnx/
# (infra/images/build.sh --model does that).

ARG PYTHON_IMAGE=python:3.12-slim

# --- model: `libra-model build` exports the ONNX files from the weights bundled in the repo
# (no data, no training, ~20 s); torch is needed for that and stays in this stage.
FROM ${PYTHON_IMAGE} AS model
# where the CPU build of torch comes from (another index, or --find-links to a folder of wheels)
ARG TORCH_SOURCE="--index-url https://download.pytorch.org/whl/cpu"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# torch alone from PyTorch's CPU index; its dependencies come from PyPI below, pinned
RUN pip install --no-deps ${TORCH_SOURCE} torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md constraints/model.txt ./
COPY libra libra
COPY handlers handlers
COPY simulator simulator
RUN pip install -c model.txt '.[train,cpu]' \
    && libra-model build --out /opt/libra/onnx --variant fp16

# --- runtime: no torch, no media decoder, onnxruntime-gpu as the only ONNX Runtime
FROM ${PYTHON_IMAGE} AS runtime
ARG ORT_GPU="onnxruntime-gpu[cuda,cudnn]"
ARG CONSTRAINTS=constraints/worker.txt
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ${CONSTRAINTS} constraints.txt
COPY libra libra
COPY handlers handlers
COPY simulator simulator
# The `worker` extra has no ONNX Runtime of its own: the GPU one is the only one installed
# (both wheels would write the same `onnxruntime` module).
RUN pip install -c constraints.txt '.[worker]' "${ORT_GPU}" \
    && cd / && rm -rf /src
# The CUDA libraries live in site-packages/nvidia/*/lib: put them on the loader's path (cuDNN
# is opened at run time), then fail the build if the CUDA provider would miss anything but the
# driver's libcuda, which the NVIDIA container toolkit mounts at run time.
RUN SITE="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && find "$SITE/nvidia" -name 'lib*.so*' -printf '%h\n' | sort -u > /etc/ld.so.conf.d/libra-nvidia.conf \
    && ldconfig \
    && python -c "import onnxruntime as ort; assert 'CUDAExecutionProvider' in ort.get_available_providers(), ort.get_available_providers()" \
    && ! (ldd "$SITE/onnxruntime/capi/libonnxruntime_providers_cuda.so" | grep 'not found' | grep -v 'libcuda\.so\.1')
COPY --from=model /opt/libra/onnx /opt/libra/onnx
RUN useradd --system --no-create-home --uid 10001 libra
USER libra
WORKDIR /tmp
EXPOSE 8101
ENTRYPOINT ["libra-worker", "--model", "/opt/libra/onnx"]
# infra/terraform's user_data replaces these with the private IP, instance id and batching flags.
CMD ["--host", "0.0.0.0", "--port", "8101"]
