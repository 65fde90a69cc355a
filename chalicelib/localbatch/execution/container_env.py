"""What a job sees: the environment of a Batch container, built without the engine's own.

A job gets what Batch and ECS give a container and nothing of the host unless the user
passes it (``conveyor serve --pass-env``):

- a minimal ``PATH`` (Docker's default), ``HOME`` (the attempt's scratch folder, so the
  host user's ``~/.aws`` is not read), ``LANG``;
- ``AWS_EXECUTION_ENV`` (``AWS_ECS_EC2``, ``AWS_ECS_FARGATE`` on a Fargate compute
  environment), ``AWS_REGION`` and ``AWS_DEFAULT_REGION``;
- ``ECS_CONTAINER_METADATA_URI_V4`` (and the v3 one) answered by the engine's task endpoint,
  and ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` where the user configured credentials for the
  job's ``jobRoleArn`` (see task_endpoints.py);
- the scheduler's ``AWS_BATCH_*`` variables and the job definition's and overrides' variables;
- ``CUDA_VISIBLE_DEVICES`` only for a job given GPUs.

The interpreter comes from the image (runtime_images.py), never from the engine's PATH.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.localbatch import arns
from chalicelib.localbatch.execution.runtime_images import RuntimeImages

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Always the engine's to set: a job definition cannot forge where its credentials come from.
_ENGINE_OWNED = ("ECS_CONTAINER_METADATA_URI_V4", "ECS_CONTAINER_METADATA_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_AUTHORIZATION_TOKEN")


@dataclass(frozen=True)
class JobFacts:
    """What the engine knows of the job behind an attempt, beyond the launch request."""

    job_id: str
    job_name: str = ""
    queue: str = ""
    compute_environment: str = ""
    fargate: bool = False
    job_role_arn: str | None = None
    log_stream: str = ""
    array_size: int | None = None


JobLookup = Callable[[str], "JobFacts | None"]


@dataclass(frozen=True)
class ContainerOptions:
    """The user's choices about job environments (``conveyor serve`` options)."""

    region: str = arns.REGION
    pass_env: tuple[str, ...] = ()  # host variables handed to every job, by name
    credentials: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # role ARN or "*" -> keys
    # `python -m MODULE` jobs started from a warm launcher ("MODULE[:PRELOAD,...]"; see warm_launches.py)
    warm_modules: tuple[str, ...] = ()


def host_variables(names: tuple[str, ...], environ: Mapping[str, str]) -> dict[str, str]:
    """The named host variables that are set (``--pass-env``)."""
    return {name: environ[name] for name in names if name in environ}


class ContainerEnvironment:
    """Builds each attempt's environment; owns the runtime images and the task endpoint's table."""

    def __init__(self, options: ContainerOptions, runtime_root: str, endpoints: Any = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.options = options
        self.images = RuntimeImages(runtime_root)
        self.endpoints = endpoints  # a TaskEndpoints, or None: no metadata or credentials endpoint
        self.lookup: JobLookup = lambda job_id: None
        base = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "AWS_EXECUTION_ENV": "AWS_ECS_EC2",
                "AWS_REGION": options.region, "AWS_DEFAULT_REGION": options.region}
        base.update(host_variables(options.pass_env, os.environ if environ is None else environ))
        self.base: dict[str, str] = base

    def overlay(self, request: Any, image_dir: str | None) -> dict[str, str]:
        """The attempt's variables on top of ``self.base`` (a request variable wins over base).

        Raises:
            OSError: the image's runtime folder cannot be made.
        """
        env = dict(request.env)
        if not request.gpu_ids and env.get("CUDA_VISIBLE_DEVICES") == "":
            del env["CUDA_VISIBLE_DEVICES"]  # as ECS leaves it: unset without GPUs
        for name in _ENGINE_OWNED:
            env.pop(name, None)
        env.setdefault("HOME", request.workdir)
        job_id = env.get("AWS_BATCH_JOB_ID", "")
        facts = self.lookup(job_id) if job_id else None
        if facts is not None and facts.fargate:
            env.setdefault("AWS_EXECUTION_ENV", "AWS_ECS_FARGATE")
        if self.endpoints is not None:
            env.update(self.endpoints.register(request, facts))
        runtime_bin = self.images.bin_dir(request.image or "")
        path = env.get("PATH", self.base["PATH"])
        if image_dir is not None:
            env["PATH"] = f"{image_dir}:{runtime_bin}:{path}"
            env["PYTHONPATH"] = f"{image_dir}:{env['PYTHONPATH']}" if env.get("PYTHONPATH") else image_dir
        else:
            env["PATH"] = f"{runtime_bin}:{path}"
        if request.gpu_ids and "CUDA_VISIBLE_DEVICES" not in env:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in request.gpu_ids)
        return env

    def release(self, attempt_key: str) -> None:
        """The attempt ended: its metadata and credentials URLs stop answering."""
        if self.endpoints is not None:
            self.endpoints.forget(attempt_key)

    def describe(self) -> str:
        passed = ", ".join(self.options.pass_env) or "none"
        roles = len(self.options.credentials)
        return f"job env: container-clean (host variables passed: {passed}; credential mappings: {roles})"
