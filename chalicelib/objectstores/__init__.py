"""Object store factory: picks the file:// or s3:// implementation for a URI root.

It lives outside the pipeline core so that the core never imports its own adapters; the
runner and the composition roots (CLI, Lambda) call it and hand the store to the core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chalicelib.pipeline.objectstore import ObjectStore, to_uri


def open_store(root: str | Path, *, s3_client: Any = None) -> ObjectStore:
    """The store for ``root``'s scheme (``file://``, a local path, or ``s3://``).

    Raises:
        ObjectStoreError: an unsupported scheme.
    """
    uri = to_uri(root)
    if uri.startswith("s3://"):
        from chalicelib.objectstores.s3 import S3ObjectStore

        return S3ObjectStore(uri, client=s3_client)
    from chalicelib.objectstores.file import FileObjectStore

    return FileObjectStore(uri)
