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


def build_base_env(environ: Mapping[str, str], python_executable: str) -> dict[str, str]:
    """The engine's environment with its own Python's folder first on PATH."""
    env = dict(environ)
    bin_dir = os.path.dirname(python_executable)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}" if env.get("PATH") else bin_dir
    return env


def resolve_local_image(image: str | None) -> str | None:
    """Returns the folder of a local image (``file://`` URL or absolute dir).

    Other image strings (registry names) return None: processes ignore them.
    """
    if not image:
        return None
    if image.startswith("file://"):
        return unquote(image[len("file://") :]) or "/"
    if os.path.isabs(image) and os.path.isdir(image):
        return image
    return None


def _prepend(folder: str, current: str | None) -> str:
    return f"{folder}{os.pathsep}{current}" if current else folder


def build_child_env(
    base: Mapping[str, str],
    extra: Mapping[str, str],
    *,
    attempt_key: str,
    token: str,
    image_dir: str | None = None,
    gpu_ids: tuple[int, ...] = (),
) -> dict[str, str]:
    """Merges base env, the request's variables, the local image and our tags."""
    env = dict(base)
    env.update(extra)
    if image_dir is not None:
        env["PATH"] = _prepend(image_dir, env.get("PATH"))
        env["PYTHONPATH"] = _prepend(image_dir, env.get("PYTHONPATH"))
    if gpu_ids and "CUDA_VISIBLE_DEVICES" not in extra:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in gpu_ids)
    # Set last so a job cannot hide from kill_orphans by overriding them.
    env[TOKEN_VAR] = token
    env[ATTEMPT_VAR] = attempt_key
    return env


class EnvBuilder:
    """Builds child environments fast: the engine's own environment is encoded once.

    Popen encodes every variable on every launch; handing it bytes for the ~50
    inherited variables leaves only the job's own few to encode.
    """

    _EDITED = ("PATH", "PYTHONPATH", "CUDA_VISIBLE_DEVICES")

    def __init__(self, base: Mapping[str, str]) -> None:
        self._encoded = {os.fsencode(name): os.fsencode(value) for name, value in base.items()}
        # The only inherited variables build_child_env may rewrite.
        self._edited = {name: base[name] for name in self._EDITED if name in base}

    def build(
        self,
        extra: Mapping[str, str],
        *,
        attempt_key: str,
        token: str,
        image_dir: str | None = None,
        gpu_ids: tuple[int, ...] = (),
    ) -> tuple[dict[bytes, bytes], str | None]:
        """Returns the encoded environment and its PATH (for the program lookup).

        Raises:
            TypeError: a name or value is not a string.
        """
        overlay = build_child_env(self._edited, extra, attempt_key=attempt_key, token=token,
                                  image_dir=image_dir, gpu_ids=gpu_ids)
        env = self._encoded.copy()
        for name, value in overlay.items():
            env[os.fsencode(name)] = os.fsencode(value)
        return env, overlay.get("PATH")


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
