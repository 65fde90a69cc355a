"""Failures on the real engine: deferred join over the items that succeeded, retries, outputs only on success, re-run of failed items."""

from __future__ import annotations

import json
from pathlib import Path

from chalicelib.pipeline.runs import prepare_rerun
from tests.e2e.pipeline_harness import (
    STAGE,
    describe,
    local_runtime,
    make_items,
    output,
    request_for,
    run_to_end,
)

DEFERRED_JOIN = ("""name: tolerant
stages:
  - name: a
""" + STAGE + """    command: [python, -m, tool, copy, --key, "{key}", --fail-key, s1, --out, "{out}", "{item}"]
    foreach: item
  - name: b
""" + STAGE + """    command: [python, -m, tool, copy, --key, "{key}", --out, "{out}", "{a}"]
    foreach: item
    after: [a]
  - name: c
""" + STAGE + """    command: [python, -m, tool, gather, --out, "{out}", "{b}"]
    after: [b]
    allow_failed_items: true
""")


def test_deferred_join_runs_on_the_items_that_succeeded_and_the_run_reports_the_failure(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt", "s2.txt"])
    with local_runtime(tmp_path / "data") as (_, runtime):
        run = run_to_end(runtime, request_for(runtime, DEFERRED_JOIN, items, "tolerant1", tmp_path))
        assert run.status.value == "FAILED"
        roots = [f for f in run.failures if not f["dependency"]]
        assert [(f["stage"], f["item"], f["exitCode"]) for f in roots] == [("a", 1, 3)]
        assert [(f["stage"], f["item"]) for f in run.failures if f["dependency"]] == [("b", 1)]
        assert "failing on purpose for s1" in runtime.read_log(roots[0]["jobId"])
        stages = {s.stage: s for s in runtime.store.list_stages("tolerant1")}
        assert stages["a"].counts == {"SUCCEEDED": 2, "FAILED": 1}
        assert stages["b"].status.value == "FAILED"
        assert stages["c"].status.value == "SUCCEEDED"
        # The join ran on the two items that made it through a and b.
        assert output(runtime, "tolerant1", "c", "all.txt").read_text().splitlines() == ["s0:s0.txt", "s2:s2.txt"]
        join_items = json.loads(output(runtime, "tolerant1", "_joins", "c.json").read_text())
        assert [item["key"] for item in join_items["items"]] == ["s0", "s2"]
        # Outputs are published only on success: nothing (not even the partial file) for s1.
        assert not output(runtime, "tolerant1", "a", "s1").exists()
        assert not output(runtime, "tolerant1", "b", "s1").exists()
        assert (output(runtime, "tolerant1", "a", "s0") / "_SUCCESS").exists()


BAD_INPUT = ("""name: resumable
stages:
  - name: a
""" + STAGE + """    command: [python, -m, tool, copy, --key, "{key}", --fail-on-text, BROKEN, --out, "{out}", "{item}"]
    foreach: item
  - name: b
""" + STAGE + """    command: [python, -m, tool, copy, --key, "{key}", --out, "{out}", "{a}"]
    foreach: item
    after: [a]
  - name: c
""" + STAGE + """    command: [python, -m, tool, gather, --out, "{out}", "{b}"]
    after: [b]
    allow_failed_items: true
""")


def test_rerun_after_repairing_an_item_reuses_the_others_and_its_join_sees_every_item(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt", "s2.txt"])
    (items / "s1.txt").write_text("BROKEN\n")
    with local_runtime(tmp_path / "data") as (_, runtime):
        first = run_to_end(runtime, request_for(runtime, BAD_INPUT, items, "first", tmp_path))
        assert first.status.value == "FAILED"
        assert output(runtime, "first", "c", "all.txt").read_text().splitlines() == ["s0:s0.txt", "s2:s2.txt"]
        (items / "s1.txt").write_text("repaired\n")
        request, resume = prepare_rerun(runtime.ports, "first", new_run_id="second")
        assert resume.lines() == [
            "stage a: 1 item(s) run again (s1), 2 reused",
            "stage b: 1 item(s) run again (s1), 2 reused",
            "stage c: runs again",
        ]
        second = run_to_end(runtime, request)
        assert second.status.value == "SUCCEEDED", second.failures
        assert second.items == 3 and second.parent_run_id == "first"
        # The join reads every item: the two reused through references, the repaired one recomputed.
        assert output(runtime, "second", "c", "all.txt").read_text().splitlines() == [
            "s0:s0.txt", "s1:s1.txt", "s2:s2.txt"]
        reused = output(runtime, "second", "a", "s0")
        assert (reused / "_REF").read_text() == (runtime.data_dir / "runs" / "first" / "a" / "s0").as_uri()
        assert not (reused / "_SUCCESS").exists()  # referenced, not copied or recomputed
        assert (output(runtime, "second", "a", "s1") / "_SUCCESS").exists()
        job = next(r for r in runtime.store.list_item_results("second", "a") if r.index == 0)
        assert "the tool does not run" in runtime.read_log(job.job_id)

        # A rerun of the rerun follows the references to where the outputs really are.
        spec = json.loads(json.dumps(request.spec))
        spec["stages"][1]["command"] = [*spec["stages"][1]["command"][:-1], "--key", "{key}", "{a}"]
        _, again = prepare_rerun(runtime.ports, "second", new_run_id="third", document=spec,
                                 base_dir=str(tmp_path))
        assert again.lines() == [
            "stage a: 0 item(s) run again, 3 reused",
            "stage b: 3 item(s) run again (s0, s1, s2), 0 reused (its definition changed: command)",
            "stage c: runs again",
        ]
        assert again.references[f"{request.prefix}/a/s0".replace("second", "third")] == \
            (runtime.data_dir / "runs" / "first" / "a" / "s0").as_uri()


RETRY = ("""name: retry
stages:
  - name: flaky
""" + STAGE + """    command: [python, -m, tool, copy, --key, "{key}", --fail-once-dir, "@MARKERS", --out, "{out}", "{item}"]
    foreach: item
    retries:
      attempts: 3
      evaluate_on_exit:
        - {action: RETRY, on_exit_code: "7"}
        - {action: EXIT, on_reason: "*"}
""")


def test_a_job_that_fails_once_is_retried_and_only_the_good_attempt_is_published(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["only.txt"])
    markers = tmp_path / "markers"
    markers.mkdir()
    spec = RETRY.replace("@MARKERS", str(markers))
    with local_runtime(tmp_path / "data") as (_, runtime):
        run = run_to_end(runtime, request_for(runtime, spec, items, "retry1", tmp_path))
        assert run.status.value == "SUCCEEDED", run.failures
        job = runtime.store.get_job("retry1", "flaky")
        assert job is not None and not job.is_array  # one item: a plain job
        detail = describe(runtime, [job.job_id])[job.job_id]
        assert [a["container"]["exitCode"] for a in detail["attempts"]] == [7, 0]
        published = sorted(p.name for p in output(runtime, "retry1", "flaky", "only").iterdir())
        assert published == ["_SUCCESS", "only.txt"]
