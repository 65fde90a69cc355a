"""Item: one unit of work, the value a manifest holds and every job runs on.

Alone in its module (model.py re-exports it) so that the runner, which starts once per job,
imports it without the spec and plan model. A plain frozen class rather than a dataclass for
the same reason: importing `dataclasses` (it imports `inspect`) would be a third of the
runner's import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


class Item:
    """One unit of work: a key (e.g. a sample name) and its ordered file URIs. Immutable."""

    __slots__ = ("key", "files")
    key: str
    files: tuple[str, ...]

    def __init__(self, key: str, files: tuple[str, ...]) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "files", files)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Item is immutable: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Item is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        return self.key == other.key and self.files == other.files

    def __hash__(self) -> int:
        return hash((self.key, self.files))

    def __repr__(self) -> str:
        return f"Item(key={self.key!r}, files={self.files!r})"

    def __reduce__(self) -> tuple[type[Item], tuple[str, tuple[str, ...]]]:
        return Item, (self.key, self.files)  # copy and pickle through __init__ (no __setattr__)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "files": list(self.files)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Item:
        return cls(key=str(data["key"]), files=tuple(str(f) for f in data["files"]))
