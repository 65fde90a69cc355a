"""Shared test set-up: markers by folder, dummy AWS credentials, no real AWS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the suite may reach AWS: dummy credentials, a fixed region, no IMDS.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ["AWS_DEFAULT_REGION"] = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_DISABLE_VERSION_CHECK", "1")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")

TESTS_ROOT = Path(__file__).parent
FOLDER_MARKERS = {"integration": "integration", "e2e": "e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_aws = os.environ.get("CONVEYOR_AWS_TESTS") == "1"
    skip_aws = pytest.mark.skip(reason="needs a real AWS account (set CONVEYOR_AWS_TESTS=1)")
    for item in items:
        parts = Path(str(item.fspath)).relative_to(TESTS_ROOT).parts
        if parts and parts[0] in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, FOLDER_MARKERS[parts[0]]))
        # The marker itself, not `item.keywords`: keywords also hold every folder name on the
        # path, so a checkout in a folder named `aws` skipped every test.
        if item.get_closest_marker("aws") is not None and not run_aws:
            item.add_marker(skip_aws)
