"""Run prefix layout and the item manifest (the one place jobs learn their items from).

Layout of a run's prefix (``file:///.../runs/<run_id>`` or ``s3://bucket/runs/<run_id>``)::

    manifest.json                   every item of the run (write_manifest)
    _joins/<stage>.json             items a deferred join runs on (write_join_items)
    <stage>/<item key>/...          a foreach stage's outputs, one folder per item
    <stage>/...                     a join's outputs
    each output folder ends with _SUCCESS once published completely

Manifest format: ``{"version": 1, "count": N, "items": [{"key": ..., "files": [URI, ...]}]}``.
Jobs carry only the manifest URI and their chunk offset; array child i of a
chunk at offset K runs item ``K + i`` (``AWS_BATCH_JOB_ARRAY_INDEX``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from chalicelib.pipeline.errors import ItemsError, ObjectStoreError
from chalicelib.pipeline.model import Item
from chalicelib.pipeline.objectstore import ObjectStore, join_uri

MANIFEST_NAME = "manifest.json"
JOINS_FOLDER = "_joins"
MANIFEST_VERSION = 1


def manifest_uri(run_prefix: str) -> str:
    return join_uri(run_prefix, MANIFEST_NAME)


def join_items_uri(run_prefix: str, stage: str) -> str:
    """Where the tracker writes the item list of a deferred join (see write_join_items)."""
    return join_uri(run_prefix, JOINS_FOLDER, f"{stage}.json")


def stage_output_uri(run_prefix: str, stage: str, key: str | None = None) -> str:
    """A stage's published output folder: per item for a foreach stage, one for a join."""
    return join_uri(run_prefix, stage, key) if key is not None else join_uri(run_prefix, stage)


def to_manifest_bytes(items: Sequence[Item]) -> bytes:
    document = {
        "version": MANIFEST_VERSION,
        "count": len(items),
        "items": [item.to_dict() for item in items],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def write_manifest(store: ObjectStore, run_prefix: str, items: Sequence[Item]) -> str:
    """Writes the run's manifest; returns its URI."""
    uri = manifest_uri(run_prefix)
    store.put_bytes(uri, to_manifest_bytes(items))
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
    items = read_manifest(store, uri)
    if not 0 <= index < len(items):
        raise ItemsError(f"item index {index} is outside manifest {uri} ({len(items)} items)")
    return items[index]
