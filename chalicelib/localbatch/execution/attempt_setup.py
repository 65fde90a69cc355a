"""What both process executors do around a launch: the environment, the cgroups, the end.

``prepare`` turns a LaunchRequest into the child's variables and its cgroups (or the reason
it cannot start); ``finish`` ends what is left of an attempt whose main process exited and
says whether the kernel killed it for memory; ``kill_orphans`` ends what an earlier engine
left running; ``over_memory`` finds attempts past their limit where no cgroup enforces it.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from chalicelib.localbatch.execution import cgroups as cgroups_mod
from chalicelib.localbatch.execution import procfs
from chalicelib.localbatch.execution.cgroups import AttemptCgroups, CgroupPaths
from chalicelib.localbatch.execution.container_env import ContainerEnvironment, ContainerOptions
from chalicelib.localbatch.execution.spawn import (
    ATTEMPT_VAR,
    START_ERROR,
    TOKEN_VAR,
    describe_start_error,
    resolve_local_image,
    signal_group,
    tag_env,
)

logger = logging.getLogger(__name__)

PULL_ERROR = "CannotPullContainerError"
ORPHAN_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Prepared:
    """A launch ready to start: the child's variables (over ``AttemptSetup.base``), its cgroups."""

    env: dict[str, str]
    cgroups: CgroupPaths | None


def default_container() -> ContainerEnvironment:
    """For an executor built on its own (tests, tools): no task endpoint, runtimes in /tmp."""
    root = os.path.join(tempfile.gettempdir(), f"conveyor-runtime-{os.getuid()}")
    return ContainerEnvironment(ContainerOptions(), root)


