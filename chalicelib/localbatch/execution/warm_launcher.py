"""Warm launcher: a Python process that imports a job's modules once and forks per attempt.

Run by conveyor-spawner (never imported by the engine; standard library only, because it
runs in the job's interpreter with the job's ``PYTHONPATH``), as::

    python warm_launcher.py MODULE [PRELOAD ...]

It imports MODULE's package and each PRELOAD module, tells the spawner READY on fd 3, and
then, for each attempt the spawner hands it (layouts at the top of ``spawner.c``), forks
twice: the grandchild becomes the attempt and the middle process exits at once, so the
attempt is reparented to the spawner (a child subreaper), which reaps it and signals its
group like any attempt it forked and exec'd itself. The attempt, before it answers ready,
does what the spawner's own child does before its exec: its own process group, the
attempt's cgroups, the working folder, stdin from /dev/null and stdout and stderr appended
to the log. Then it becomes ``python -m MODULE ARGS`` as far as the job can tell: the
job's environment (os.environ and the C environ), ``sys.argv``, ``sys.orig_argv``,
``sys.path[0]`` = the working folder, a fresh ``__main__``, Python's own SIGINT handler,
and runpy's ``-m`` entry point. Its exit is the interpreter's too (``run``), apart from the
heap's teardown.

What a job can tell apart from a cold start (why the engine warms only the modules it is
told to): modules imported here saw the launcher's environment, not the attempt's, when
they ran their top level; ``PYTHONHASHSEED`` (hash randomisation) is the launcher's for
every attempt it forks; pages shared with the launcher are charged to the launcher's memory
cgroup, not the attempt's, until the attempt writes them.
"""

from __future__ import annotations

import gc
import os
import signal
import struct
import sys

_U32 = struct.Struct("<I")
_ANSWER = struct.Struct("<IBQiBi")  # length, 1, attempt id, pid, stage, errno
_READY = _U32.pack(1) + b"\0"
SOCKET_FD = 3
# What failed, as the spawner reports it (see spawner.c): 0 = started.
STAGE_WORKDIR, STAGE_CGROUP, STAGE_LOG, STAGE_FORK = 1, 3, 4, 5


class Attempt:
    """One attempt as the spawner hands it over."""

    def __init__(self, body: bytes) -> None:
        self.ident = int.from_bytes(body[:8], "little")
        offset = 8
        fields: list[bytes] = []
        for _ in range(3):
            (size,) = _U32.unpack_from(body, offset)
            fields.append(body[offset + 4:offset + 4 + size])
            offset += 4 + size
        self.workdir, self.log, cgroups = fields
        self.cgroups = [path for path in cgroups.split(b"\0") if path]
        self.argv, offset = _strings(body, offset)
        env, offset = _strings(body, offset)
        self.env = dict(entry.split(b"=", 1) for entry in env if b"=" in entry)


def _strings(body: bytes, offset: int) -> tuple[list[bytes], int]:
    (count,) = _U32.unpack_from(body, offset)
    offset += 4
    out = []
    for _ in range(count):
        (size,) = _U32.unpack_from(body, offset)
        out.append(body[offset + 4:offset + 4 + size])
        offset += 4 + size
    return out, offset


def _read_exactly(fd: int, size: int) -> bytes:
    """`size` bytes, or b"" at the end (EOF, or a reset: the other side is gone)."""
    data = b""
    while len(data) < size:
        try:
            chunk = os.read(fd, size - len(data))
        except OSError:
            return b""
        if not chunk:
            return b""
        data += chunk
    return data


def serve(module: str) -> Attempt:
    """Forks an attempt for each request; returns only inside an attempt (the grandchild)."""
    _tell_spawner(_READY)
    while True:
        header = _read_exactly(SOCKET_FD, 4)
        if not header:
            os._exit(0)  # the spawner is gone (engine stopped or died): so are we
        body = _read_exactly(SOCKET_FD, _U32.unpack(header)[0])
        if not body:
            os._exit(0)
        attempt = Attempt(body)
        pid, stage, error = _fork_attempt(attempt)
        if pid == 0:
            return attempt
        _tell_spawner(_ANSWER.pack(_ANSWER.size - 4, 1, attempt.ident, pid, stage, error))


def _tell_spawner(record: bytes) -> None:
    try:
        os.write(SOCKET_FD, record)
    except OSError:
        os._exit(0)  # the spawner is gone (the engine stopped or died): so are we


