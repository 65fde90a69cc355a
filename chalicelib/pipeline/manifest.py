"""Run prefix layout and the item manifest (the one place jobs learn their items from).

Layout of a run's prefix (``file:///.../runs/<run_id>`` or ``s3://bucket/runs/<run_id>``)::

    manifest.json                   every item of the run (write_manifest)
    manifest.json.offsets           where each item's JSON lies in it (u64 LE starts + the end)
    _joins/<stage>.json             items a deferred join runs on (write_join_items)
    <stage>/<item key>/...          a foreach stage's outputs, one folder per item
    <stage>/...                     a join's outputs
    each output folder ends with _SUCCESS once published completely

Manifest format: ``{"version": 1, "count": N, "items": [{"key": ..., "files": [URI, ...]}]}``.
Jobs carry only the manifest URI and their chunk offset; array child i of a
chunk at offset K runs item ``K + i`` (``AWS_BATCH_JOB_ARRAY_INDEX``). A child reads
its own item with two small range reads through the offsets file, not the whole
manifest (about 1 MB at 10,000 items, read and parsed by each of 10,000 children);
without an offsets file, or if it does not match, it reads the whole manifest.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

from chalicelib.pipeline.errors import ItemsError, ObjectStoreError
from chalicelib.pipeline.item import Item
from chalicelib.pipeline.objectstore import ObjectStore, join_uri

MANIFEST_NAME = "manifest.json"
JOINS_FOLDER = "_joins"
MANIFEST_VERSION = 1
OFFSETS_SUFFIX = ".offsets"
_OFFSET = struct.Struct("<Q")


def manifest_uri(run_prefix: str) -> str:
    return join_uri(run_prefix, MANIFEST_NAME)


def join_items_uri(run_prefix: str, stage: str) -> str:
    """Where the tracker writes the item list of a deferred join (see write_join_items)."""
    return join_uri(run_prefix, JOINS_FOLDER, f"{stage}.json")


def stage_output_uri(run_prefix: str, stage: str, key: str | None = None) -> str:
    """A stage's published output folder: per item for a foreach stage, one for a join."""
    return join_uri(run_prefix, stage, key) if key is not None else join_uri(run_prefix, stage)


def encode_manifest(items: Sequence[Item]) -> tuple[bytes, bytes]:
    """The manifest document and its offsets: where each item's JSON starts, then where the last ends."""
    head = b'{"version":%d,"count":%d,"items":[' % (MANIFEST_VERSION, len(items))
    parts, offsets, position = [head], [], len(head)
    for number, item in enumerate(items):
        if number:
            parts.append(b",")
            position += 1
        encoded = json.dumps(item.to_dict(), separators=(",", ":")).encode()
        offsets.append(position)
        parts.append(encoded)
        position += len(encoded)
    offsets.append(position)
    parts.append(b"]}")
    return b"".join(parts), b"".join(_OFFSET.pack(offset) for offset in offsets)


def to_manifest_bytes(items: Sequence[Item]) -> bytes:
    return encode_manifest(items)[0]


def write_manifest(store: ObjectStore, run_prefix: str, items: Sequence[Item]) -> str:
    """Writes the run's manifest, then its offsets; returns the manifest's URI."""
    uri = manifest_uri(run_prefix)
    document, offsets = encode_manifest(items)
    store.put_bytes(uri, document)
    store.put_bytes(uri + OFFSETS_SUFFIX, offsets)
    return uri


def write_join_items(store: ObjectStore, run_prefix: str, stage: str, items: Sequence[Item]) -> str:
    """Writes the items a join runs on (e.g. the succeeded ones); returns the URI for ``--items``."""
    uri = join_items_uri(run_prefix, stage)
    store.put_bytes(uri, to_manifest_bytes(items))
    return uri


def read_manifest(store: ObjectStore, uri: str) -> list[Item]:
    """Reads a manifest written by write_manifest.

    Raises:
        ItemsError: missing or malformed manifest.
    """
    try:
        document: Any = json.loads(store.get_bytes(uri))
    except ObjectStoreError as err:
        raise ItemsError(f"cannot read manifest {uri}: {err}") from err
    except ValueError as err:
        raise ItemsError(f"manifest {uri} is not JSON: {err}") from err
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise ItemsError(f"manifest {uri}: expected an object with an 'items' list")
    try:
        return [Item.from_dict(entry) for entry in document["items"]]
    except (KeyError, TypeError) as err:
        raise ItemsError(f"manifest {uri}: malformed item entry ({err})") from err


def read_item(store: ObjectStore, uri: str, index: int) -> Item:
    """The item at ``index`` (chunk offset + array index) of a manifest.

    Raises:
        ItemsError: the index is outside the manifest.
    """
    if index >= 0:
        item = _read_one_item(store, uri, index)
        if item is not None:
            return item
    items = read_manifest(store, uri)
    if not 0 <= index < len(items):
        raise ItemsError(f"item index {index} is outside manifest {uri} ({len(items)} items)")
    return items[index]


def _read_one_item(store: ObjectStore, uri: str, index: int) -> Item | None:
    """The item through the offsets file, or None to fall back to reading the whole manifest."""
    get_range = getattr(store, "get_range", None)
    if get_range is None:
        return None
    try:
        bounds = get_range(uri + OFFSETS_SUFFIX, index * _OFFSET.size, (index + 2) * _OFFSET.size)
        if len(bounds) != 2 * _OFFSET.size:
            return None  # past the end (the full read reports it), or no offsets file
        start, end = _OFFSET.unpack_from(bounds, 0)[0], _OFFSET.unpack_from(bounds, _OFFSET.size)[0]
        if end <= start:
            return None
        # Up to the next item's start: this item's JSON and, but for the last, a comma.
        return Item.from_dict(json.loads(get_range(uri, start, end).rstrip(b",")))
    except (ObjectStoreError, ValueError, KeyError, TypeError, struct.error):
        return None  # an offsets file that does not match its manifest: read the manifest
