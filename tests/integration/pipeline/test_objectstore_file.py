"""file:// object store on a real folder: root and symlink escapes refused, atomic folder publish."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.objectstores import open_store
from chalicelib.pipeline.errors import ObjectStoreError, PathEscapeError
from chalicelib.pipeline.objectstore import download_folder, is_published


def test_basic_operations(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = open_store(root)
    base = root.as_uri()
    store.put_bytes(f"{base}/a/b.txt", b"hi")
    assert store.get_bytes(f"{base}/a/b.txt") == b"hi"
    assert store.exists(f"{base}/a/b.txt") and not store.exists(f"{base}/a")
    assert store.list(base) == [f"{base}/a/b.txt"]
    assert store.list(f"{base}/nothing") == []
    with pytest.raises(ObjectStoreError, match="object not found"):
        store.get_bytes(f"{base}/zzz")
    store.delete_prefix(f"{base}/a")
    assert store.list(base) == []


def test_escapes_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / "link").symlink_to(outside)
    store = open_store(root)
    for uri in (f"{root.as_uri()}/../outside/x", (tmp_path / "other").as_uri(), f"{root.as_uri()}/link/x"):
        with pytest.raises(PathEscapeError):
            store.put_bytes(uri, b"x")
    assert list(outside.iterdir()) == []


def test_publish_folder_is_all_or_nothing_and_replaces(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    prefix = f"{(tmp_path / 'store').as_uri()}/stage/s1"
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("one")
    store.publish_folder(out, prefix)
    assert is_published(store, prefix)
    (out / "a.txt").unlink()
    (out / "b.txt").write_text("two")
    store.publish_folder(out, prefix)
    assert sorted(p.name for p in (tmp_path / "store" / "stage" / "s1").iterdir()) == ["_SUCCESS", "b.txt"]
    copied = download_folder(store, prefix, tmp_path / "back")
    assert [p.name for p in copied] == ["b.txt"]
    # Only the published folder is visible: no temporary or old folders remain.
    assert [p.name for p in (tmp_path / "store" / "stage").iterdir()] == ["s1"]


def test_range_reads(tmp_path: Path) -> None:
    root = f"file://{tmp_path}/runs"
    store = open_store(root)
    store.put_bytes(f"{root}/m.json", b"0123456789")
    assert store.get_range(f"{root}/m.json", 2, 5) == b"234"
    assert store.get_range(f"{root}/m.json", 8, 20) == b"89"
    assert store.get_range(f"{root}/m.json", 12, 20) == b""
    with pytest.raises(ObjectStoreError, match="object not found"):
        store.get_range(f"{root}/missing", 0, 4)
