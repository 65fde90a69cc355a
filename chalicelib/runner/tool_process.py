"""Starting the tool: posix_spawn, as subprocess.Popen does where it can, without importing subprocess.

The runner starts once per job, and importing subprocess (with selectors, threading and
their imports) was about a sixth of its start. posix_spawn rather than fork + exec: glibc
starts the child without copying the runner's page tables (vfork-like), and a runner forked
from the engine's warm launcher carries the launcher's whole heap: starting `true` from a
25 MB Python process took 5.5 ms of CPU by fork + exec and 1.1 ms by posix_spawn here. What Popen does for this one use is done here:
the tool gets the default disposition of the signals Python ignores (SIGPIPE, SIGXFSZ),
no descriptor above stderr (Python's own are close-on-exec; any other is closed), and the
working folder, which posix_spawn cannot set: the runner changes to it around the call
(it is single-threaded). An exec failure is raised as the OSError the child got
(FileNotFoundError, PermissionError, ...), as is a working folder that cannot be entered.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

_RESTORED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name))


def start(argv: Sequence[str], cwd: str) -> int:
    """Starts `argv` (looked up on PATH) in `cwd`; returns its pid once exec has succeeded.

    Raises:
        OSError: the tool could not be executed, or `cwd` entered.
    """
    args = list(argv)
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(cwd)
        try:
            return os.posix_spawnp(args[0], args, os.environ, file_actions=_inherited_closes(),
                                   setsigdef=_RESTORED_SIGNALS)
        finally:
            os.fchdir(here)
    finally:
        os.close(here)


def _inherited_closes() -> list[tuple[int, int]]:
    """Close actions for descriptors above stderr that the tool would otherwise inherit."""
    actions = []
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    actions.append((os.POSIX_SPAWN_CLOSE, fd))
            except OSError:
                pass  # the listing's own descriptor, closed by now
    return actions


def wait(pid: int) -> int:
    """Waits for the tool; its exit code, or -N when signal N ended it (as Popen.wait)."""
    _, status = os.waitpid(pid, 0)  # retried after a signal handler runs (PEP 475)
    return os.waitstatus_to_exitcode(status)
