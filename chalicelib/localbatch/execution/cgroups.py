"""A control group per attempt: how the engine finds, counts and ends an attempt's processes.

Why: a process group, a session or an environment variable are all things a job can change
(``setsid``, ``env -i``, a double fork); membership of a cgroup is not (short of writing to
cgroupfs itself). Each attempt's first process joins, before its exec, two cgroups named
after the attempt under a folder named after the engine token:

- the cgroup v2 (unified) one finds every process of the attempt (``cgroup.procs``) and ends
  them all at once (``cgroup.kill``), also after a restart of the engine;
- the cgroup v1 ``memory`` one (or the v2 one where memory is a v2 controller) counts the
  attempt's memory once per page, and its limit is the job's: the kernel stops the attempt at
  the limit and ``oom_kill`` in ``memory.oom_control`` says it did.

Making a v1 memory cgroup costs ~0.2 ms here (a v2 one ~0.03 ms), so v1 memory cgroups are
pooled: they are not named after an attempt (the v2 one is what finds an attempt), an empty
one goes back to the pool when its attempt ends, and one the kernel OOM-killed in is removed
(its ``oom_kill`` count cannot be reset).

When cgroups cannot be used here (no writable hierarchy, no ``cgroup.kill``), ``detect()``
returns None with the reason and the executors fall back to what they did before: the
environment tag for orphans and proportional set sizes for memory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

ROOT = "/sys/fs/cgroup"
_UNIFIED_CANDIDATES = (f"{ROOT}/unified", ROOT)
_MEMORY_V1 = f"{ROOT}/memory"


@dataclass(frozen=True)
class CgroupPaths:
    """One attempt's cgroup folders; ``memory`` is None when memory is counted otherwise."""

    tracking: str
    memory: str | None

    def procs_files(self) -> list[str]:
        """The files the attempt's first process writes "0" to, to join its cgroups."""
        files = [f"{self.tracking}/cgroup.procs"]
        if self.memory is not None and self.memory != self.tracking:
            files.append(f"{self.memory}/cgroup.procs")
        return files


