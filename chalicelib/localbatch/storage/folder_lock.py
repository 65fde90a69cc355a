"""One engine per data folder: an exclusive lock on ``<data dir>/engine.lock`` that says who holds it.

Two engines on one folder would each treat the other's running attempts as orphans of a
crashed engine and kill them. The first engine takes a non-blocking ``flock``; the lock
file holds its pid, how it runs (``serve`` or an in-process ``run``) and, once known, the
URL it serves, so other commands can use that engine instead of starting their own. The
kernel drops the lock when the process dies, so a crash never leaves the folder locked.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK_FILE = "engine.lock"


class FolderInUseError(Exception):
    """Another engine holds the data folder; ``holder`` says which (may be empty)."""

    def __init__(self, data_dir: Path, holder: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.holder = holder
        super().__init__(describe_holder(data_dir, holder))


def describe_holder(data_dir: Path, holder: dict[str, Any]) -> str:
    who = f"process {holder['pid']}" if holder.get("pid") else "another process"
    how = f"`conveyor serve` on {holder['url']}" if holder.get("url") and holder.get("owner") == "serve" \
        else f"`conveyor {holder.get('owner') or 'run'}`"
    return f"the data folder {data_dir} is in use by the engine of {who} ({how}); one engine owns a folder"


@dataclass
class FolderLock:
    """The held lock; ``advertise`` records the served URL, ``release`` lets the folder go."""

    path: Path
    fd: int
    info: dict[str, Any]

    def advertise(self, url: str) -> None:
        self.info["url"] = url
        _write(self.fd, self.info)

    def release(self) -> None:
        if self.fd >= 0:
            try:
                os.ftruncate(self.fd, 0)
            finally:
                os.close(self.fd)  # closing the descriptor drops the flock
                self.fd = -1


def acquire(data_dir: Path, owner: str) -> FolderLock:
    """Takes the folder's lock or raises FolderInUseError naming the holder."""
    path = Path(data_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderInUseError(Path(data_dir), read_holder(path)) from None
    info: dict[str, Any] = {"pid": os.getpid(), "owner": owner}
    _write(fd, info)
    return FolderLock(path, fd, info)


def holder(data_dir: Path) -> dict[str, Any] | None:
    """Who holds the folder's engine lock (pid, owner, url), or None when no engine runs there."""
    path = Path(data_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            # A shared lock is granted only while nobody holds the exclusive one.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_holder(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def read_holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(fd: int, info: dict[str, Any]) -> None:
    body = json.dumps(info).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, body, 0)
