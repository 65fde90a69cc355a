"""The rerun's reuse decisions (pipeline/resume.py) over an in-memory object store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chalicelib.pipeline.model import Item
from chalicelib.pipeline.objectstore import published_origin
from chalicelib.pipeline.resume import plan_resume, write_references
from chalicelib.pipeline.spec import build_spec
from tests.unit.pipeline.memory_store import MemoryStore

OLD, NEW = "s3://bucket/runs/old", "s3://bucket/runs/new"


def _spec(**overrides: Any) -> Any:
    stages = [
        {"name": "a", "image": "img", "command": ["a", "{item}", "{out}"], "foreach": "item"},
        {"name": "b", "image": "img", "command": ["b", "{a}", "{out}"], "foreach": "item", "after": ["a"]},
        {"name": "j", "image": "img", "command": ["j", "{b}", "{out}"], "after": ["b"]},
    ]
    for stage in stages:
        stage.update(overrides.get(stage["name"], {}))
    return build_spec({"name": "p", "stages": stages}, Path("."))


ITEMS = [Item("s0", ("s3://bucket/in/s0",)), Item("s1", ("s3://bucket/in/s1",)), Item("s2", ("s3://bucket/in/s2",))]


def _plan(store: MemoryStore, spec: Any) -> Any:
    return plan_resume(parent_run_id="old", parent_prefix=OLD, parent_spec=_spec(), spec=spec,
                       stage_order=["a", "b", "j"], items=ITEMS, new_prefix=NEW, objects=lambda _: store)


def _published(store: MemoryStore, *folders: str) -> None:
    for folder in folders:
        store.put_bytes(f"{OLD}/{folder}/_SUCCESS", b"")


def test_published_outputs_are_reused_and_what_read_a_rerun_item_runs_again() -> None:
    store = MemoryStore()
    _published(store, "a/s0", "a/s2", "b/s0", "b/s2", "j")  # s1 failed in a; j ran on s0 and s2
    plan = _plan(store, _spec())
    assert plan.lines() == ["stage a: 1 item(s) run again (s1), 2 reused",
                            "stage b: 1 item(s) run again (s1), 2 reused",
                            "stage j: runs again"]
    assert plan.references == {f"{NEW}/a/s0": f"{OLD}/a/s0", f"{NEW}/a/s2": f"{OLD}/a/s2",
                               f"{NEW}/b/s0": f"{OLD}/b/s0", f"{NEW}/b/s2": f"{OLD}/b/s2"}
    write_references(plan, lambda _: store, NEW)
    assert store.get_bytes(f"{NEW}/b/s2/_REF") == f"{OLD}/b/s2".encode()
    assert published_origin(lambda _: store, f"{NEW}/b/s2") == f"{OLD}/b/s2"
    assert published_origin(lambda _: store, f"{NEW}/b/s1") is None


def test_a_changed_stage_definition_reruns_it_and_everything_downstream() -> None:
    store = MemoryStore()
    _published(store, "a/s0", "a/s1", "a/s2", "b/s0", "b/s1", "b/s2", "j")
    plan = _plan(store, _spec(b={"resources": {"vcpus": 2, "memory": 2048}}))
    assert plan.lines() == ["stage a: 0 item(s) run again, 3 reused",
                            "stage b: 3 item(s) run again (s0, s1, s2), 0 reused "
                            "(its definition changed: resources)",
                            "stage j: runs again"]
    assert not _plan(store, _spec()).reruns_anything  # nothing changed, nothing failed: nothing to do


def test_references_are_followed_to_the_folder_that_holds_the_output() -> None:
    store = MemoryStore()
    store.put_bytes("s3://bucket/runs/first/a/s0/_SUCCESS", b"")
    store.put_bytes(f"{OLD}/a/s0/_REF", b"s3://bucket/runs/first/a/s0")  # old reused it from first
    assert published_origin(lambda _: store, f"{OLD}/a/s0") == "s3://bucket/runs/first/a/s0"
    store.put_bytes(f"{OLD}/a/s1/_REF", f"{OLD}/a/s1".encode())  # a loop is not followed forever
    assert published_origin(lambda _: store, f"{OLD}/a/s1") is None
