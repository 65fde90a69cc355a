"""Item discovery: files (or groups of files sharing a key) from a folder, a URI prefix or a manifest.

* ``source`` + ``pattern`` (+ ``group``): every object under the source
  (recursive) whose relative path matches the glob. A pattern without ``/``
  matches file names at any depth. Glob syntax: ``*`` (not across ``/``),
  ``**`` (across), ``?``, ``[abc]``, ``{a,b}`` alternatives.
* ``group``: a regex with a named group ``key``, matched against the whole
  relative path; files with the same key form one item (files sorted by
  path). Without it each file is an item keyed by its relative path minus
  extensions (``a/s1.fastq.gz`` -> ``a/s1``).
* ``manifest``: JSON (``[{"key", "files"}]``, ``{"items": [...]}`` or a list
  of file names) or text (one item per line: ``file`` or
  ``key<TAB>file<TAB>file``; blank lines and ``#`` comments skipped).
  Relative files resolve against the manifest's folder.

Items are sorted by key; keys must be unique and safe as a path segment list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from chalicelib.pipeline.errors import ItemsError, ObjectStoreError, PathEscapeError
from chalicelib.pipeline.model import Item, ItemsSource
from chalicelib.pipeline.objectstore import (
    ObjectStore,
    check_key,
    relative_key,
    to_uri,
)

StoreFactory = Callable[[str], ObjectStore]
_MANIFEST_SUFFIXES = (".json", ".txt", ".tsv", ".list", ".manifest")


def discover(
    spec_items: ItemsSource,
    override: str | None = None,
    *,
    store_factory: StoreFactory,
) -> list[Item]:
    """The run's items, from ``override`` (CLI ``--items``) or the spec's source.

    ``override`` may be a folder/prefix (the spec's pattern and group apply) or
    a manifest file.

    Raises:
        ItemsError: no source, unreadable source, no match, or duplicate keys.
    """
    if override:
        uri = to_uri(override)
        store = store_factory(_scheme_root(uri))
        if _looks_like_manifest(store, uri):
            return read_items_manifest(store, uri)
        return list_items(store, uri, spec_items.pattern, spec_items.group)
    if spec_items.manifest:
        uri = to_uri(spec_items.manifest)
        return read_items_manifest(store_factory(_scheme_root(uri)), uri)
    if spec_items.source:
        uri = to_uri(spec_items.source)
        return list_items(store_factory(_scheme_root(uri)), uri, spec_items.pattern, spec_items.group)
    raise ItemsError("no items: the spec has no items source and none was given (--items)")


def _scheme_root(uri: str) -> str:
    if uri.startswith("s3://"):
        return "s3://" + uri[len("s3://"):].split("/", 1)[0]
    return "file:///"


def _looks_like_manifest(store: ObjectStore, uri: str) -> bool:
    try:
        is_object = store.exists(uri)
    except ObjectStoreError:
        return False
    return is_object and (uri.lower().endswith(_MANIFEST_SUFFIXES) or "." not in uri.rsplit("/", 1)[-1])


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compiles a glob with ``*``, ``**``, ``?``, ``[...]`` and ``{a,b}`` to a full-match regex."""
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
                i = end
        elif char == "{":
            depth += 1
            out.append("(?:")
        elif char == "}" and depth:
            depth -= 1
            out.append(")")
        elif char == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(char))
        i += 1
    if depth:
        raise ItemsError(f"pattern {pattern!r}: unbalanced '{{'")
    return re.compile("".join(out))


def list_items(store: ObjectStore, prefix: str, pattern: str, group: str | None) -> list[Item]:
    """Items from the objects under ``prefix`` matching ``pattern``, grouped by ``group``."""
    matcher = glob_to_regex(pattern)
    by_name = "/" not in pattern
    try:
        uris = store.list(prefix)
    except ObjectStoreError as err:
        raise ItemsError(f"cannot list items under {prefix}: {err}") from err
    matched = []
    for uri in uris:
        rel = relative_key(prefix, uri)
        if matcher.fullmatch(rel.rsplit("/", 1)[-1] if by_name else rel):
            matched.append((rel, uri))
    if not matched:
        if not uris:
            raise ItemsError(f"nothing under {prefix}: the folder does not exist or holds no files")
        examples = ", ".join(relative_key(prefix, uri) for uri in list(uris)[:3])
        raise ItemsError(f"no files under {prefix} match {pattern!r} ({len(uris)} file(s) there, e.g. {examples})")
    if group is None:
        return _checked([Item(_strip_extensions(rel), (uri,)) for rel, uri in matched], prefix)
    return _checked(_group(matched, group), prefix)


