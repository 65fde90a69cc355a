"""Object store URI rules: keys and URIs that escape a root are refused; manifest layout and reads."""

from __future__ import annotations

import json
import struct

import pytest

from chalicelib.pipeline.errors import ItemsError, ObjectStoreError, PathEscapeError
from chalicelib.pipeline.manifest import (
    join_items_uri,
    read_item,
    read_manifest,
    stage_output_uri,
    write_join_items,
    write_manifest,
)
from chalicelib.pipeline.model import Item
from chalicelib.pipeline.objectstore import check_key, is_under, join_uri, split_s3, to_uri
from tests.unit.pipeline.memory_store import MemoryStore

RUN = "s3://bucket/runs/r1"


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", ".", "a/./b", "", "C:/x", "\\x"])
def test_escaping_keys_are_refused(key: str) -> None:
    with pytest.raises(PathEscapeError):
        check_key(key)


@pytest.mark.parametrize("key", ["a", "a/b.txt", "sample_1/R1.fq", "a/b/"])
def test_plain_keys_are_accepted(key: str) -> None:
    assert check_key(key) == key


def test_join_uri_refuses_escapes_and_joins_cleanly() -> None:
    assert join_uri(RUN + "/", "align", "s1") == f"{RUN}/align/s1"
    with pytest.raises(PathEscapeError, match="'..'"):
        join_uri(RUN, "align", "../../other")


@pytest.mark.parametrize(
    ("uri", "root", "inside"),
    [
        ("s3://bucket/runs/r1/a", "s3://bucket/runs/r1", True),
        ("s3://bucket/runs/r10/a", "s3://bucket/runs/r1", False),
        ("s3://other/runs/r1/a", "s3://bucket/runs/r1", False),
        ("s3://bucket/runs/r1/../r2/a", "s3://bucket/runs/r1", False),
        ("file:///data/x", "file:///", True),
        ("file:///tmp/a", "file:///data", False),
        ("s3://bucket/x", "file:///", False),
    ],
)
def test_is_under(uri: str, root: str, inside: bool) -> None:
    assert is_under(uri, root) is inside


def test_store_refuses_writes_outside_its_root() -> None:
    store = MemoryStore(RUN)
    with pytest.raises(PathEscapeError):
        store.put_bytes("s3://bucket/runs/r2/manifest.json", b"{}")
    with pytest.raises(PathEscapeError):
        store.put_bytes(f"{RUN}/../r2/manifest.json", b"{}")


def test_uri_helpers() -> None:
    assert to_uri("/data/reads") == "file:///data/reads"
    assert split_s3("s3://b/k/x.txt") == ("b", "k/x.txt")
    with pytest.raises(ObjectStoreError, match="unsupported URI scheme"):
        to_uri("http://example.com/x")


def test_manifest_round_trip_and_index_lookup() -> None:
    store = MemoryStore("s3://bucket")
    items = [Item(f"s{i}", (f"s3://bucket/reads/s{i}_R1.fq", f"s3://bucket/reads/s{i}_R2.fq")) for i in range(5)]
    uri = write_manifest(store, RUN, items)
    assert uri == f"{RUN}/manifest.json"
    assert read_manifest(store, uri) == items
    assert read_item(store, uri, 3) == items[3]
    with pytest.raises(ItemsError, match="item index 5 is outside manifest .* \\(5 items\\)"):
        read_item(store, uri, 5)


class CountingStore(MemoryStore):
    """Records which reads happen, to show a child does not read the whole manifest."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.whole: list[str] = []
        self.ranges: list[tuple[str, int, int]] = []

    def get_bytes(self, uri: str) -> bytes:
        self.whole.append(uri)
        return super().get_bytes(uri)

    def get_range(self, uri: str, start: int, end: int) -> bytes:
        self.ranges.append((uri, start, end))
        return MemoryStore.get_bytes(self, uri)[start:max(start, end)]


def test_a_child_reads_its_item_through_the_offsets_not_the_whole_manifest() -> None:
    store = CountingStore("s3://bucket")
    items = [Item(f"s{i}", (f"s3://bucket/reads/é{i}.fq",)) for i in range(1000)]
    uri = write_manifest(store, RUN, items)
    assert json.loads(store.objects[uri]) == json.loads(json.dumps(  # the same document as before offsets
        {"version": 1, "count": 1000, "items": [item.to_dict() for item in items]}))
    for index in (0, 1, 500, 999):
        assert read_item(store, uri, index) == items[index]
    assert store.whole == [] and len(store.ranges) == 8  # two small range reads per item
    with pytest.raises(ItemsError, match="item index 1000 is outside manifest .* \\(1000 items\\)"):
        read_item(store, uri, 1000)  # past the offsets: the whole manifest says how many there are


def test_without_or_with_a_stale_offsets_file_the_whole_manifest_is_read() -> None:
    store = CountingStore("s3://bucket")
    items = [Item(f"s{i}", (f"s3://bucket/reads/s{i}.fq",)) for i in range(3)]
    uri = write_manifest(store, RUN, items)
    del store.objects[uri + ".offsets"]
    assert read_item(store, uri, 2) == items[2] and store.whole == [uri]
    store.objects[uri + ".offsets"] = struct.pack("<4Q", 3, 9, 20, 30)  # points into the wrong bytes
    assert read_item(store, uri, 1) == items[1] and store.whole == [uri, uri]


def test_join_items_and_output_layout() -> None:
    store = MemoryStore("s3://bucket")
    uri = write_join_items(store, RUN, "joint", [Item("s1", ("s3://bucket/a",))])
    assert uri == join_items_uri(RUN, "joint") == f"{RUN}/_joins/joint.json"
    assert [i.key for i in read_manifest(store, uri)] == ["s1"]
    assert stage_output_uri(RUN, "align", "s1") == f"{RUN}/align/s1"
    assert stage_output_uri(RUN, "joint") == f"{RUN}/joint"
    with pytest.raises(PathEscapeError):
        stage_output_uri(RUN, "align", "../joint")


def test_malformed_manifest_is_an_items_error() -> None:
    store = MemoryStore("s3://bucket", {f"{RUN}/manifest.json": b"not json"})
    with pytest.raises(ItemsError, match="is not JSON"):
        read_manifest(store, f"{RUN}/manifest.json")
