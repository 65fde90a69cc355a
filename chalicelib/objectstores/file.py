"""``file://`` ObjectStore: objects are files under a root folder.

Publishing builds the folder under a temporary sibling name and renames it
into place (a rename within one file system is atomic), so a reader sees
either the old folder, nothing, or the complete new one with its marker.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from chalicelib.pipeline.errors import ObjectStoreError, PathEscapeError
from chalicelib.pipeline.objectstore import (
    SUCCESS_MARKER,
    UriList,
    file_path,
    has_dot_segments,
    is_under,
    local_files,
    to_uri,
)


def _token() -> str:
    """A unique suffix for temporary names (uuid4's randomness, without importing uuid per job)."""
    return os.urandom(16).hex()


class FileObjectStore:
    """Objects as files below ``root`` (a ``file://`` URI)."""

    def __init__(self, root: str = "file:///") -> None:
        self.root = to_uri(root)
        self._root_path = file_path(self.root)

    def _path(self, uri: str) -> Path:
        uri = to_uri(uri)
        if has_dot_segments(uri) or not is_under(uri, self.root):
            raise PathEscapeError(f"{uri[:100]!r} is outside the store root {self.root!r}")
        path = file_path(uri)
        # A symlink inside the root may point elsewhere: compare real paths
        # (non-strict resolve follows the links that exist, keeps the rest).
        if not path.resolve().is_relative_to(self._root_path.resolve()):
            raise PathEscapeError(f"{uri[:100]!r} leaves the store root {self.root!r} through a symlink")
        return path

    def get_bytes(self, uri: str) -> bytes:
        path = self._path(uri)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectStoreError(f"object not found: {uri}") from None
        except IsADirectoryError:
            raise ObjectStoreError(f"{uri} is a folder, not an object") from None

    def get_range(self, uri: str, start: int, end: int) -> bytes:
        path = self._path(uri)
        try:
            with path.open("rb") as handle:
                handle.seek(start)
                return handle.read(max(0, end - start))
        except FileNotFoundError:
            raise ObjectStoreError(f"object not found: {uri}") from None
        except IsADirectoryError:
            raise ObjectStoreError(f"{uri} is a folder, not an object") from None

    def put_bytes(self, uri: str, data: bytes) -> None:
        path = self._path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp-{_token()}")
        temp.write_bytes(data)
        os.replace(temp, path)

    def exists(self, uri: str) -> bool:
        return self._path(uri).is_file()

    def list(self, prefix: str) -> UriList:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        base = to_uri(prefix).rstrip("/")
        # Temporary publish folders and files start with "." and are never listed.
        return [
            f"{base}/{key}"
            for key, _ in local_files(folder)
            if not any(part.startswith(".") for part in key.split("/"))
        ]

    def download(self, uri: str, local_path: Path) -> None:
        source = self._path(uri)
        if not source.is_file():
            raise ObjectStoreError(f"object not found: {uri}")
        local_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, local_path)

    def upload(self, local_path: Path, uri: str) -> None:
        target = self._path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.tmp-{_token()}")
        shutil.copyfile(local_path, temp)
        os.replace(temp, target)

    def delete_prefix(self, prefix: str) -> None:
        folder = self._path(prefix)
        if folder.is_dir():
            shutil.rmtree(folder)
        elif folder.exists():
            folder.unlink()

    def publish_folder(self, local_dir: Path, prefix: str) -> UriList:
        target = self._path(prefix)
        files = local_files(local_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        token = _token()
        staging = target.with_name(f".{target.name}.publish-{token}")
        for key, path in files:
            destination = staging / key
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
        staging.mkdir(parents=True, exist_ok=True)
        (staging / SUCCESS_MARKER).write_bytes(b"")
        if target.exists():
            # Move the old folder aside first: rename cannot replace a non-empty folder.
            old = target.with_name(f".{target.name}.old-{token}")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
        base = to_uri(prefix).rstrip("/")
        return [f"{base}/{key}" for key, _ in files] + [f"{base}/{SUCCESS_MARKER}"]
