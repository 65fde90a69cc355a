"""The interpreter an image provides on this host: one small virtual environment per image.

Without Docker there is no image to pull, so each image name (a registry URI or a local
``file://`` folder) gets a runtime folder under the engine's state: a virtual environment
made by hand (a ``bin/python`` link to the engine's base interpreter and a ``pyvenv.cfg``,
microseconds, no subprocess) whose ``site-packages`` holds one ``.pth`` file naming, after its
own folder, the Conveyor code the engine runs (so ``python -m chalicelib.runner`` works in a
pipeline's jobs) and the engine's library folders, read-only by construction:

- ``python -m pip install X`` inside a job installs into the image's runtime folder (pip
  installs under ``sys.prefix`` and will not uninstall what lies outside it), so a job can
  never change the engine's installation through its tools; what it installs stays for later
  jobs of the same image on this engine, as on a long-lived host;
- the engine's virtual environment is never on a job's ``PATH``.

Its ``bin`` comes after a local image's folder and before the system's folders on ``PATH``.
"""

from __future__ import annotations

import hashlib
import os
import re
import site
import sys
import sysconfig
import threading

import chalicelib

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _code_root() -> str:
    """The folder the running Conveyor package is imported from (not PYTHONPATH's words)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(chalicelib.__file__)))


def _library_folders() -> list[str]:
    folders = [_code_root()]
    for folder in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]:
        if folder not in folders and os.path.isdir(folder):
            folders.append(folder)
    return folders


def _base_interpreter() -> str:
    return getattr(sys, "_base_executable", None) or sys.executable


class RuntimeImages:
    """Makes (once per image name) and finds the runtime folder of an image."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._made: dict[str, str] = {}
        self._lock = threading.Lock()

    def folder(self, image: str) -> str:
        """The image's runtime folder (made on first use)."""
        known = self._made.get(image)
        if known is not None:
            return known
        with self._lock:
            known = self._made.get(image)
            if known is None:
                known = self._made[image] = self._make(image)
        return known

    def bin_dir(self, image: str) -> str:
        return f"{self.folder(image)}/bin"

    def _make(self, image: str) -> str:
        digest = hashlib.sha256(image.encode()).hexdigest()[:10]
        name = f"{_SAFE.sub('_', image)[-60:] or 'none'}-{digest}"
        folder = os.path.join(self.root, name)
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        packages = os.path.join(folder, "lib", version, "site-packages")
        os.makedirs(packages, exist_ok=True)
        os.makedirs(os.path.join(folder, "bin"), exist_ok=True)
        interpreter = _base_interpreter()
        for link in ("python", "python3", version):
            path = os.path.join(folder, "bin", link)
            if not os.path.lexists(path):
                os.symlink(interpreter, path)
        _write_if_changed(os.path.join(folder, "pyvenv.cfg"),
                          f"home = {os.path.dirname(interpreter)}\ninclude-system-site-packages = false\n"
                          f"version = {'.'.join(map(str, sys.version_info[:3]))}\n")
        # Named to sort last: a job's own .pth files (from its pip installs) act first.
        _write_if_changed(os.path.join(packages, "zz-conveyor-engine-libraries.pth"),
                          "".join(f"{path}\n" for path in _library_folders()))
        return folder


def _write_if_changed(path: str, text: str) -> None:
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return
    except OSError:
        pass
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)
