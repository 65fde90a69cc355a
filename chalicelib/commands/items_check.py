"""A check the item-taking commands share: an --items that names a local path must be there."""

from __future__ import annotations

from pathlib import Path


def missing_items_path(items: str | None) -> str | None:
    """The error for an --items that names a local path that is not there (None when fine).

    Listing a missing folder finds nothing, which would read as "no files match"; saying
    the folder is not there points at the real mistake.
    """
    if not items or "://" in items or Path(items).exists():
        return None
    return f"--items {items}: no such file or folder"
