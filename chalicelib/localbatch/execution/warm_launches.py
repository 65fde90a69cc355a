"""Which attempts may start from a warm launcher, and the launchers each spawner runs.

A job whose command is ``python -m MODULE ...`` pays for the interpreter's start and its
imports on every attempt (the pipeline runner: about 45 ms of CPU, as much as many tools).
A warm launcher (``warm_launcher.py``, started by conveyor-spawner) pays that once and
forks per attempt. It is generic (any interpreter, any module) but opt-in per module:
modules imported ahead of time see the launcher's environment, not the attempt's, when
they run their top level, so only modules known not to care are warmed (``serve
--warm-python-module``; the pipeline runner is warmed by default).

A launcher serves attempts whose interpreter (the resolved program) and whose start-up
variables (``PYTHON*``, the locale) are its own, so it imports what a cold start of that
attempt would. Each spawner runs up to ``MAX_LAUNCHERS`` of them, started on the first
attempt that needs one: that attempt (and any until the launcher is ready) starts cold.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from chalicelib.localbatch.execution.spawn import ATTEMPT_VAR, TOKEN_VAR

LAUNCHER_SCRIPT = Path(__file__).with_name("warm_launcher.py")
MAX_LAUNCHERS = 8  # per spawner, as spawner.c
LAUNCHER_KEY_PREFIX = "warm-launcher-"
# Read when an interpreter starts, before any of the job's code: they decide sys.path,
# the encodings and the flags, so a launcher only serves attempts that agree on them.
_LOCALE_VARS = ("LANG", "LC_ALL", "LC_CTYPE")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def parse_warm_modules(entries: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``MODULE[:PRELOAD,...]`` entries -> {MODULE: (PRELOAD, ...)}.

    PRELOAD modules are imported by the launcher besides MODULE's package (the runner's
    ``chalicelib.runner:chalicelib.runner.main`` loads everything a job imports).

    Raises:
        ValueError: an entry that is not a dotted module name (the entry is named).
    """
    modules: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        module, _, rest = entry.partition(":")
        preloads = tuple(name for name in rest.split(",") if name) if rest else ()
        for name in (module, *preloads):
            if not _MODULE.match(name):
                raise ValueError(f"warm module {entry!r}: expected MODULE[:PRELOAD,...] of dotted Python "
                                 f"module names, got {name!r}")
        modules[module] = preloads
    return modules


def startup_variables(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The variables an interpreter reads as it starts, sorted (a launcher's identity)."""
    return tuple(sorted((name, value) for name, value in env.items()
                        if name.startswith("PYTHON") or name in _LOCALE_VARS))


class WarmLaunches:
    """Decides, per launch, the launcher number to use (0: none) and starts launchers.

    ``launcher_for`` is called for every launch with the spawner link it goes to; it
    returns the number to put in the LAUNCH request, and the LAUNCHER request to send
    first when this is the first attempt that needs that launcher.
    """

    def __init__(self, modules: Mapping[str, tuple[str, ...]], token: str, home: str) -> None:
        self.modules = dict(modules)
        self._token = token
        self._home = home
        # Launchers carry the engine token (so a later engine's kill_orphans finds the
        # attempts they fork even without cgroups) under a key of their own, which this
        # engine counts as live.
        self.marker = f"{LAUNCHER_KEY_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._numbers: dict[tuple[int, str, str, tuple[tuple[str, str], ...]], int] = {}
        self._used: dict[int, int] = {}  # link id -> launchers started on it

    def wants(self, program: str | None, argv: Sequence[str]) -> bool:
        """Whether this launch is `python -m` of a listed module (cheap: checked on every launch)."""
        return bool(program) and len(argv) >= 3 and argv[1] == "-m" and argv[2] in self.modules

    def launcher_for(self, link_id: int, program: str | None, argv: Sequence[str],
                     env: Mapping[str, str]) -> tuple[int, dict[str, object] | None]:
        """(launcher number, or 0 for a plain launch; what to start first, or None)."""
        if not self.wants(program, argv):
            return 0, None
        variables = startup_variables(env)
        key = (link_id, program, argv[2], variables)
        with self._lock:
            number = self._numbers.get(key)
            if number is not None:
                return number, None
            used = self._used.get(link_id, 0)
            if used >= MAX_LAUNCHERS:
                return 0, None
            number = self._used[link_id] = used + 1
            self._numbers[key] = number
        start = {
            "number": number,
            "program": program,
            "argv": [program, str(LAUNCHER_SCRIPT), argv[2], *self.modules[argv[2]]],
            "env": {**dict(variables), "HOME": self._home, TOKEN_VAR: self._token, ATTEMPT_VAR: self.marker},
        }
        return number, start

    def forget_link(self, link_id: int) -> None:
        """A spawner is gone, and its launchers with it."""
        with self._lock:
            self._used.pop(link_id, None)
            for key in [key for key in self._numbers if key[0] == link_id]:
                del self._numbers[key]
