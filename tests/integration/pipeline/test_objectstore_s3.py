"""S3 object store under moto: reads, listing, escapes refused, publish with the _SUCCESS marker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.objectstores import open_store
from chalicelib.pipeline.errors import ObjectStoreError, PathEscapeError
from chalicelib.pipeline.objectstore import download_folder, is_published

ROOT = "s3://conveyor-test/runs/r1"


@pytest.fixture()
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="conveyor-test")
        yield client


def test_put_get_exists_list(s3: Any) -> None:
    store = open_store(ROOT, s3_client=s3)
    store.put_bytes(f"{ROOT}/manifest.json", b"{}")
    store.put_bytes(f"{ROOT}/a/s1/x.txt", b"x")
    assert store.get_bytes(f"{ROOT}/manifest.json") == b"{}"
    assert store.exists(f"{ROOT}/a/s1/x.txt") and not store.exists(f"{ROOT}/a/s1/y.txt")
    assert store.list(f"{ROOT}/a") == [f"{ROOT}/a/s1/x.txt"]
    assert store.list(f"{ROOT}/a/s") == []  # a prefix is a folder, not a string prefix
    with pytest.raises(ObjectStoreError, match="object not found"):
        store.get_bytes(f"{ROOT}/missing")


@pytest.mark.parametrize(
    "uri",
    ["s3://conveyor-test/runs/r2/x", "s3://other/runs/r1/x", f"{ROOT}/../r2/x", f"{ROOT}/a//b", "file:///etc/passwd"],
)
def test_uris_outside_the_root_are_refused(s3: Any, uri: str) -> None:
    store = open_store(ROOT, s3_client=s3)
    with pytest.raises(PathEscapeError):
        store.put_bytes(uri, b"x")


def test_publish_replaces_leftovers_and_writes_the_marker_last(s3: Any, tmp_path: Path) -> None:
    store = open_store(ROOT, s3_client=s3)
    prefix = f"{ROOT}/align/s1"
    store.put_bytes(f"{prefix}/stale-from-crashed-attempt.bam", b"half")
    assert not is_published(store, prefix)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "s1.bam").write_bytes(b"bam")
    (out / "sub" / "s1.bai").write_bytes(b"bai")
    uris = store.publish_folder(out, prefix)
    assert uris[-1] == f"{prefix}/_SUCCESS"
    assert store.list(prefix) == [f"{prefix}/_SUCCESS", f"{prefix}/s1.bam", f"{prefix}/sub/s1.bai"]
    assert is_published(store, prefix)
    local = download_folder(store, prefix, tmp_path / "back")
    assert sorted(p.relative_to(tmp_path / "back").as_posix() for p in local) == ["s1.bam", "sub/s1.bai"]
    assert (tmp_path / "back" / "sub" / "s1.bai").read_bytes() == b"bai"


def test_upload_download_and_delete(s3: Any, tmp_path: Path) -> None:
    store = open_store("s3://conveyor-test", s3_client=s3)
    source = tmp_path / "in.txt"
    source.write_text("hello")
    store.upload(source, "s3://conveyor-test/data/in.txt")
    store.download("s3://conveyor-test/data/in.txt", tmp_path / "deep" / "copy.txt")
    assert (tmp_path / "deep" / "copy.txt").read_text() == "hello"
    with pytest.raises(ObjectStoreError, match="object not found"):
        store.download("s3://conveyor-test/data/nope.txt", tmp_path / "n.txt")
    store.delete_prefix("s3://conveyor-test/data")
    assert store.list("s3://conveyor-test/data") == []


def test_download_folder_refuses_keys_escaping_the_local_folder(s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket="conveyor-test", Key="runs/r1/a/s1/../../../../evil.txt", Body=b"x")
    store = open_store(ROOT, s3_client=s3)
    with pytest.raises(PathEscapeError):
        download_folder(store, f"{ROOT}/a/s1", tmp_path / "dst")
    assert not (tmp_path / "evil.txt").exists()


def test_range_reads(s3: Any) -> None:
    store = open_store(ROOT, s3_client=s3)
    store.put_bytes(f"{ROOT}/m.json", b"0123456789")
    assert store.get_range(f"{ROOT}/m.json", 2, 5) == b"234"
    assert store.get_range(f"{ROOT}/m.json", 8, 20) == b"89"  # fewer past the end
    assert store.get_range(f"{ROOT}/m.json", 12, 20) == b""  # starts past the end
    assert store.get_range(f"{ROOT}/m.json", 3, 3) == b""
    with pytest.raises(ObjectStoreError, match="object not found"):
        store.get_range(f"{ROOT}/missing", 0, 4)
