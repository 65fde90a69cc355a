"""Shared powertools Logger/Tracer/Metrics, one of each per process."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "conveyor")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Conveyor")

logger = Logger(service=SERVICE)
# Tracing is off outside Lambda (no X-Ray daemon); powertools reads POWERTOOLS_TRACE_DISABLED
# and auto-disables when not in a Lambda runtime, so tests and the CLI pay nothing.
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)
