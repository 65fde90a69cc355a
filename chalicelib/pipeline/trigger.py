"""Trigger: an object delivered (S3 upload or inbox file) -> an idempotent run start, one run per distinct delivery.

The run id is derived from (root, key, etag or version), so the same delivery seen twice
(S3 delivers at least once; an inbox file polled again) starts one run: the starter is
idempotent on the run id (locally the run store refuses a second record; on AWS the
execution name is the run id and StartExecution refuses a duplicate).

``per_manifest`` (default): the object is a manifest listing the run's items.
``per_object``: the object itself is the run's one item.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from chalicelib.pipeline.manifest import to_manifest_bytes
from chalicelib.pipeline.model import Item
from chalicelib.pipeline.objectstore import ObjectStore, join_uri
from chalicelib.pipeline.ports import RunRequest, RunStarter

_SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class DeliveredObject:
    """One delivered object: its root (``s3://bucket`` or ``file:///inbox``), key and version."""

    root: str
    key: str
    etag: str

    @property
    def uri(self) -> str:
        return join_uri(self.root, self.key)


def run_id_for_object(pipeline: str, obj: DeliveredObject) -> str:
    """Deterministic, Batch- and Step-Functions-safe run id (<= 80 chars) for one delivery."""
    digest = hashlib.sha256(f"{obj.root}\0{obj.key}\0{obj.etag}".encode()).hexdigest()[:16]
    return f"{_SAFE.sub('_', pipeline)[:40]}-t{digest}"


def start_run_for_object(
    starter: RunStarter,
    obj: DeliveredObject,
    *,
    spec: Mapping[str, Any],
    runs_prefix: str,
    objects: ObjectStore | None = None,
    base_dir: str = "",
) -> str:
    """Starts (once) the run for a delivered object; returns the run id.

    ``spec`` is the pipeline spec document; ``runs_prefix`` where runs write
    (``<runs_prefix>/<run id>``). ``objects`` is needed in ``per_object`` mode, to write the
    one-item manifest into the run's prefix.
    """
    run_id = run_id_for_object(str(spec.get("name", "run")), obj)
    prefix = join_uri(runs_prefix, run_id)
    items_source = obj.uri
    mode = (spec.get("trigger") or {}).get("mode", "per_manifest")
    if mode == "per_object":
        if objects is None:
            raise ValueError("per_object trigger needs an object store to write the one-item manifest")
        key = obj.key.rsplit("/", 1)[-1].split(".", 1)[0] or "item"
        items_source = join_uri(prefix, "trigger-items.json")
        objects.put_bytes(items_source, to_manifest_bytes([Item(key=key, files=(obj.uri,))]))
    request = RunRequest(
        run_id=run_id, spec=dict(spec), items_source=items_source, prefix=prefix,
        source=f"{obj.uri}#{obj.etag}", base_dir=base_dir,
    )
    return starter.start_run(request)


def objects_from_event(event: Mapping[str, Any]) -> list[DeliveredObject]:
    """The objects an S3 notification or an EventBridge `Object Created` event delivers.

    Keys are URL-decoded (S3 form-encodes them); the test event S3 sends on configuration
    and non-create records are skipped.
    """
    if event.get("Event") == "s3:TestEvent":
        return []
    if event.get("detail-type") == "Object Created":
        detail = event.get("detail", {})
        obj = detail.get("object", {})
        version = obj.get("version-id") or obj.get("etag") or obj.get("sequencer", "")
        return [DeliveredObject(f"s3://{detail['bucket']['name']}", unquote_plus(obj["key"]), str(version))]
    found = []
    for record in event.get("Records", []):
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record["s3"]
        obj = s3["object"]
        version = obj.get("versionId") or obj.get("eTag") or obj.get("sequencer", "")
        found.append(DeliveredObject(f"s3://{s3['bucket']['name']}", unquote_plus(obj["key"]), str(version)))
    return found
