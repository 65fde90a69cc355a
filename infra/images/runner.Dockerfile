# Adds Conveyor's runner to a public image named by a stage's `image:` (infra/constructs/images.py).
#
# Every job command starts with `python -m chalicelib.runner`, which stages the item's
# inputs from S3, runs the stage's command and publishes {out} atomically. The base image
# keeps its own user, tools and Python; the runner and boto3 (pure Python, installed in a
# separate stage so the base needs neither pip nor network) go under /opt/conveyor.
#
# Build context: the repository root, reduced by CDK to the runner's files and this file.
# Built by `cdk deploy` for linux/amd64, the architecture of the compute environments.

ARG BASE_IMAGE
FROM public.ecr.aws/docker/library/python:3.11-slim AS deps
RUN pip install --no-cache-dir --target /deps "boto3>=1.34"

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG CONVEYOR_VERSION=dev
LABEL org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.opencontainers.image.version="${CONVEYOR_VERSION}"
COPY --from=deps /deps /opt/conveyor/deps
COPY chalicelib /opt/conveyor/chalicelib
ENV PYTHONPATH=/opt/conveyor:/opt/conveyor/deps${PYTHONPATH:+:${PYTHONPATH}}
# The runner needs `python` >= 3.11 on PATH; an image without it fails here, by name.
RUN python -c "import sys; sys.exit(sys.version_info < (3, 11))" \
 || (echo "conveyor: ${BASE_IMAGE} has no python >= 3.11 on PATH; Conveyor's runner cannot run in it. Use build: with a Dockerfile FROM ${BASE_IMAGE} that installs Python 3.11+." >&2; exit 1)
RUN python -c "import chalicelib.runner.main, boto3"
