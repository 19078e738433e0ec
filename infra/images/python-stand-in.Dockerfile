# syntax=docker/dockerfile:1
# Stand-in for python:3.12-slim where Docker Hub cannot be reached (this project's build
# machines reach only PyPI and Debian's mirror): Debian 12's Python 3.11 in a virtual
# environment first on PATH, so that `python` and `pip` behave as in the official image (pip
# installs system-wide for root, `python -m venv` not needed). build.sh --stand-in builds it
# FROM a Debian rootfs that debootstrap fetched; the images' own Dockerfiles take it through
# their PYTHON_IMAGE build argument. Users with Docker Hub never need this file.
ARG DEBIAN_IMAGE=localhost/libra-stand-in/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && python3 -m venv /usr/local/python \
    && /usr/local/python/bin/pip install --no-cache-dir --upgrade pip \
    && find /usr/local/python -name __pycache__ -prune -exec rm -rf {} +
ENV PATH=/usr/local/python/bin:$PATH LANG=C.UTF-8
CMD ["python"]
