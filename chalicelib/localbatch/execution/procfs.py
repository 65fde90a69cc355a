"""Reads Linux /proc: process groups, resident memory and tagged environments.

Pure parsers (``parse_stat``, ``parse_statm_rss``, ``parse_environ``) take the file
text so they can be unit-tested against fixture strings; the ``scan_*`` helpers
walk the live /proc and quietly skip processes that vanish or are unreadable,
because processes come and go while we read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

PROC = "/proc"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the executor needs."""

    pid: int
    state: str
    ppid: int
    pgid: int

    @property
    def is_zombie(self) -> bool:
        # 'Z' zombie, 'X' dead: exited, only waiting for a parent to reap it.
        return self.state in ("Z", "X")


def parse_stat(text: str) -> ProcStat:
    """Parses /proc/<pid>/stat text.

    The command name (field 2) is in parentheses and may itself hold spaces or
    ')', so fields are counted from the *last* ')'.

    Raises:
        ValueError: the text is not a stat line.
    """
    open_at = text.find("(")
    close_at = text.rfind(")")
    if open_at < 0 or close_at < open_at:
        raise ValueError(f"not a /proc stat line: {text[:60]!r}")
    rest = text[close_at + 1 :].split()
    if len(rest) < 3:
        raise ValueError(f"truncated /proc stat line: {text[:60]!r}")
    # After the name: state (3), ppid (4), pgrp (5).
    return ProcStat(pid=int(text[:open_at]), state=rest[0], ppid=int(rest[1]), pgid=int(rest[2]))


def parse_statm_rss(text: str, page_size: int = PAGE_SIZE) -> int:
    """Returns resident bytes from /proc/<pid>/statm text (field 2, in pages).

    Raises:
        ValueError: the text is not a statm line.
    """
    fields = text.split()
    if len(fields) < 2:
        raise ValueError(f"not a /proc statm line: {text[:60]!r}")
    return int(fields[1]) * page_size


def parse_environ(data: bytes) -> dict[str, str]:
    """Parses /proc/<pid>/environ (NUL-separated ``NAME=value``) into a dict."""
    env: dict[str, str] = {}
    for entry in data.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            env[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


def list_pids() -> list[int]:
    """Returns the pids currently listed in /proc."""
    return [int(name) for name in os.listdir(PROC) if name.isdigit()]


def read_stat(pid: int) -> ProcStat | None:
    """Reads one process's stat, or None when it is gone or unreadable."""
    try:
        with open(f"{PROC}/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            return parse_stat(handle.read())
    except (OSError, ValueError):
        return None


def read_rss(pid: int) -> int:
    """Returns one process's resident bytes, 0 when it is gone or unreadable."""
    try:
        with open(f"{PROC}/{pid}/statm", encoding="ascii") as handle:
            return parse_statm_rss(handle.read())
    except (OSError, ValueError):
        return 0


def read_environ(pid: int) -> bytes | None:
    """Returns the raw initial environment of a process, None when unreadable."""
    try:
        with open(f"{PROC}/{pid}/environ", "rb") as handle:
            return handle.read()
    except OSError:
        return None


def scan_stats(pids: Iterable[int] | None = None) -> Iterator[ProcStat]:
    """Yields the stat of every live process (or of the given pids)."""
    for pid in list_pids() if pids is None else pids:
        stat = read_stat(pid)
        if stat is not None:
            yield stat


def sum_group_rss(pgids: Iterable[int]) -> dict[int, int]:
    """Sums resident bytes of all members of each given process group.

    Members are found by pgid (stat field 5) across all of /proc, so children a
    job forks are counted even after their parent has exited.
    """
    wanted = {pgid: 0 for pgid in pgids}
    if not wanted:
        return wanted
    for stat in scan_stats():
        if stat.pgid in wanted and not stat.is_zombie:
            wanted[stat.pgid] += read_rss(stat.pid)
    return wanted


def parse_smaps_pss(text: str) -> int:
    """Returns the proportional set size in bytes from /proc/<pid>/smaps_rollup text.

    Raises:
        ValueError: no ``Pss:`` line.
    """
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no Pss line in smaps_rollup")


def read_pss(pid: int) -> int:
    """One process's share of its pages (a page shared by N processes counts 1/N); 0 when gone."""
    try:
        with open(f"{PROC}/{pid}/smaps_rollup", encoding="ascii") as handle:
            return parse_smaps_pss(handle.read())
    except (OSError, ValueError):
        return read_rss(pid)


def sum_group_pss(pgids: Iterable[int]) -> dict[int, int]:
    """Memory of each process group counted once per page: the sum of its members' PSS."""
    wanted = {pgid: 0 for pgid in pgids}
    if not wanted:
        return wanted
    for stat in scan_stats():
        if stat.pgid in wanted and not stat.is_zombie:
            wanted[stat.pgid] += read_pss(stat.pid)
    return wanted


@dataclass(frozen=True)
class TaggedProcess:
    """A live process whose environment carries an engine token."""

    pid: int
    pgid: int
    attempt_key: str


def find_tagged(token_var: str, token: str, key_var: str, *, exclude: set[int]) -> list[TaggedProcess]:
    """Finds live processes whose environment has ``token_var=token``.

    Processes we may not read (other users) and zombies are skipped: a zombie
    has already exited and holds no resources but its pid.
    """
    needle = f"{token_var}={token}".encode()
    found: list[TaggedProcess] = []
    for pid in list_pids():
        if pid in exclude:
            continue
        raw = read_environ(pid)
        if raw is None or needle not in raw:
            continue
        env = parse_environ(raw)
        stat = read_stat(pid)
        if env.get(token_var) != token or stat is None or stat.is_zombie:
            continue
        found.append(TaggedProcess(pid=pid, pgid=stat.pgid, attempt_key=env.get(key_var, "")))
    return found


def is_alive(pid: int) -> bool:
    """True while the pid exists and is not a zombie."""
    stat = read_stat(pid)
    return stat is not None and not stat.is_zombie
