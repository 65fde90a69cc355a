"""Runner data transfer: item files and upstream outputs in, the ``{out}`` folder published out.

Scratch layout (one fresh folder per attempt, see ``scratch.py``); only what the command
names is staged::

    in/<file name>                   a foreach job's item files ({item})
    in/<item key>/<file name>        a join's item files, per item ({item})
    up/<stage>/                      a foreach job's upstream output (same item), or a join stage's output
    up/<stage>/<item key>/           a join's upstream outputs, one per item
    out/                             {out}: published only when the tool exits 0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from chalicelib.objectstores import open_store
from chalicelib.pipeline.errors import ObjectStoreError, PathEscapeError, RunnerError
from chalicelib.pipeline.item import Item
from chalicelib.pipeline.manifest import stage_output_uri
from chalicelib.pipeline.objectstore import (
    ObjectStore,
    check_key,
    download_folder,
    is_published,
    published_origin,
)

StoreFactory = Callable[[str], ObjectStore]


def scheme_root(uri: str) -> str:
    """The widest root for reading ``uri``: ``file:///`` or ``s3://bucket``."""
    if uri.startswith("s3://"):
        return "s3://" + uri[len("s3://"):].split("/", 1)[0]
    return "file:///"


class Stager:
    """Moves data between object stores and the scratch folder of one attempt.

    Reads may come from anywhere (items live where the user keeps them);
    writes go only through ``run_store``, rooted at the run's prefix, so a
    key that escapes the prefix is refused.
    """

    def __init__(
        self,
        run_prefix: str,
        scratch: Path,
        *,
        store_factory: StoreFactory = open_store,
    ) -> None:
        self.run_prefix = run_prefix.rstrip("/")
        self.scratch = scratch
        self.store_factory = store_factory
        self.run_store = store_factory(self.run_prefix)
        self._readers: dict[str, ObjectStore] = {}

    def reader(self, uri: str) -> ObjectStore:
        root = scheme_root(uri)
        if root not in self._readers:
            self._readers[root] = self.store_factory(root)
        return self._readers[root]

    def stage_item(self, item: Item, folder: Path) -> list[str]:
        """Downloads an item's files into ``folder``; returns their local paths in item order."""
        paths: list[str] = []
        used: set[str] = set()
        for position, uri in enumerate(item.files):
            name = _file_name(uri)
            if name in used:  # two files with one name (different folders): keep both
                name = f"{position}_{name}"
            used.add(name)
            target = folder / name
            try:
                self.reader(uri).download(uri, target)
            except PathEscapeError:
                raise
            except (ObjectStoreError, OSError) as err:
                raise RunnerError(f"cannot stage input {uri} of item {item.key!r}: {err}") from err
            paths.append(str(target))
        return paths

    def stage_items(self, items: Sequence[Item], *, join: bool) -> list[str]:
        """All item files for ``{item}``: in/ for one item, in/<key>/ per item for a join."""
        if not join:
            return self.stage_item(items[0], self.scratch / "in")
        paths: list[str] = []
        for item in items:
            paths.extend(self.stage_item(item, self.scratch / "in" / check_key(item.key)))
        return paths

    def stage_upstream(self, stage: str, shape: str, items: Sequence[Item], *, join: bool) -> list[str]:
        """Local folders holding ``stage``'s published outputs, for ``{<stage>}``.

        Raises:
            RunnerError: an upstream output was never published (no ``_SUCCESS``).
        """
        base = self.scratch / "up" / check_key(stage)
        if shape == "join":
            return [self._fetch(stage_output_uri(self.run_prefix, stage), base, stage, None)]
        if not join:
            key = items[0].key
            return [self._fetch(stage_output_uri(self.run_prefix, stage, key), base, stage, key)]
        return [
            self._fetch(stage_output_uri(self.run_prefix, stage, item.key), base / item.key, stage, item.key)
            for item in items
        ]

    def _fetch(self, prefix: str, local: Path, stage: str, key: str | None) -> str:
        store = self.run_store
        if not is_published(store, prefix):
            # A rerun's reused output: the folder names the earlier run's published one.
            origin = self.reused_origin(prefix)
            if origin is None:
                which = f" for item {key!r}" if key is not None else ""
                raise RunnerError(f"output of upstream stage {stage!r}{which} is not published ({prefix})")
            prefix, store = origin, self.reader(origin)
        download_folder(store, prefix, local)
        return str(local)

    def reused_origin(self, prefix: str) -> str | None:
        """The earlier run's published folder that ``prefix`` refers to (a rerun reused it), if any."""
        return published_origin(self.reader, prefix)

    def publish(self, out_dir: Path, stage: str, key: str | None) -> tuple[str, int]:
        """Publishes ``out_dir`` as the stage's output (per item, or the join's); returns (URI, file count)."""
        prefix = stage_output_uri(self.run_prefix, stage, key)
        uris = self.run_store.publish_folder(out_dir, prefix)
        return prefix, len(uris) - 1


def _file_name(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    if name in ("", ".", ".."):
        raise PathEscapeError(f"input {uri[:80]!r} has no usable file name")
    return name