class AttemptCgroups:
    """Creates, reads and removes the per-attempt cgroups of one engine (one token)."""

    def __init__(self, unified_root: str, memory_root: str | None, memory_v2: bool, token: str) -> None:
        name = f"conveyor-{token[:16]}"
        self.tracking_base = f"{unified_root}/{name}"
        self.memory_base = (self.tracking_base if memory_v2 else f"{memory_root}/{name}") if memory_root else None
        self._memory_v2 = memory_v2
        self._pooled = self.memory_base is not None and not memory_v2
        self._free_memory: list[str] = []
        self._pool_seq = 0
        self._lock = threading.Lock()
        for base in {self.tracking_base, self.memory_base} - {None}:
            os.makedirs(base, exist_ok=True)  # type: ignore[arg-type]

    def describe(self) -> str:
        """For serve's start line: what finds an attempt's processes and what counts its memory."""
        memory = ("cgroup v2 memory" if self._memory_v2 else "cgroup v1 memory") if self.memory_base \
            else "proportional set size (/proc/<pid>/smaps_rollup)"
        return f"processes: cgroup v2 per attempt; memory: {memory}"

    def create(self, attempt_key: str, memory_limit: int) -> CgroupPaths:
        """Makes the attempt's cgroups (empty ones left from a crash are reused).

        Raises:
            OSError: cgroupfs refused (the launch is then reported as a failed start).
        """
        tracking = self._make(self.tracking_base, attempt_key)
        if self.memory_base is None:
            return CgroupPaths(tracking, None)
        if not self._pooled:
            if memory_limit > 0:
                _write(f"{tracking}/memory.max", str(memory_limit))
            return CgroupPaths(tracking, tracking)
        memory = self._take_memory()
        try:
            _write(f"{memory}/memory.limit_in_bytes", str(memory_limit) if memory_limit > 0 else "-1")
        except OSError:
            _rmdir_quietly(memory)  # e.g. EBUSY: pages it still holds exceed the new limit
            memory = self._take_memory(fresh=True)
            _write(f"{memory}/memory.limit_in_bytes", str(memory_limit) if memory_limit > 0 else "-1")
        return CgroupPaths(tracking, memory)

    def _take_memory(self, fresh: bool = False) -> str:
        with self._lock:
            if self._free_memory and not fresh:
                return self._free_memory.pop()
            self._pool_seq += 1
            seq = self._pool_seq
        return self._make(str(self.memory_base), f"pool-{os.getpid()}-{seq}")

    @staticmethod
    def _make(base: str, attempt_key: str) -> str:
        path = f"{base}/{attempt_key.replace('/', '_')}"
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        except FileNotFoundError:  # another executor of this token closed and removed the base
            os.makedirs(path, exist_ok=True)
        return path

    def kill(self, paths: CgroupPaths) -> None:
        """SIGKILLs every process in the attempt's cgroup, whatever its group or session."""
        try:
            _write(f"{paths.tracking}/cgroup.kill", "1")
        except FileNotFoundError:
            pass

    def oom_killed(self, paths: CgroupPaths) -> bool:
        """True once the kernel has killed a process of the attempt for reaching its memory limit."""
        if paths.memory is None:
            return False
        name = "memory.events" if self._memory_v2 else "memory.oom_control"
        return _counter(f"{paths.memory}/{name}", "oom_kill") > 0

    def memory_used(self, paths: CgroupPaths) -> int:
        """Bytes charged to the attempt, each page once (0 when unreadable)."""
        if paths.memory is None:
            return 0
        name = "memory.current" if self._memory_v2 else "memory.usage_in_bytes"
        try:
            with open(f"{paths.memory}/{name}", encoding="ascii") as handle:
                return int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def remove(self, paths: CgroupPaths, wait: float = 0.0, oom: bool | None = None) -> bool:
        """Kills what is left and removes the folders (a clean pooled memory cgroup goes back to
        the pool); True when they are gone. ``oom``: the caller's ``oom_killed`` answer, if read.

        Every cgroupfs access costs ~0.05-0.15 ms here, so the common case (the attempt's
        processes are all gone) is one rmdir: it succeeds only on an empty cgroup, and the
        memory cgroup holds the same processes, so it is empty too.
        """
        deadline = time.monotonic() + wait
        if not _rmdir_quietly(paths.tracking):
            self.kill(paths)
            while not _rmdir_quietly(paths.tracking):  # EBUSY: killed processes not yet gone
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
        memory = paths.memory
        if memory is None or memory == paths.tracking:
            return True
        if self._pooled and not (self.oom_killed(paths) if oom is None else oom):
            with self._lock:
                self._free_memory.append(memory)
            return True
        while not _rmdir_quietly(memory):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """The engine stops: drops its pooled memory cgroups and, if empty, its folders."""
        with self._lock:
            pooled, self._free_memory = self._free_memory, []
        for path in pooled:
            _rmdir_quietly(path)
        for base in dict.fromkeys([self.tracking_base, self.memory_base]):
            if base is not None:
                _rmdir_quietly(base)  # busy while an attempt's cgroup is left: the next start cleans up

    def drop_unused_memory_cgroups(self) -> None:
        """Removes the empty memory cgroups an earlier engine pooled (at start, before any launch)."""
        if not self._pooled:
            return
        try:
            names = [entry.name for entry in os.scandir(str(self.memory_base)) if entry.is_dir()]
        except OSError:
            return
        for name in names:
            _rmdir_quietly(f"{self.memory_base}/{name}")

    def leftover_attempts(self) -> dict[str, CgroupPaths]:
        """The attempt cgroups this token's folders hold (an earlier engine's), by attempt key."""
        try:
            names = [entry.name for entry in os.scandir(self.tracking_base) if entry.is_dir()]
        except OSError:
            return {}
        memory_v2 = self.memory_base == self.tracking_base
        return {name: CgroupPaths(f"{self.tracking_base}/{name}",
                                  f"{self.tracking_base}/{name}" if memory_v2 else None) for name in names}

    def members(self, paths: CgroupPaths) -> list[int]:
        """The pids in the attempt's tracking cgroup (empty when it is gone)."""
        try:
            with open(f"{paths.tracking}/cgroup.procs", encoding="ascii") as handle:
                return [int(line) for line in handle if line.strip()]
        except (OSError, ValueError):
            return []


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _rmdir_quietly(path: str) -> bool:
    """True when the folder is gone (removed now or already); False while it is busy."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _counter(path: str, name: str) -> int:
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                key, _, value = line.partition(" ")
                if key == name:
                    return int(value)
    except (OSError, ValueError):
        return 0
    return 0


def detect(token: str) -> tuple[AttemptCgroups | None, str]:
    """Returns per-attempt cgroups for this engine, or None and why they cannot be used."""
    unified = next((root for root in _UNIFIED_CANDIDATES if _is_cgroup2(root)), None)
    if unified is None:
        return None, "no cgroup v2 hierarchy is mounted"
    controllers = _read(f"{unified}/cgroup.controllers").split()
    memory_v2 = "memory" in controllers and "memory" in _read(f"{unified}/cgroup.subtree_control").split()
    memory_root = unified if memory_v2 else (_MEMORY_V1 if os.path.isdir(_MEMORY_V1) else None)
    try:
        cgroups = AttemptCgroups(unified, memory_root, memory_v2, token)
        probe = cgroups.create("conveyor-probe", 0)
        has_kill = os.path.exists(f"{probe.tracking}/cgroup.kill")
        cgroups.remove(probe)
    except OSError as err:
        return None, f"cannot create cgroups under {unified}: {err.strerror or err}"
    if not has_kill:
        return None, "this kernel's cgroup v2 has no cgroup.kill (Linux 5.14 or later needed)"
    return cgroups, cgroups.describe()


def _is_cgroup2(path: str) -> bool:
    return os.path.exists(f"{path}/cgroup.controllers") and os.path.exists(f"{path}/cgroup.procs")


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except OSError:
        return ""
