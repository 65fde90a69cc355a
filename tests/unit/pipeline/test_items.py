"""Item discovery: globbing with brace alternatives, grouping of paired reads, manifests, errors."""

from __future__ import annotations

import json

import pytest

from chalicelib.pipeline.errors import ItemsError
from chalicelib.pipeline.items import discover, glob_to_regex
from chalicelib.pipeline.model import Item, ItemsSource
from chalicelib.pipeline.spec_rules import GROUP_ALIASES
from tests.unit.pipeline.memory_store import MemoryStore

READS = "s3://bucket/reads"


def store_with(*keys: str, extra: dict[str, bytes] | None = None) -> MemoryStore:
    objects = {f"{READS}/{key}": b"x" for key in keys}
    objects.update(extra or {})
    return MemoryStore("s3://bucket", objects)


def discover_from(store: MemoryStore, source: ItemsSource, override: str | None = None) -> list[Item]:
    return discover(source, override, store_factory=lambda root: store)


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*_R{1,2}.fastq.gz", "s1_R1.fastq.gz", True),
        ("*_R{1,2}.fastq.gz", "s1_R3.fastq.gz", False),
        ("*.{fq,fastq}", "a.fq", True),
        ("*.txt", "sub/a.txt", False),
        ("**/*.txt", "sub/deeper/a.txt", True),
        ("**/*.txt", "a.txt", True),
        ("s?_[AB].txt", "s1_B.txt", True),
        ("s[!1]*", "s1x", False),
    ],
)
def test_glob(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_to_regex(pattern).fullmatch(path)) is matches


def test_paired_reads_are_grouped_by_sample() -> None:
    store = store_with("s2_R2.fastq.gz", "s1_R2.fastq.gz", "s1_R1.fastq.gz", "s2_R1.fastq.gz", "notes.txt")
    source = ItemsSource(source=READS, pattern="*_R{1,2}.fastq.gz", group=GROUP_ALIASES["sample"])
    items = discover_from(store, source)
    assert items == [
        Item("s1", (f"{READS}/s1_R1.fastq.gz", f"{READS}/s1_R2.fastq.gz")),
        Item("s2", (f"{READS}/s2_R1.fastq.gz", f"{READS}/s2_R2.fastq.gz")),
    ]


def test_explicit_group_regex_and_name_pattern_at_any_depth() -> None:
    store = store_with("run1/a_1.fq", "run1/a_2.fq", "b_1.fq")
    items = discover_from(store, ItemsSource(source=READS, pattern="*_{1,2}.fq", group=r"(?:.*/)?(?P<key>[^/]+)_[12]\.fq"))
    assert [(i.key, len(i.files)) for i in items] == [("a", 2), ("b", 1)]


def test_ungrouped_files_are_items_keyed_without_extensions() -> None:
    items = discover_from(store_with("x.fastq.gz", "sub/y.fq"), ItemsSource(source=READS, pattern="**"))
    assert [i.key for i in items] == ["sub/y", "x"]


def test_files_outside_the_group_regex_are_an_error() -> None:
    store = store_with("s1_R1.fq", "odd.fq")
    with pytest.raises(ItemsError, match="1 file.* match the pattern but not the group regex: odd.fq"):
        discover_from(store, ItemsSource(source=READS, pattern="*.fq", group=r"(?P<key>.+)_R1\.fq"))


def test_duplicate_keys_and_no_match_are_errors() -> None:
    with pytest.raises(ItemsError, match="duplicate item key 'a'"):
        discover_from(store_with("a.fq", "a.fastq"), ItemsSource(source=READS, pattern="*"))
    with pytest.raises(ItemsError, match="no files under .* match"):
        discover_from(store_with("a.fq"), ItemsSource(source=READS, pattern="*.bam"))
    with pytest.raises(ItemsError, match="no items"):
        discover_from(store_with(), ItemsSource())


