# syntax=docker/dockerfile:1
# Stand-in for public.ecr.aws/lambda/python:3.12 where ECR Public cannot be reached: the Python
# stand-in (python-stand-in.Dockerfile) plus what AWS's base image provides to a function, i.e.
# the runtime interface client (awslambdaric, the same client AWS's image runs), boto3 (in
# AWS's runtime), LAMBDA_TASK_ROOT=/var/task and an entry point that takes the handler as CMD.
# lambda.Dockerfile takes it through its LAMBDA_IMAGE build argument; AWS's base image runs on
# Amazon Linux 2023 and is larger (about 0.5 GB), so sizes measured on this one are of our
# layers, not of the deployed image (docs/benchmarks.md, "Images").
ARG PYTHON_IMAGE=localhost/libra-stand-in/python:3.11
FROM ${PYTHON_IMAGE}
RUN pip install --no-cache-dir awslambdaric boto3 \
    && find /usr/local/python -name __pycache__ -prune -exec rm -rf {} +
ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime
WORKDIR /var/task
ENTRYPOINT ["python", "-m", "awslambdaric"]
