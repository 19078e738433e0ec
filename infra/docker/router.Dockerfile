# syntax=docker/dockerfile:1
# Libra router (libra-serve: API, router, controller). CPU only: it decodes the media and routes;
# the model runs on the workers and in Lambda. Build from the repository root:
#   docker build -f infra/docker/router.Dockerfile -t libra-router .
# With no other LIBRA_* settings it runs the embedded platform (local CPU workers and a local
# serverless pool, INT8), a smoke test of the image. It serves 0.0.0.0 only with API keys:
#   libra-serve keys new          # the key (for the client) and its entry
#   docker run -p 8000:8000 -e LIBRA_API_KEYS='<entry>' libra-router
# infra/terraform runs it with LIBRA_PROVISIONER=aws, LIBRA_SERVERLESS_DRIVER=aws and Redis.
# Versions come from constraints/*.txt (constraints/compile.sh). With ONNX files built already,
# skip the model stage (and torch): --build-context model=DIR, DIR holding opt/libra/onnx/
# (infra/images/build.sh --model does that).

ARG PYTHON_IMAGE=python:3.12-slim

# --- model: the manifest libra-serve reads, and the INT8 file its embedded mode runs
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
    && libra-model build --out /opt/libra/onnx --variant int8

# --- runtime: no torch
FROM ${PYTHON_IMAGE} AS runtime
ARG CONSTRAINTS=constraints/router.txt
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ${CONSTRAINTS} constraints.txt
COPY libra libra
COPY handlers handlers
COPY simulator simulator
# [cpu]: the embedded fleet of the smoke test runs the model here; in AWS only Lambda and the
# workers do, and '.[serve,aws]' would do (docs/benchmarks.md, "Installs")
RUN pip install -c constraints.txt '.[serve,cpu,aws]' && cd / && rm -rf /src
COPY --from=model /opt/libra/onnx /opt/libra/onnx
RUN useradd --system --no-create-home --uid 10001 libra
ENV LIBRA_MODEL_DIR=/opt/libra/onnx LIBRA_LOG_DIR=/tmp/libra-logs LIBRA_WORKER_CPU_PRECISION=int8
USER libra
WORKDIR /tmp
EXPOSE 8000
CMD ["libra-serve", "--host", "0.0.0.0", "--port", "8000"]
