"""The only boto3 client factory; BATCH_ENDPOINT_URL -> endpoint_url for the Batch client."""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.settings import ENV_BATCH_ENDPOINT_URL

# Standard retry mode with a few attempts: Batch throttles SubmitJob at 50 TPS and
# answers 429; botocore's standard mode backs off with jitter on those.
_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"})


def client(service: str, *, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """Creates a boto3 client; the Batch client honours BATCH_ENDPOINT_URL.

    This is the one place that decides "AWS Batch or the embedded engine": with
    BATCH_ENDPOINT_URL set, the Batch client talks to `conveyor serve` on loopback.
    """
    if service == "batch" and endpoint_url is None:
        endpoint_url = os.environ.get(ENV_BATCH_ENDPOINT_URL) or None
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=_CONFIG)


def resource(service: str, *, region: str | None = None) -> Any:
    """Creates a boto3 resource (used for DynamoDB's typed Table API)."""
    return boto3.resource(service, region_name=region, config=_CONFIG)
