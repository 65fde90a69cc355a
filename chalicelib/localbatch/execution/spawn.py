"""Prepares a child process: environment, local images, PATH lookup, log and scratch files.

Everything here is either pure (unit-tested) or a single cheap syscall, because
it runs on the launch path of every attempt.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from urllib.parse import unquote

TOKEN_VAR = "CONVEYOR_ENGINE_TOKEN"
ATTEMPT_VAR = "CONVEYOR_ATTEMPT_KEY"
START_ERROR = "CannotStartContainerError"


def tag_env(overlay: Mapping[str, str], *, attempt_key: str, token: str) -> dict[str, str]:
    """The attempt's variables plus the engine's tags.

    The tags are set last so a job definition cannot hide from the restart kill by
    overriding them; they are only the fallback where cgroups are unusable (a job can
    still drop them with ``env -i``; a cgroup it cannot leave).
    """
    env = dict(overlay)
    env[TOKEN_VAR] = token
    env[ATTEMPT_VAR] = attempt_key
    return env


def resolve_local_image(image: str | None) -> str | None:
    """Returns the folder of a local image (``file://`` URL or absolute dir).

    Other image strings (registry names) return None: they run on the image's runtime
    folder alone (see runtime_images.py).
    """
    if not image:
        return None
    if image.startswith("file://"):
        return unquote(image[len("file://") :]) or "/"
    if os.path.isabs(image) and os.path.isdir(image):
        return image
    return None


class EnvBuilder:
    """Builds child environments fast: the container's base variables are encoded once.

    Popen encodes every variable on every launch; handing it bytes for the base
    leaves only the attempt's own variables to encode.
    """

    def __init__(self, base: Mapping[str, str]) -> None:
        self._encoded = {os.fsencode(name): os.fsencode(value) for name, value in base.items()}

    def build(self, overlay: Mapping[str, str]) -> dict[bytes, bytes]:
        """Returns the encoded environment: the base with ``overlay`` on top.

        Raises:
            TypeError: a name or value is not a string.
        """
        env = self._encoded.copy()
        for name, value in overlay.items():
            env[os.fsencode(name)] = os.fsencode(value)
        return env


class ExecutableCache:
    """Resolves a command name on PATH in the parent, remembering answers briefly.

    Why: given a bare name, the child tries ``execve`` in every PATH folder in
    turn; with the venv and image folders first that is several failed execs
    per job (~150 us here). Entries expire after ``ttl`` seconds so a program
    installed later, earlier on PATH, is still found.
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self._ttl = ttl
        self._entries: dict[tuple[str, str], tuple[str, float]] = {}

    def resolve(self, name: str, path_value: str | None) -> str | None:
        """Returns the absolute program for ``name``, or None to let exec search."""
        if not name or os.sep in name or not path_value:
            return None
        key = (name, path_value)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = self._search(name, path_value)
        if found is not None:
            if len(self._entries) > 256:
                self._entries.clear()
            self._entries[key] = (found, now + self._ttl)
        return found

    @staticmethod
    def _search(name: str, path_value: str) -> str | None:
        folders = path_value.split(os.pathsep)
        # A relative folder is relative to the child's cwd: leave it to exec.
        if any(not os.path.isabs(folder) for folder in folders):
            return None
        for folder in folders:
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        return None


def describe_start_error(err: BaseException) -> str:
    """Turns a Popen/open failure into AWS's ``CannotStartContainerError: ...``."""
    if isinstance(err, OSError) and err.strerror:
        subject = err.filename if err.filename is not None else ""
        detail = f"{subject}: {err.strerror}" if subject else err.strerror
    else:
        detail = str(err) or type(err).__name__
    return f"{START_ERROR}: {detail}"


def open_log(path: str) -> int:
    """Opens (creating it and its folders) the attempt's log for appending."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, flags, 0o644)


def make_workdir(path: str) -> None:
    """Creates the attempt's working folder; one syscall in the common case."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


def signal_group(pgid: int, sig: int) -> None:
    """Signals a process group, ignoring one that is already gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
