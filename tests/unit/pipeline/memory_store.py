"""An in-memory ObjectStore for unit tests (same root and escape rules as the real ones)."""

from __future__ import annotations

from pathlib import Path

from chalicelib.pipeline.errors import ObjectStoreError, PathEscapeError
from chalicelib.pipeline.objectstore import SUCCESS_MARKER, has_dot_segments, is_under, local_files


class MemoryStore:
    def __init__(self, root: str = "s3://bucket", objects: dict[str, bytes] | None = None) -> None:
        self.root = root
        self.objects: dict[str, bytes] = dict(objects or {})

    def _check(self, uri: str) -> str:
        if has_dot_segments(uri) or not is_under(uri, self.root):
            raise PathEscapeError(f"{uri!r} is outside the store root {self.root!r}")
        return uri

    def get_bytes(self, uri: str) -> bytes:
        try:
            return self.objects[self._check(uri)]
        except KeyError:
            raise ObjectStoreError(f"object not found: {uri}") from None

    def get_range(self, uri: str, start: int, end: int) -> bytes:
        return self.get_bytes(uri)[start:max(start, end)]

    def put_bytes(self, uri: str, data: bytes) -> None:
        self.objects[self._check(uri)] = data

    def exists(self, uri: str) -> bool:
        return self._check(uri) in self.objects

    def list(self, prefix: str) -> list[str]:
        base = self._check(prefix).rstrip("/") + "/"
        return sorted(uri for uri in self.objects if uri.startswith(base))

    def download(self, uri: str, local_path: Path) -> None:
        local_path.parent.mkdir(parents=True, exist_ok=True)
        local_path.write_bytes(self.get_bytes(uri))

    def upload(self, local_path: Path, uri: str) -> None:
        self.put_bytes(uri, local_path.read_bytes())

    def delete_prefix(self, prefix: str) -> None:
        for uri in self.list(prefix):
            del self.objects[uri]

    def publish_folder(self, local_dir: Path, prefix: str) -> list[str]:
        self.delete_prefix(prefix)
        uris = []
        for key, path in local_files(local_dir):
            uris.append(f"{prefix.rstrip('/')}/{key}")
            self.upload(path, uris[-1])
        marker = f"{prefix.rstrip('/')}/{SUCCESS_MARKER}"
        self.put_bytes(marker, b"")
        return [*uris, marker]