class AttemptSetup:
    """One engine's launch preparation; see the module docstring."""

    def __init__(self, token: str, container: ContainerEnvironment | None = None, *,
                 use_cgroups: bool = True) -> None:
        self.token = token
        self.container = container or default_container()
        self.cgroups: AttemptCgroups | None = None
        self.tracking = "processes: environment tag (cgroups off); memory: proportional set size"
        if use_cgroups:
            self.cgroups, why = cgroups_mod.detect(token)
            if self.cgroups is None:
                self.tracking = f"processes: environment tag ({why}); memory: proportional set size"
            else:
                self.tracking = why
        self._unremoved: list[CgroupPaths] = []

    @property
    def base(self) -> dict[str, str]:
        return self.container.base

    def describe(self) -> str:
        return f"{self.tracking}; {self.container.describe()}"

    def prepare(self, request: Any) -> Prepared | str:
        """The child's variables and cgroups, or the reason (``CannotStartContainerError: ...``)."""
        image_dir = resolve_local_image(request.image)
        if image_dir is not None and not os.path.isdir(image_dir):
            return f"{PULL_ERROR}: local image folder {image_dir} does not exist"
        if not request.argv:
            return f"{START_ERROR}: empty command"
        try:
            env = tag_env(self.container.overlay(request, image_dir), attempt_key=request.attempt_key,
                          token=self.token)
            paths = None
            if self.cgroups is not None:
                limit = max(0, request.memory_mib) * 1024 * 1024
                paths = self.cgroups.create(request.attempt_key, limit)
        except (OSError, TypeError, ValueError) as err:
            self.container.release(request.attempt_key)
            return describe_start_error(err)
        return Prepared(env, paths)

    def finish(self, attempt_key: str, paths: CgroupPaths | None) -> bool:
        """Ends every process left in the attempt's cgroup; True if the kernel killed one for memory."""
        self.container.release(attempt_key)
        if self.cgroups is None or paths is None:
            return False
        oom = self.cgroups.oom_killed(paths)
        if self._unremoved:
            self._unremoved = [left for left in self._unremoved if not self.cgroups.remove(left)]
        if not self.cgroups.remove(paths, oom=oom):
            self._unremoved.append(paths)  # its last processes are still dying: removed later
        return oom

    def abandon(self, attempt_key: str, paths: CgroupPaths | None) -> None:
        """A launch that never started: drop what prepare made."""
        self.finish(attempt_key, paths)

    def close(self) -> None:
        """The executor closed (its attempts were ended): cgroups it no longer needs go."""
        if self.cgroups is not None:
            self._unremoved = [left for left in self._unremoved if not self.cgroups.remove(left, wait=1.0)]
            self.cgroups.close()

    def kill(self, paths: CgroupPaths | None) -> None:
        """SIGKILLs every process of the attempt (a no-op without cgroups)."""
        if self.cgroups is not None and paths is not None:
            self.cgroups.kill(paths)

    def oom_killed(self, paths: CgroupPaths | None) -> bool:
        return self.cgroups is not None and paths is not None and self.cgroups.oom_killed(paths)

    def over_memory(self, limited: dict[int, Any]) -> list[tuple[Any, int]]:
        """Attempts (pid -> attempt with ``memory_limit`` and ``cgroups``) over their limit, with usage.

        With cgroups the kernel holds the limit; an attempt is over once it killed a process
        for it. Without, a process group's proportional set sizes are summed (each page once).
        """
        over: list[tuple[Any, int]] = []
        by_group: dict[int, Any] = {}
        for pid, attempt in limited.items():
            paths = getattr(attempt, "cgroups", None)
            if self.cgroups is not None and paths is not None and paths.memory is not None:
                if self.cgroups.oom_killed(paths):
                    over.append((attempt, self.cgroups.memory_used(paths)))
            else:
                by_group[pid] = attempt
        for pgid, used in procfs.sum_group_pss(by_group).items():
            if used > by_group[pgid].memory_limit:
                over.append((by_group[pgid], used))
        return over

    def kill_orphans(self, live_keys: Callable[[], set[str]], *, exclude: set[int]) -> list[str]:
        """Ends what earlier engines with this token left running; returns the attempt keys.

        Their cgroups first (nothing a job does to itself takes a process out of one), then
        any process still carrying the token (from an engine that ran without cgroups).
        """
        keys: set[str] = set()
        if self.cgroups is not None:
            keys.update(self._kill_leftover_cgroups(live_keys()))
        keys.update(kill_tagged_orphans(self.token, live_keys, exclude=exclude))
        return sorted(keys)

    def _kill_leftover_cgroups(self, live: set[str]) -> list[str]:
        assert self.cgroups is not None
        killed: list[str] = []
        for key, paths in self.cgroups.leftover_attempts():
            if key in live:
                continue
            if self.cgroups.members(paths):
                killed.append(key)
            if not self.cgroups.remove(paths, wait=ORPHAN_WAIT_SECONDS):
                logger.warning("processes of attempt %s still alive after cgroup.kill: %s",
                               key, self.cgroups.members(paths))
        self.cgroups.drop_unused_memory_cgroups()
        return killed


def kill_tagged_orphans(token: str, live_keys: Callable[[], set[str]], *, exclude: set[int]) -> list[str]:
    """Kills every process carrying this engine token that is not one of our live attempts.

    Their whole process groups go (SIGKILL), in up to three rounds (a process forked while we
    were killing is caught by the next), then it waits up to ``ORPHAN_WAIT_SECONDS`` for them
    to be gone. Returns the attempt keys killed.
    """
    keys: set[str] = set()
    deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
    for _ in range(3):
        own_keys = live_keys()  # our own live attempts (and their children) are not orphans
        found = [orphan for orphan in procfs.find_tagged(TOKEN_VAR, token, ATTEMPT_VAR, exclude=exclude)
                 if orphan.attempt_key not in own_keys]
        if not found:
            break
        _kill_found(found)
        keys.update(orphan.attempt_key for orphan in found if orphan.attempt_key)
        _wait_gone([orphan.pid for orphan in found], deadline)
    return sorted(keys)


def _kill_found(found: Iterable[procfs.TaggedProcess]) -> None:
    own_group = os.getpgrp()
    for orphan in found:
        if orphan.pgid > 1 and orphan.pgid != own_group:
            signal_group(orphan.pgid, signal.SIGKILL)
        try:
            os.kill(orphan.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_gone(pending: list[int], deadline: float) -> None:
    while pending and time.monotonic() < deadline:
        pending = [pid for pid in pending if procfs.is_alive(pid)]
        if pending:
            time.sleep(0.02)
    if pending:
        logger.warning("orphan processes still alive after SIGKILL: %s", pending)
