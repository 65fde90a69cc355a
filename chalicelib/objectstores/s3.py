"""``s3://`` ObjectStore: objects in one bucket under a root prefix (boto3, client injected or lazy).

S3 has no rename, so ``publish_folder`` deletes what a previous attempt may
have left, uploads every file, and writes the ``_SUCCESS`` marker last;
readers treat a prefix without the marker as not published.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.pipeline.errors import ObjectStoreError, PathEscapeError
from chalicelib.pipeline.objectstore import (
    SUCCESS_MARKER,
    UriList,
    has_dot_segments,
    is_under,
    local_files,
    split_s3,
)

_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3ObjectStore:
    """Objects under ``root`` (``s3://bucket/prefix``)."""

    def __init__(self, root: str, *, client: Any = None) -> None:
        split_s3(root)  # validates the URI
        self.root = root
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            # Created on first use, so a store that is never touched needs no credentials.
            from chalicelib import aws_clients as aws

            self._client = aws.client("s3")
        return self._client

    def _locate(self, uri: str) -> tuple[str, str]:
        if has_dot_segments(uri) or "//" in uri[len("s3://"):] or not is_under(uri, self.root):
            raise PathEscapeError(f"{uri[:100]!r} is outside the store root {self.root!r}")
        return split_s3(uri)

    def get_bytes(self, uri: str) -> bytes:
        bucket, key = self._locate(uri)
        try:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            data: bytes = body.read()
            return data
        except ClientError as err:
            raise _store_error(err, uri) from err

    def get_range(self, uri: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        bucket, key = self._locate(uri)
        try:
            body = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}")["Body"]
            data: bytes = body.read()
            return data
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""  # starts past the end of the object
            raise _store_error(err, uri) from err

    def put_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = self._locate(uri)
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data)
        except ClientError as err:
            raise _store_error(err, uri) from err

    def exists(self, uri: str) -> bool:
        bucket, key = self._locate(uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in _MISSING:
                return False
            raise _store_error(err, uri) from err

    def list(self, prefix: str) -> UriList:
        bucket, key = self._locate(prefix)
        key_prefix = key.rstrip("/") + "/" if key else ""
        uris: UriList = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=key_prefix):
                uris.extend(f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
        except ClientError as err:
            raise _store_error(err, prefix) from err
        return sorted(uris)

    def download(self, uri: str, local_path: Path) -> None:
        bucket, key = self._locate(uri)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(bucket, key, str(local_path))
        except ClientError as err:
            raise _store_error(err, uri) from err

    def upload(self, local_path: Path, uri: str) -> None:
        bucket, key = self._locate(uri)
        try:
            self.client.upload_file(str(local_path), bucket, key)
        except ClientError as err:
            raise _store_error(err, uri) from err

    def delete_prefix(self, prefix: str) -> None:
        bucket, _ = self._locate(prefix)
        keys = [split_s3(uri)[1] for uri in self.list(prefix)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            try:
                self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            except ClientError as err:
                raise _store_error(err, prefix) from err

    def publish_folder(self, local_dir: Path, prefix: str) -> UriList:
        base = prefix.rstrip("/")
        self._locate(base)
        files = local_files(local_dir)
        # Leftovers of an earlier, interrupted attempt must not mix with these outputs.
        self.delete_prefix(base)
        uris: UriList = []
        for key, path in files:
            uri = f"{base}/{key}"
            self.upload(path, uri)
            uris.append(uri)
        marker = f"{base}/{SUCCESS_MARKER}"
        self.put_bytes(marker, b"")
        return [*uris, marker]


def _store_error(err: ClientError, uri: str) -> ObjectStoreError:
    code = err.response.get("Error", {}).get("Code", "Unknown")
    if code in _MISSING:
        return ObjectStoreError(f"object not found: {uri}")
    return ObjectStoreError(f"s3 error {code} on {uri[:100]}")
