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

Making and removing cgroups on every attempt costs more than the rest of the engine's work
per job (a v1 memory cgroup ~0.2 ms, a v2 one ~0.05 ms, under load more), so both are pooled
(cgroup_slots.py): a folder whose attempt ended goes back to its pool once the kernel says it is
empty, and one the kernel OOM-killed in is removed (its ``oom_kill`` count cannot be reset). A
pooled tracking cgroup carries its attempt's key in an extended attribute, written before the
attempt's first process joins, so ``kill_orphans`` still names what it ended after a crash.
Where cgroupfs takes no extended attributes, tracking cgroups are made per attempt, named after it.

When cgroups cannot be used here (no writable hierarchy, no ``cgroup.kill``), ``detect()``
returns None with the reason and the executors fall back to what they did before: the
environment tag for orphans and proportional set sizes for memory.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass

from chalicelib.localbatch.execution.cgroup_slots import (
    ATTEMPT_XATTR,
    POOL_PREFIX,
    FolderPool,
    HeldFiles,
    attempt_of,
    make_cgroup_folder,
    xattrs_supported,
)

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
        self._limits: dict[str, int] = {}  # pooled cgroup -> the memory limit last written to it
        # Unique to this instance: two executors of one token in one process (tests, a restart in
        # process) must never hand the same pooled cgroup to two attempts at once.
        pool_tag = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._lock = threading.Lock()
        for base in {self.tracking_base, self.memory_base} - {None}:
            os.makedirs(base, exist_ok=True)  # type: ignore[arg-type]
        self._slots = FolderPool(self.tracking_base, pool_tag) if xattrs_supported(self.tracking_base) else None
        self._events = HeldFiles("cgroup.events")  # of pooled tracking cgroups: are they empty?
        self._memory_pool = FolderPool(str(self.memory_base), pool_tag) if self._pooled else None
        self._oom_name = "memory.events" if memory_v2 else "memory.oom_control"
        self._oom = HeldFiles(self._oom_name)  # of pooled memory cgroups (v1, or v2 in a pooled slot)

    def describe(self) -> str:
        """For serve's start line: what finds an attempt's processes and what counts its memory."""
        memory = ("cgroup v2 memory" if self._memory_v2 else "cgroup v1 memory") if self.memory_base \
            else "proportional set size (/proc/<pid>/smaps_rollup)"
        pooled = " (pooled)" if self._slots is not None else ""
        return f"processes: cgroup v2 per attempt{pooled}; memory: {memory}"

    def create(self, attempt_key: str, memory_limit: int) -> CgroupPaths:
        """Gives the attempt its cgroups: pooled empty ones, else new ones (empty ones left from a
        crash are reused).

        Raises:
            OSError: cgroupfs refused (the launch is then reported as a failed start).
        """
        if self._slots is None:
            tracking = self._make(self.tracking_base, attempt_key)
            if self.memory_base is None:
                return CgroupPaths(tracking, None)
            if not self._pooled:
                if memory_limit > 0:
                    _write(f"{tracking}/memory.max", str(memory_limit))
                return CgroupPaths(tracking, tracking)
        else:
            tracking = self._pooled_cgroup(self._slots, memory_limit if self._memory_v2 else None, attempt_key)
            if not self._pooled:
                return CgroupPaths(tracking, tracking if self._memory_v2 else None)
        assert self._memory_pool is not None
        try:
            memory = self._pooled_cgroup(self._memory_pool, memory_limit)
        except OSError:
            if self._slots is not None:
                self._slots.give_back(tracking)  # empty: no process joined it yet
            else:
                _rmdir_quietly(tracking)
            raise
        return CgroupPaths(tracking, memory)

    def _pooled_cgroup(self, pool: FolderPool, memory_limit: int | None, attempt_key: str | None = None) -> str:
        """A folder from `pool` with the limit (None: none written) and the attempt key set.

        A free folder that fails (another engine of this token removed it, or EBUSY: pages it
        still holds exceed the new limit) is dropped and a new one made.
        """
        path, new = pool.take()
        try:
            self._prepare_pooled(path, new, memory_limit, attempt_key)
        except OSError:
            self._drop_pooled(path)
            if new:
                raise
            path = pool.take_new()
            self._prepare_pooled(path, True, memory_limit, attempt_key)
        return path

    def _prepare_pooled(self, path: str, new: bool, memory_limit: int | None, attempt_key: str | None) -> None:
        if attempt_key is not None:
            os.setxattr(path, ATTEMPT_XATTR, attempt_key.encode())  # OSError once it is gone
            if new:
                self._events.hold(path)
        if memory_limit is None:
            return
        if new:
            self._oom.hold(path)
        limit = memory_limit if memory_limit > 0 else -1
        if self._limits.get(path) == limit:
            # Most jobs of a run share one limit, and each cgroupfs write costs ~0.05 ms here.
            if self._oom.read(path) is None:
                raise FileNotFoundError(path)  # another engine of this token dropped it
            return
        if self._memory_v2:
            _write(f"{path}/memory.max", str(memory_limit) if memory_limit > 0 else "max")
        else:
            _write(f"{path}/memory.limit_in_bytes", str(limit))
        with self._lock:
            self._limits[path] = limit

    def _drop_pooled(self, path: str) -> bool:
        """Takes a pooled folder out of use for good (its held files closed); True once removed."""
        with self._lock:
            self._limits.pop(path, None)
        self._events.release(path)
        self._oom.release(path)
        return _rmdir_quietly(path)

    @staticmethod
    def _make(base: str, attempt_key: str) -> str:
        return make_cgroup_folder(f"{base}/{attempt_key.replace('/', '_')}")

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
        return _parse_counter(self._oom.read(paths.memory) or b"", "oom_kill") > 0

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
        """Kills what is left and removes the folders, or gives pooled ones back once empty (those
        OOM-killed in are removed); True when done. ``oom``: the caller's ``oom_killed`` answer.

        Every cgroupfs access costs ~0.05-0.15 ms here, so the common case (the attempt's
        processes are all gone) is one read of a held file (pooled) or one rmdir: each says
        the cgroup is empty, and the memory cgroup holds the same processes, so it is empty too.
        """
        deadline = time.monotonic() + wait
        tracking, memory = paths.tracking, paths.memory
        if self._owned(self._slots, tracking):
            if not self._emptied(paths, deadline):
                return False
            if memory == tracking and (self.oom_killed(paths) if oom is None else oom):
                return self._drop_pooled(tracking)  # v2 memory: its oom_kill count cannot be reset
            self._slots.give_back(tracking)  # type: ignore[union-attr]
        elif not _rmdir_quietly(tracking):
            self.kill(paths)
            while not _rmdir_quietly(tracking):  # EBUSY: killed processes not yet gone
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
        if memory is None or memory == tracking:
            return True
        if self._owned(self._memory_pool, memory):
            if not (self.oom_killed(paths) if oom is None else oom):
                self._memory_pool.give_back(memory)  # type: ignore[union-attr]
                return True
            self._events.release(memory)
            self._oom.release(memory)
            with self._lock:
                self._limits.pop(memory, None)  # OOM-killed in: it leaves the pool
        while not _rmdir_quietly(memory):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    @staticmethod
    def _owned(pool: FolderPool | None, path: str) -> bool:
        return pool is not None and pool.owns(path.rsplit("/", 1)[-1])

    def _emptied(self, paths: CgroupPaths, deadline: float) -> bool:
        """True once the pooled tracking cgroup holds no process (what is left is killed first)."""
        if not _populated(self._events.read(paths.tracking)):
            return True
        self.kill(paths)
        while _populated(self._events.read(paths.tracking)):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """The engine stops: drops its free pooled cgroups and, if empty, its folders."""
        for pool in (self._slots, self._memory_pool):
            for path in pool.take_all_free() if pool is not None else []:
                self._drop_pooled(path)
        self._events.close()
        self._oom.close()
        with self._lock:
            self._limits.clear()
        for base in dict.fromkeys([self.tracking_base, self.memory_base]):
            if base is not None:
                _rmdir_quietly(base)  # busy while an attempt's cgroup is left: the next start cleans up

    def drop_unused_memory_cgroups(self) -> None:
        """Removes the empty memory cgroups an earlier engine pooled (at start, before any launch)."""
        if self._memory_pool is None:
            return
        try:
            names = [entry.name for entry in os.scandir(str(self.memory_base)) if entry.is_dir()]
        except OSError:
            return
        for name in names:
            if not self._memory_pool.owns(name):
                _rmdir_quietly(f"{self.memory_base}/{name}")

    def leftover_attempts(self) -> list[tuple[str, CgroupPaths]]:
        """The attempt cgroups an earlier engine of this token left, with their attempt keys:
        a pooled folder's from its attribute (it may be free: then it holds no process), any
        other's from its name."""
        try:
            names = [entry.name for entry in os.scandir(self.tracking_base) if entry.is_dir()]
        except OSError:
            return []
        memory_v2 = self.memory_base == self.tracking_base
        found = []
        for name in names:
            if self._slots is not None and self._slots.owns(name):
                continue  # this instance's own, in use or free
            path = f"{self.tracking_base}/{name}"
            key = (attempt_of(path) if name.startswith(POOL_PREFIX) else None) or name
            found.append((key, CgroupPaths(path, path if memory_v2 else None)))
        return found

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


def _populated(events: bytes | None) -> bool:
    """From a ``cgroup.events`` read: does the cgroup (or a child of it) hold a process?"""
    return events is not None and b"populated 1" in events


def _counter(path: str, name: str) -> int:
    """The value of ``name`` in a flat-keyed cgroup file (0 when absent or unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        data = os.read(fd, 4096)
    except OSError:
        return 0
    finally:
        os.close(fd)
    return _parse_counter(data, name)


def _parse_counter(data: bytes, name: str) -> int:
    """The value of ``name`` in a flat-keyed cgroup file's content (0 when absent)."""
    key = name.encode() + b" "
    if data.startswith(key):
        start = len(key)
    else:
        at = data.find(b"\n" + key)
        if at < 0:
            return 0
        start = at + 1 + len(key)
    end = data.find(b"\n", start)
    try:
        return int(data[start:end if end >= 0 else None])
    except ValueError:
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
