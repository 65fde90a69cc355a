"""Starting the tool: fork and exec, as subprocess.Popen does, without importing subprocess.

The runner starts once per job, and importing subprocess (with selectors, threading and
their imports) was about a sixth of its start. What Popen would do for this one use is
done here: the child restores the signals Python ignores (SIGPIPE, SIGXFSZ), closes every
descriptor above stderr, changes to the working folder and execs; an exec failure travels
back through a close-on-exec pipe and is raised in the parent as the OSError the child got
(FileNotFoundError, PermissionError, ...).
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Sequence

_RESTORED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name))


def start(argv: Sequence[str], cwd: str) -> int:
    """Starts `argv` (looked up on PATH) in `cwd`; returns its pid once exec has succeeded.

    Raises:
        OSError: the tool could not be executed (the child's exec error).
    """
    args = list(argv)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        _exec_child(args, cwd, write_end)  # never returns
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()  # empty once exec closed the pipe: the tool is running
    if not report:
        return pid
    os.waitpid(pid, 0)
    number = int(report)
    raise OSError(number, os.strerror(number), args[0])


def _exec_child(args: list[str], cwd: str, report_fd: int) -> None:
    code = 255
    try:
        for signum in _RESTORED_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        os.closerange(3, report_fd)
        os.closerange(report_fd + 1, os.sysconf("SC_OPEN_MAX"))
        os.chdir(cwd)
        os.execvp(args[0], args)
    except OSError as err:
        os.write(report_fd, str(err.errno or errno.ENOEXEC).encode())
    except BaseException:
        os.write(report_fd, str(errno.ENOEXEC).encode())
    finally:
        os._exit(code)


def wait(pid: int) -> int:
    """Waits for the tool; its exit code, or -N when signal N ended it (as Popen.wait)."""
    _, status = os.waitpid(pid, 0)  # retried after a signal handler runs (PEP 475)
    return os.waitstatus_to_exitcode(status)
