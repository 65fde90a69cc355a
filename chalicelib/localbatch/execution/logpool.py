"""LogPool: empty log files made ahead of time, so that starting an attempt allocates no inode.

Why: every attempt needs its own log file, created before its process starts (the file is
also the attempt's durable trace). On this host's ext4 (no journal) creating a file costs
70-450 µs, most of it the inode allocator stepping over recently deleted inodes, while
renaming an existing empty file into place costs about 10 µs. So the engine keeps a few
dozen empty files in `<logs>/.spare/`, made on its housekeeping thread; the spawner renames
one into place at launch. Once an attempt's end is committed, its log is recycled if the
attempt wrote nothing (reading it gives "" either way): the empty file becomes a spare where
it lies, and the next launch renames it to its own log path (one rename per job, not two), so
a stream of quiet jobs allocates no inodes at all. Recycled spares are known only to this
pool: after a restart they are plain empty logs of ended attempts again.

Job definition names cannot start with a dot, so `.spare` never meets a log stream.
Thread safety: deque appends and pops are atomic; take() runs under the engine lock,
refill() and recycle() on the housekeeping thread.
"""

from __future__ import annotations

import itertools
import os
from collections import deque

from chalicelib.localbatch.ids import hex_id

SPARE_FOLDER = ".spare"


class LogPool:
    """Spare empty log files under `<log_root>/.spare`; see the module docstring."""

    def __init__(self, log_root: str, target: int = 64) -> None:
        self.folder = os.path.join(log_root, SPARE_FOLDER)
        self.target = target
        self._ready: deque[str] = deque()
        self._names = (f"{self.folder}/{hex_id(6)}-{n}" for n in itertools.count(1))
        self._adopt()

    def __len__(self) -> int:
        return len(self._ready)

    def __contains__(self, path: object) -> bool:
        """Is `path` a spare now (made ahead, or a recycled log)?"""
        return path in list(self._ready)  # a copy: other threads append and pop meanwhile

    def take(self) -> str:
        """A spare file's path, or "" when none is ready (the log is then created at launch)."""
        try:
            return self._ready.popleft()
        except IndexError:
            return ""

    def give_back(self, path: str) -> None:
        """Returns a spare that was taken but never used (its launch was withdrawn or refused)."""
        if path:
            self._ready.appendleft(path)

    def wants_refill(self) -> bool:
        return len(self._ready) < self.target // 2

    def refill(self) -> None:
        """Makes spare files until `target` are ready; quietly stops if the folder refuses."""
        try:
            os.makedirs(self.folder, exist_ok=True)
            while len(self._ready) < self.target:
                path = next(self._names)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
                self._ready.append(path)
        except OSError:
            pass  # logs are then created at launch, as without a pool

    def recycle(self, log_path: str) -> None:
        """Makes a finished attempt's log a spare, where it lies, if it is empty and the pool has room.

        Only for attempts whose end is committed: until then the file is their trace. A
        committed end also means the file is nobody's trace any more (recovery looks only at
        the paths of attempts not recorded as ended), so a launch may rename it away.
        """
        if len(self._ready) >= 2 * self.target:
            return
        try:
            if os.stat(log_path).st_size != 0:
                return
        except OSError:
            return
        self._ready.append(log_path)

    def _adopt(self) -> None:
        """Takes over the spare files an earlier engine left (only empty regular files)."""
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size == 0:
                    self._ready.append(entry.path)
            except OSError:
                continue