def test_json_manifest_with_relative_and_absolute_files() -> None:
    manifest = json.dumps(
        {"items": [{"key": "s1", "files": ["s1_R1.fq", "s1_R2.fq"]}, {"key": "s0", "files": ["s3://other/s0.fq"]}]}
    ).encode()
    store = store_with(extra={f"{READS}/samples.json": manifest})
    items = discover_from(store, ItemsSource(source="s3://ignored"), override=f"{READS}/samples.json")
    assert items == [
        Item("s0", ("s3://other/s0.fq",)),
        Item("s1", (f"{READS}/s1_R1.fq", f"{READS}/s1_R2.fq")),
    ]


def test_text_manifest_lines_and_comments() -> None:
    text = b"# samples\ns1\ts1_R1.fq\ts1_R2.fq\n\nsolo.fastq.gz\n"
    store = store_with(extra={f"{READS}/list.txt": text})
    items = discover_from(store, ItemsSource(manifest=f"{READS}/list.txt"))
    assert items == [Item("s1", (f"{READS}/s1_R1.fq", f"{READS}/s1_R2.fq")), Item("solo", (f"{READS}/solo.fastq.gz",))]


def test_override_folder_uses_the_spec_pattern() -> None:
    store = store_with("a.fq", "b.txt")
    items = discover_from(store, ItemsSource(source="s3://bucket/elsewhere", pattern="*.fq"), override=READS)
    assert [i.key for i in items] == ["a"]


def test_bad_manifests_are_clear_errors() -> None:
    store = store_with(extra={f"{READS}/bad.json": b'[{"key": "a"}]', f"{READS}/esc.txt": b"k\t../../etc/passwd\n"})
    with pytest.raises(ItemsError, match=r"item \[0\] needs a 'key' and a non-empty 'files' list"):
        discover_from(store, ItemsSource(manifest=f"{READS}/bad.json"))
    with pytest.raises(ItemsError, match="cannot read items manifest"):
        discover_from(store, ItemsSource(manifest=f"{READS}/missing.json"))
    with pytest.raises(Exception, match=r"'\.\.'"):
        discover_from(store, ItemsSource(manifest=f"{READS}/esc.txt"))


@pytest.mark.parametrize(
    ("first", "second"),
    [("a/b", "a%2fb"), ("a/b", "a%2Fb"), ("s1", "s%31"), ("a/b", "a\\b"), ("x", "x/")],
)
def test_keys_that_name_one_output_folder_are_refused_naming_both(first: str, second: str) -> None:
    # a/b and a%2fb both reported SUCCEEDED and shared one output folder (issue 11, item 9).
    manifest = json.dumps({"items": [{"key": first, "files": ["f1"]}, {"key": second, "files": ["f2"]}]}).encode()
    store = store_with(extra={f"{READS}/m.json": manifest})
    with pytest.raises(ItemsError, match="name the same output folder") as err:
        discover_from(store, ItemsSource(manifest=f"{READS}/m.json"))
    assert repr(first) in str(err.value) and repr(second) in str(err.value)


@pytest.mark.parametrize("key", ["%2e%2e", "a/%2e%2e/b", "%2E", "%2f", "a%2f%2fb"])
def test_keys_unsafe_once_decoded_are_refused(key: str) -> None:
    # %2e%2e failed to publish with EBUSY and left ....publish-* folders behind.
    manifest = json.dumps({"items": [{"key": key, "files": ["f1"]}]}).encode()
    store = store_with(extra={f"{READS}/m.json": manifest})
    with pytest.raises(ItemsError, match=f"item key {key!r} .* is not a safe path"):
        discover_from(store, ItemsSource(manifest=f"{READS}/m.json"))


def test_distinct_keys_with_escapes_that_spell_distinct_folders_are_kept() -> None:
    manifest = json.dumps({"items": [{"key": "a%20b", "files": ["f1"]}, {"key": "a b2", "files": ["f2"]}]}).encode()
    store = store_with(extra={f"{READS}/m.json": manifest})
    assert [i.key for i in discover_from(store, ItemsSource(manifest=f"{READS}/m.json"))] == ["a b2", "a%20b"]