def _group(matched: list[tuple[str, str]], group: str) -> list[Item]:
    regex = re.compile(group)
    groups: dict[str, list[tuple[str, str]]] = {}
    unmatched = []
    for rel, uri in matched:
        found = regex.fullmatch(rel)
        if not found or not found.group("key"):
            unmatched.append(rel)
            continue
        groups.setdefault(found.group("key"), []).append((rel, uri))
    if unmatched:
        shown = ", ".join(unmatched[:3]) + (" ..." if len(unmatched) > 3 else "")
        raise ItemsError(f"{len(unmatched)} file(s) match the pattern but not the group regex: {shown}")
    return [Item(key, tuple(uri for _, uri in sorted(files))) for key, files in groups.items()]


def _strip_extensions(rel: str) -> str:
    folder, _, name = rel.rpartition("/")
    stem = name.split(".", 1)[0] or name
    return f"{folder}/{stem}" if folder else stem


def _checked(items: list[Item], where: str) -> list[Item]:
    """Sorted items whose keys are safe and map to distinct output folders (the mapping is injective).

    A key becomes a path under the run prefix (``<stage>/<key>/``); the file store reads that
    path percent-decoded, so ``a%2fb`` is the folder ``a/b`` and ``%2e%2e`` is ``..``. A key
    is therefore checked as written and as decoded, and two keys that name one folder (the
    same after decoding, after ``\\`` -> ``/`` or without a trailing ``/``) are refused.
    """
    items = sorted(items, key=lambda item: item.key)
    folders: dict[str, str] = {}
    for item in items:
        folder = output_folder(item.key, where)
        other = folders.get(folder)
        if other == item.key:
            raise ItemsError(
                f"duplicate item key {item.key!r} in {where} "
                "(narrow the pattern, or group files into one item with items.group)"
            )
        if other is not None:
            raise ItemsError(
                f"item keys {other!r} and {item.key!r} in {where} name the same output folder {folder!r}; "
                "rename one (keys are paths: '%xx' escapes, '\\' and a trailing '/' are read as the path they spell)"
            )
        folders[folder] = item.key
    return items


def output_folder(key: str, where: str) -> str:
    """The folder a key names under a stage's output, or ItemsError when it is not a safe path."""
    folder = unquote(key).replace("\\", "/").rstrip("/")
    try:
        check_key(key)
        check_key(folder)
    except PathEscapeError as err:
        raise ItemsError(f"item key {key[:60]!r} from {where} is not a safe path: {err}") from err
    return folder


def read_items_manifest(store: ObjectStore, uri: str) -> list[Item]:
    """Items from a user manifest (JSON or text, see module doc)."""
    try:
        text = store.get_bytes(uri).decode("utf-8")
    except (ObjectStoreError, UnicodeDecodeError) as err:
        raise ItemsError(f"cannot read items manifest {uri}: {err}") from err
    base = uri.rsplit("/", 1)[0]
    stripped = text.lstrip()
    entries = _json_entries(stripped, uri) if stripped[:1] in ("[", "{") else _text_entries(text)
    items = [Item(key, tuple(_resolve(base, f) for f in files)) for key, files in entries]
    if not items:
        raise ItemsError(f"items manifest {uri} lists no items")
    return _checked(items, uri)


def _json_entries(text: str, uri: str) -> list[tuple[str, list[str]]]:
    try:
        document: Any = json.loads(text)
    except ValueError as err:
        raise ItemsError(f"items manifest {uri} is not valid JSON: {err}") from err
    if isinstance(document, dict):
        document = document.get("items")
    if not isinstance(document, list):
        raise ItemsError(f"items manifest {uri}: expected a list of items or {{\"items\": [...]}}")
    entries = []
    for index, entry in enumerate(document):
        if isinstance(entry, str):
            entries.append((_strip_extensions(entry.rsplit("/", 1)[-1]), [entry]))
        elif (
            isinstance(entry, dict)
            and isinstance(entry.get("key"), str)
            and isinstance(entry.get("files"), list)
            and entry["files"]
            and all(isinstance(f, str) for f in entry["files"])
        ):
            entries.append((entry["key"], list(entry["files"])))
        else:
            raise ItemsError(f"items manifest {uri}: item [{index}] needs a 'key' and a non-empty 'files' list")
    return entries


def _text_entries(text: str) -> list[tuple[str, list[str]]]:
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f for f in line.split("\t") if f]
        if len(fields) == 1:
            entries.append((_strip_extensions(fields[0].rsplit("/", 1)[-1]), fields))
        else:
            entries.append((fields[0], fields[1:]))
    return entries


def _resolve(base: str, location: str) -> str:
    if "://" in location or location.startswith("/"):
        return to_uri(location)
    return f"{base}/{check_key(location)}"