def _fork_attempt(attempt: Attempt) -> tuple[int, int, int]:
    """(pid, 0, 0) once the attempt is set up; (0, ...) inside it; (-1, stage, errno) if it failed."""
    pid_r, pid_w = os.pipe()
    status_r, status_w = os.pipe()
    try:
        middle = os.fork()
    except OSError as err:
        for fd in (pid_r, pid_w, status_r, status_w):
            os.close(fd)
        return -1, STAGE_FORK, err.errno or 0
    if middle == 0:
        os.close(pid_r)
        os.close(status_r)
        try:
            child = os.fork()
        except OSError:
            child = -1
        if child == 0:
            os.close(pid_w)
            _set_up(attempt, status_w)
            return 0, 0, 0
        os.write(pid_w, struct.pack("<i", child))
        os._exit(0)  # the attempt is now the spawner's child
    os.close(pid_w)
    os.close(status_w)
    try:
        os.waitpid(middle, 0)
        raw = _read_exactly(pid_r, 4)
        child = struct.unpack("<i", raw)[0] if raw else -1
        if child <= 0:
            return -1, STAGE_FORK, 0
        status = _read_exactly(status_r, 5)
        if len(status) != 5:
            return -1, STAGE_FORK, 0
        stage, error = struct.unpack("<Bi", status)
        return (child, 0, 0) if stage == 0 else (-1, stage, error)
    finally:
        os.close(pid_r)
        os.close(status_r)


def _set_up(attempt: Attempt, status_fd: int) -> None:
    """In the attempt: what the spawner's child does before exec; reports 0 or what failed."""
    stage = STAGE_CGROUP
    try:
        os.setpgid(0, 0)
        for path in attempt.cgroups:  # first: whatever the job does next stays in them
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        stage = STAGE_WORKDIR
        os.chdir(attempt.workdir)
        stage = STAGE_LOG
        log = os.open(attempt.log, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        os.close(SOCKET_FD)
    except OSError as err:
        os.write(status_fd, struct.pack("<Bi", stage, err.errno or 0))
        os._exit(127)
    os.write(status_fd, struct.pack("<Bi", 0, 0))
    os.close(status_fd)


def become(attempt: Attempt) -> str:
    """Turns this process into the attempt's ``python -m MODULE ARGS``; returns MODULE."""
    import types

    os.environ.clear()  # also unsets the C environ, which the job's own children get
    for name, value in attempt.env.items():
        os.environb[name] = value
    argv = [os.fsdecode(arg) for arg in attempt.argv]
    module = argv[2]
    sys.orig_argv[:] = argv
    sys.argv[:] = ["-m", *argv[3:]]
    sys.path[0:0] = [os.getcwd()]
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return module


def preload(module: str, extra: list[str]) -> None:
    """Imports the module's package and the named modules, as the job's first steps would."""
    import importlib

    package = module.rpartition(".")[0]
    for name in ([package] if package else []) + [module] + extra:
        importlib.import_module(name)


def main() -> str:
    """Preloads, then serves; returns the module to run, inside an attempt only."""
    del sys.path[0]  # this file's folder: not on a `python -m` job's path
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the engine
    module, extra = sys.argv[1], sys.argv[2:]
    try:
        preload(module, extra)
    except BaseException as err:  # whatever it is, the spawner starts attempts cold instead
        print(f"conveyor warm launcher: cannot preload {module}: {type(err).__name__}: {err}", file=sys.stderr)
        os._exit(1)
    gc.freeze()  # the collector leaves what is loaded alone: fewer copied pages in each attempt
    return become(serve(module))


def run(module: str) -> None:
    """Runs the attempt's module as `python -m` does, then exits as the interpreter would.

    The exit status, the traceback of an uncaught exception, atexit handlers, the wait for
    non-daemon threads and the flushing of stdout and stderr are the interpreter's. What is
    skipped is tearing the heap down (Py_FinalizeEx): in a forked copy of the launcher that
    writes to every shared page, and costs more than the job itself when the job is short.
    """
    import atexit
    import runpy

    code = signum = 0
    try:
        runpy._run_module_as_main(module)  # what `python -m` runs
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        signum = signal.SIGINT  # as CPython: the process ends by the signal
    except BaseException:  # reported as the interpreter reports it
        sys.excepthook(*sys.exc_info())
        code = 1
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()  # joins non-daemon threads, as the interpreter does at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            code = code or 120  # as CPython when flushing stdout fails at exit
    if signum:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    os._exit(code & 0xFF)


def _exit_status(value: object) -> int:
    """SystemExit's code as an exit status (None: 0; text: printed to stderr, 1)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    try:
        print(value, file=sys.stderr)
    except Exception:  # stderr itself is broken: the status still stands
        pass
    return 1


if __name__ == "__main__":
    run(main())
