"""Executor factory: picks the spawner, process or Docker executor for an engine.

It lives apart from the Executor protocol (executor.py) so that the protocol's module never
imports its own implementations.
"""

from __future__ import annotations

import logging

from chalicelib.localbatch.execution.container_env import ContainerEnvironment
from chalicelib.localbatch.execution.docker_executor import DockerExecutor
from chalicelib.localbatch.execution.executor import Executor, ProcessExecutor, docker_available
from chalicelib.localbatch.execution.spawner_executor import SpawnerExecutor, SpawnerUnavailable

logger = logging.getLogger(__name__)


def make_executor(engine_token: str, kind: str = "auto", container: ContainerEnvironment | None = None) -> Executor:
    """Builds the executor: "process", "spawner", "docker", or "auto".

    "auto" is the C-helper SpawnerExecutor when it can be built and started,
    else ProcessExecutor (the reason is logged); "process" forces the latter.

    Raises:
        ValueError: unknown ``kind``, "spawner" that cannot start, or "docker"
            while no Docker engine answers.
    """
    if kind == "process":
        return ProcessExecutor(engine_token, container=container)
    if kind in ("auto", "spawner"):
        try:
            return SpawnerExecutor(engine_token, container=container)
        except SpawnerUnavailable as err:
            if kind == "spawner":
                raise ValueError(f"executor kind 'spawner' requested but it cannot start: {err}") from err
            logger.warning("fast spawner unavailable (%s); using the Python process executor", err)
            return ProcessExecutor(engine_token, container=container)
    if kind == "docker":
        if not docker_available():
            raise ValueError("executor kind 'docker' requested but no Docker engine answers `docker info`")
        return DockerExecutor(engine_token)
    raise ValueError(f"executor kind must be one of 'auto', 'process', 'spawner', 'docker'; got {kind!r}")
