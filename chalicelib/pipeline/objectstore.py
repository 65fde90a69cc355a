"""ObjectStore port (manifests, outputs): the Protocol and URI helpers (the factory is chalicelib.objectstores).

Two implementations, chosen by URI scheme at the composition root:
``objectstore_file.FileObjectStore`` (``file:///abs/folder``, or a plain
absolute path) and ``objectstore_s3.S3ObjectStore`` (``s3://bucket/prefix``).

Every store has a root prefix and refuses any URI outside it, any key with
``..`` or an empty segment, and (``file://``) any path that leaves the root
through a symlink: ``PathEscapeError``.

Publishing a folder (``publish_folder``) writes its files and then a
``_SUCCESS`` marker last; a folder counts as published only when the marker is
there (``is_published``). ``file://`` additionally builds the folder under a
temporary name and renames it into place, so readers never see half of it.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from chalicelib.pipeline.errors import ObjectStoreError, PathEscapeError

SUCCESS_MARKER = "_SUCCESS"
# A folder a rerun did not recompute holds only this: the URI of the earlier run's published folder.
REFERENCE_MARKER = "_REF"
MAX_REFERENCE_HOPS = 64  # a rerun of a rerun ... refers at most this deep (and a loop ends)
# The stores have a method named ``list``; this alias keeps annotations unambiguous.
UriList = list[str]


@runtime_checkable
class ObjectStore(Protocol):
    """Objects addressed by full URIs under the store's ``root``."""

    root: str

    def get_bytes(self, uri: str) -> bytes:
        """Reads an object. Raises ObjectStoreError when missing."""

    def get_range(self, uri: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of an object, fewer past its end. Raises ObjectStoreError when missing."""

    def put_bytes(self, uri: str, data: bytes) -> None:
        """Writes an object (whole, replacing any old one)."""

    def exists(self, uri: str) -> bool:
        """Whether an object exists at exactly ``uri``."""

    def list(self, prefix: str) -> UriList:
        """URIs of every object under ``prefix`` (recursive), sorted."""

    def download(self, uri: str, local_path: Path) -> None:
        """Copies one object to a local file (parents created)."""

    def upload(self, local_path: Path, uri: str) -> None:
        """Copies one local file to an object."""

    def delete_prefix(self, prefix: str) -> None:
        """Deletes every object under ``prefix``."""

    def publish_folder(self, local_dir: Path, prefix: str) -> UriList:
        """Publishes a local folder's files under ``prefix``, then the ``_SUCCESS`` marker.

        Anything already under ``prefix`` is replaced. Returns the published URIs.
        """


def to_uri(location: str | Path) -> str:
    """A URI for a location: ``s3://`` and ``file://`` stay, a local path becomes ``file://``."""
    text = str(location)
    if text.startswith(("s3://", "file://")):
        return text
    if "://" in text:
        raise ObjectStoreError(f"unsupported URI scheme in {text[:60]!r} (expected file:// or s3://)")
    return Path(text).resolve().as_uri()


def file_path(uri: str) -> Path:
    """The local path of a ``file://`` URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ObjectStoreError(f"not a file:// URI: {uri[:80]!r}")
    if parsed.netloc not in ("", "localhost"):
        raise ObjectStoreError(f"file:// URI with a host is not supported: {uri[:80]!r}")
    return Path(unquote(parsed.path))


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://`` URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ObjectStoreError(f"not an s3://bucket/key URI: {uri[:80]!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def check_key(key: str) -> str:
    """Refuses a relative key that is absolute or has ``..``/``.`` or empty segments.

    Raises:
        PathEscapeError: the key would leave the folder it is joined to.
    """
    if not key:
        raise PathEscapeError("empty key")
    if key.startswith("/") or key.startswith("\\") or (len(key) > 1 and key[1] == ":"):
        raise PathEscapeError(f"absolute key {key[:80]!r} refused (expected a relative key)")
    parts = key.replace("\\", "/").split("/")
    if any(part in ("..", ".") for part in parts):
        raise PathEscapeError(f"key {key[:80]!r} refused: '..' or '.' segments may escape the prefix")
    if any(part == "" for part in parts[:-1]):
        raise PathEscapeError(f"key {key[:80]!r} refused: empty path segment")
    return key


def join_uri(prefix: str, *keys: str) -> str:
    """``prefix`` + ``/`` + each key, after ``check_key`` on each.

    Raises:
        PathEscapeError: a key is absolute or has ``..``.
    """
    uri = prefix.rstrip("/")
    for key in keys:
        uri = f"{uri}/{check_key(key).strip('/')}"
    return uri


def relative_key(prefix: str, uri: str) -> str:
    """The part of ``uri`` below ``prefix`` (which must contain it)."""
    base = prefix.rstrip("/") + "/"
    if not uri.startswith(base):
        raise PathEscapeError(f"{uri[:80]!r} is not under {prefix[:80]!r}")
    return uri[len(base):]


def is_under(uri: str, root: str) -> bool:
    """Whether ``uri`` equals ``root`` or lies below it, after normalising ``.``/``..``."""
    parsed, base = urlparse(uri), urlparse(root)
    if parsed.scheme != base.scheme or parsed.netloc != base.netloc:
        return False
    path = posixpath.normpath("/" + unquote(parsed.path))
    root_path = posixpath.normpath("/" + unquote(base.path))
    return root_path == "/" or path == root_path or path.startswith(root_path.rstrip("/") + "/")


def has_dot_segments(uri: str) -> bool:
    return any(part in ("..", ".") for part in urlparse(uri).path.split("/"))


def is_published(store: ObjectStore, prefix: str) -> bool:
    """Whether a folder was published completely (its ``_SUCCESS`` marker exists)."""
    return store.exists(join_uri(prefix, SUCCESS_MARKER))


def read_reference(store: ObjectStore, prefix: str) -> str | None:
    """The published folder ``prefix`` refers to (a rerun's reused output), or None when it holds none."""
    uri = join_uri(prefix, REFERENCE_MARKER)
    if not store.exists(uri):
        return None
    return store.get_bytes(uri).decode("utf-8").strip() or None


def published_origin(objects: Callable[[str], ObjectStore], prefix: str) -> str | None:
    """The folder that really holds ``prefix``'s published output, following references; None if none."""
    for _ in range(MAX_REFERENCE_HOPS):
        store = objects(prefix)
        if is_published(store, prefix):
            return prefix
        target = read_reference(store, prefix)
        if target is None:
            return None
        prefix = target
    return None


def download_folder(store: ObjectStore, prefix: str, local_dir: Path) -> list[Path]:
    """Copies every object under ``prefix`` (but the marker) into ``local_dir``.

    Raises:
        PathEscapeError: an object key that would land outside ``local_dir``.
    """
    local_dir.mkdir(parents=True, exist_ok=True)
    root = local_dir.resolve()
    paths = []
    for uri in store.list(prefix):
        rel = check_key(relative_key(prefix, uri))
        if rel == SUCCESS_MARKER:
            continue
        target = root / rel
        if not target.resolve().is_relative_to(root):
            raise PathEscapeError(f"object {rel[:80]!r} would be written outside {local_dir}")
        store.download(uri, target)
        paths.append(target)
    return paths


def local_files(local_dir: Path) -> list[tuple[str, Path]]:
    """(relative key, path) of every file under ``local_dir``, refusing symlinks that leave it.

    Links to folders are not followed (a link to a file inside is listed as that file). One
    ``scandir`` per folder, its entries' types read from the listing: 30,000 item files are
    listed without a stat each.

    Raises:
        PathEscapeError: a symlink pointing outside ``local_dir``.
    """
    root = local_dir.resolve()
    keys: list[str] = []
    folders = [("", str(local_dir))]
    while folders:
        prefix, folder = folders.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                key = prefix + entry.name
                if entry.is_symlink():
                    if not Path(entry.path).resolve().is_relative_to(root):
                        raise PathEscapeError(f"{key} links outside the output folder")
                    if entry.is_file():
                        keys.append(key)
                elif entry.is_dir():
                    folders.append((key + "/", entry.path))
                elif entry.is_file():
                    keys.append(key)
    keys.sort(key=lambda key: key.split("/"))  # folder by folder, as paths sort
    return [(key, local_dir / key) for key in keys]
