# syntax=docker/dockerfile:1
# Libra serverless inference for AWS Lambda (handlers/lambda_function.py): the INT8 model on ONNX
# Runtime's CPU provider, loaded once per instance at INIT. Build from the repository root:
#   docker build --platform linux/amd64 -f infra/docker/lambda.Dockerfile -t libra-lambda .
# Try it locally with the runtime interface emulator that the base image carries:
#   docker run -p 9000:8080 libra-lambda
#   curl -s localhost:9000/2015-03-31/functions/function/invocations -d '{"inputs": ...}'
# Versions come from constraints/*.txt (constraints/compile.sh). With ONNX files built already,
# skip the model stage (and torch): --build-context model=DIR, DIR holding opt/libra/onnx/
# (infra/images/build.sh --model does that). LAMBDA_IMAGE: another base providing the Lambda
# runtime interface client (infra/images/lambda-stand-in.Dockerfile, where ECR cannot be reached).

ARG PYTHON_IMAGE=python:3.12-slim
ARG LAMBDA_IMAGE=public.ecr.aws/lambda/python:3.12

# --- model: `libra-model build` from the bundled weights; torch stays in this stage.
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

# --- the function: AWS's Python 3.12 base (Amazon Linux 2023; boto3 is in its runtime), the
# package with the `lambda` extra (numpy + onnxruntime: no torch, no media decoder) in the task root.
FROM ${LAMBDA_IMAGE}
ARG CONSTRAINTS=constraints/lambda.txt
COPY pyproject.toml README.md /tmp/src/
COPY ${CONSTRAINTS} /tmp/src/constraints.txt
COPY libra /tmp/src/libra
COPY handlers /tmp/src/handlers
COPY simulator /tmp/src/simulator
RUN pip install --no-cache-dir -c /tmp/src/constraints.txt --target "${LAMBDA_TASK_ROOT}" \
        '/tmp/src[lambda]' \
    && rm -rf /tmp/src
COPY --from=model /opt/libra/onnx/int8.onnx /opt/libra/int8.onnx
# Read by the handler at INIT; infra/terraform sets the same on the function.
ENV LIBRA_MODEL_PATH=/opt/libra/int8.onnx LIBRA_ORT_THREADS=1
CMD ["handlers.lambda_function.handler"]
