"""Pipelines on the real engine with real processes: N_TO_N hand-off, joins, sequential, paired items, chunks and barriers."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.pipeline_harness import (
    STAGE,
    child_ids,
    describe,
    local_runtime,
    make_items,
    output,
    request_for,
    run_to_end,
)


def _spec(body: str, name: str = "flow") -> str:
    return f"name: {name}\nstages:\n" + body.replace("@STAGE\n", STAGE)


THREE_STAGES = _spec("""  - name: a
@STAGE
    command: [python, -m, tool, copy, --key, "{key}", --slow-key, s3, --sleep, "1.5", --out, "{out}", "{item}"]
    foreach: item
  - name: b
@STAGE
    command: [python, -m, tool, copy, --key, "{key}", --out, "{out}", "{a}"]
    foreach: item
    after: [a]
  - name: c
@STAGE
    command: [python, -m, tool, gather, --out, "{out}", "{b}"]
    after: [b]
""")


def test_n_to_n_hands_items_over_before_the_upstream_array_ends_and_join_sees_all(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt", "s2.txt", "s3.txt"])
    with local_runtime(tmp_path / "data") as (_, runtime):
        run = run_to_end(runtime, request_for(runtime, THREE_STAGES, items, "handoff", tmp_path))
        assert run.status.value == "SUCCEEDED", run.failures
        a = describe(runtime, child_ids(runtime, "handoff", "a", 4))
        b = describe(runtime, child_ids(runtime, "handoff", "b", 4))
        a_last_stop = max(job["stoppedAt"] for job in a.values())
        early = [job for job in b.values() if job["startedAt"] < a_last_stop]
        assert early, "no b child started before the slow a child finished"
        all_txt = output(runtime, "handoff", "c", "all.txt").read_text().splitlines()
        assert all_txt == [f"s{i}:s{i}.txt" for i in range(4)]
        stages = {s.stage: s for s in runtime.store.list_stages("handoff")}
        assert {name: s.status.value for name, s in stages.items()} == {
            "a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED",
        }
        assert stages["b"].counts == {"SUCCEEDED": 4}
        kinds = [e["detail-type"] for e in runtime.publisher.envelopes]
        assert kinds.count("Pipeline Run State Change") == 2  # RUNNING, SUCCEEDED
        assert runtime.publisher.envelopes[-1]["detail"]["status"] == "SUCCEEDED"
        assert all(e["source"] == "conveyor" for e in runtime.publisher.envelopes)


SEQUENTIAL = _spec("""  - name: seq
@STAGE
    command: [python, -m, tool, copy, --key, "{key}", --out, "{out}", "{item}"]
    foreach: item
    sequential: true
""", "seq")


def test_sequential_children_run_one_after_another(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt", "s2.txt"])
    with local_runtime(tmp_path / "data") as (_, runtime):
        run = run_to_end(runtime, request_for(runtime, SEQUENTIAL, items, "seq1", tmp_path))
        assert run.status.value == "SUCCEEDED", run.failures
        jobs = describe(runtime, child_ids(runtime, "seq1", "seq", 3))
        ordered = [jobs[k] for k in sorted(jobs, key=lambda k: int(k.rsplit(":", 1)[1]))]
        for before, after in zip(ordered, ordered[1:]):
            assert after["startedAt"] >= before["stoppedAt"]


PAIRED = """name: paired
items: {group: sample}
stages:
  - name: count
""" + STAGE + """    command: [python, -m, tool, count, --out, "{out}", "{item}"]
    foreach: item
"""


def test_paired_reads_form_one_item_per_sample(tmp_path: Path) -> None:
    items = make_items(tmp_path / "reads", ["s1_R1.fq", "s1_R2.fq", "s2_R1.fq", "s2_R2.fq"])
    with local_runtime(tmp_path / "data") as (_, runtime):
        run = run_to_end(runtime, request_for(runtime, PAIRED, items, "paired1", tmp_path))
        assert run.status.value == "SUCCEEDED", run.failures
        assert run.items == 2
        assert output(runtime, "paired1", "count", "s1", "n").read_text() == "2"
        assert output(runtime, "paired1", "count", "s2", "n").read_text() == "2"


def test_chunked_arrays_and_barrier_tree_with_small_limits(tmp_path: Path) -> None:
    names = [f"s{i}.txt" for i in range(5)]
    items = make_items(tmp_path / "items", names)
    spec = THREE_STAGES.replace('--slow-key, s3, --sleep, "1.5", ', "")
    with local_runtime(tmp_path / "data", array_limit=2, dependency_limit=2) as (_, runtime):
        run = run_to_end(runtime, request_for(runtime, spec, items, "chunks", tmp_path))
        assert run.status.value == "SUCCEEDED", run.failures
        jobs = runtime.store.list_jobs("chunks")
        assert sorted(j.key for j in jobs if j.stage == "a" and not j.is_barrier) == ["a.c0", "a.c1", "a.c2"]
        assert [j.size for j in jobs if j.stage == "a"] == [2, 2, 1]
        assert any(j.is_barrier for j in jobs), "3 upstream chunks over a limit of 2 need a barrier"
        assert all(j.status == "SUCCEEDED" for j in jobs)
        lines = output(runtime, "chunks", "c", "all.txt").read_text().splitlines()
        assert lines == [f"s{i}:s{i}.txt" for i in range(5)]
        results = runtime.store.list_item_results("chunks", "b")
        assert [(r.index, r.status) for r in results] == [(i, "SUCCEEDED") for i in range(5)]
