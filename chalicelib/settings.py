"""Env-var names and a typed Settings loaded once per process (Lambda or CLI)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

# Names of the environment variables the CDK pipeline stack sets on every function.
# infra/stacks/pipeline.py imports these constants, so the two sides cannot drift.
ENV_PIPELINE = "CONVEYOR_PIPELINE"
ENV_TABLE = "CONVEYOR_TABLE"
ENV_BUS = "CONVEYOR_EVENT_BUS"
ENV_BUCKET = "CONVEYOR_BUCKET"
ENV_STATE_MACHINE_ARN = "CONVEYOR_STATE_MACHINE_ARN"
ENV_SPEC_URI = "CONVEYOR_SPEC_URI"
ENV_JOB_DEFINITIONS = "CONVEYOR_JOB_DEFINITIONS"
ENV_JOB_QUEUES = "CONVEYOR_JOB_QUEUES"
ENV_INBOX_PREFIX = "CONVEYOR_INBOX_PREFIX"
ENV_RUNS_PREFIX = "CONVEYOR_RUNS_PREFIX"
ENV_VERSION_PARAMETER = "CONVEYOR_VERSION_PARAMETER"
ENV_LOG_GROUP = "CONVEYOR_LOG_GROUP"
# The one switch between AWS Batch and the embedded engine (read by chalicelib.aws_clients).
ENV_BATCH_ENDPOINT_URL = "BATCH_ENDPOINT_URL"


class SettingsError(ValueError):
    """An environment variable is missing or malformed; the message names it."""


def _json_map(env: Mapping[str, str], name: str) -> dict[str, str]:
    raw = env.get(name, "")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise SettingsError(f"{name}: expected a JSON object of strings, got invalid JSON ({err.msg})") from err
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise SettingsError(f"{name}: expected a JSON object of strings")
    return {str(k): v for k, v in value.items()}


@dataclass(frozen=True)
class Settings:
    """Everything a Lambda needs to find its resources; values come from the stack."""

    pipeline: str = ""
    table: str = ""
    event_bus: str = "default"
    bucket: str = ""
    state_machine_arn: str = ""
    spec_uri: str = ""
    inbox_prefix: str = "inbox/"
    runs_prefix: str = "runs/"
    version_parameter: str = ""
    log_group: str = "/aws/batch/job"
    batch_endpoint_url: str | None = None
    job_definitions: dict[str, str] = field(default_factory=dict)
    job_queues: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Reads the settings from ``env`` (default ``os.environ``).

        Raises:
            SettingsError: a JSON-valued variable is malformed.
        """
        env = os.environ if env is None else env
        return cls(
            pipeline=env.get(ENV_PIPELINE, ""),
            table=env.get(ENV_TABLE, ""),
            event_bus=env.get(ENV_BUS, "") or "default",
            bucket=env.get(ENV_BUCKET, ""),
            state_machine_arn=env.get(ENV_STATE_MACHINE_ARN, ""),
            spec_uri=env.get(ENV_SPEC_URI, ""),
            inbox_prefix=env.get(ENV_INBOX_PREFIX, "") or "inbox/",
            runs_prefix=env.get(ENV_RUNS_PREFIX, "") or "runs/",
            version_parameter=env.get(ENV_VERSION_PARAMETER, ""),
            log_group=env.get(ENV_LOG_GROUP, "") or "/aws/batch/job",
            batch_endpoint_url=env.get(ENV_BATCH_ENDPOINT_URL) or None,
            job_definitions=_json_map(env, ENV_JOB_DEFINITIONS),
            job_queues=_json_map(env, ENV_JOB_QUEUES),
        )

    def require(self, *names: str) -> None:
        """Raises SettingsError naming every listed attribute that is empty."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise SettingsError("missing settings: " + ", ".join(missing))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (Lambda containers are reused)."""
    return Settings.from_env()
