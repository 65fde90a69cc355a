"""Compiles spawner.c on first use into a per-user cache; returns the binary's path or None.

The binary is named after a hash of the source and flags, so an edited source
builds a new binary and never runs a stale one. Compiling goes to a temporary
name that is renamed into place, so concurrent engines never run a half-written
file. No compiler is not an error: the caller falls back to the Python executor.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("spawner.c")
FLAGS = ("-std=c99", "-O2", "-Wall", "-Werror")
COMPILE_TIMEOUT_SECONDS = 60.0

_lock = threading.Lock()
_built: dict[str, str | None] = {}  # cache folder -> path (None: failed, with the reason logged once)
_last_error: list[str] = []


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/conveyor``, else ``~/.cache/conveyor``."""
    base = os.environ.get("XDG_CACHE_HOME")
    if base and os.path.isabs(base):
        return Path(base) / "conveyor"
    return Path.home() / ".cache" / "conveyor"


def find_compiler() -> str | None:
    """``$CC`` if set and found, else cc, gcc or clang on PATH."""
    names = [os.environ["CC"]] if os.environ.get("CC") else []
    for name in [*names, "cc", "gcc", "clang"]:
        found = shutil.which(name)
        if found:
            return found
    return None


def binary_name(source: bytes) -> str:
    digest = hashlib.sha256(source + " ".join(FLAGS).encode()).hexdigest()[:12]
    return f"conveyor-spawner-{digest}"


def last_error() -> str:
    """Why the last build returned None (empty when it did not)."""
    return _last_error[-1] if _last_error else ""


def spawner_path() -> str | None:
    """Returns an executable spawner, compiling it once if needed; None if impossible."""
    with _lock:
        for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"conveyor-{os.getuid()}"):
            key = str(folder)
            if key not in _built:
                _built[key] = _build_into(folder)
            if _built[key] is not None:
                return _built[key]
        return None


def _fail(reason: str) -> None:
    _last_error.append(reason)
    logger.info("conveyor-spawner unavailable: %s", reason)


def _owned_by_us(path: Path) -> bool:
    """We only run a binary nobody else could have planted (think /tmp)."""
    try:
        info = path.stat()
    except OSError as err:
        _fail(f"cannot stat {path}: {err}")
        return False
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        _fail(f"{path} is not owned by us or is writable by others; not running a binary from it")
        return False
    return True


def _build_into(folder: Path) -> str | None:
    try:
        source = SOURCE.read_bytes()
    except OSError as err:
        _fail(f"cannot read {SOURCE}: {err}")
        return None
    target = folder / binary_name(source)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        _fail(f"cannot create {folder}: {err}")
        return None
    if not _owned_by_us(folder):
        return None
    if os.access(target, os.X_OK) and _owned_by_us(target):
        return str(target)
    compiler = find_compiler()
    if compiler is None:
        _fail("no C compiler (cc, gcc or clang) on PATH")
        return None
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}-", dir=folder)
        os.close(fd)
    except OSError as err:
        _fail(f"cannot write to {folder}: {err}")
        return None
    try:
        result = subprocess.run([compiler, *FLAGS, "-o", temp, str(SOURCE)], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=COMPILE_TIMEOUT_SECONDS, check=False)
        if result.returncode != 0:
            _fail(f"{compiler} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
            return None
        os.chmod(temp, 0o755)
        os.replace(temp, target)  # atomic: another engine may be building the same file
        logger.info("built %s", target)
        return str(target)
    except (OSError, subprocess.SubprocessError) as err:
        _fail(f"compiling {SOURCE} failed: {err}")
        return None
    finally:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
