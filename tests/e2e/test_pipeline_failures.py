"""Failures on the real engine: deferred join over the items that succeeded, retries, outputs only on success, re-run of failed items."""

from __future__ import annotations

import json
from pathlib import Path

from chalicelib.pipeline.runs import rerun_request
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


def test_rerun_of_failed_items_starts_a_run_over_them_only(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt", "s2.txt"])
    with local_runtime(tmp_path / "data") as (_, runtime):
        first = run_to_end(runtime, request_for(runtime, DEFERRED_JOIN, items, "first", tmp_path))
        assert first.status.value == "FAILED"
        request = rerun_request(runtime.ports, "first", new_run_id="second")
        # Fix the cause (the spec now fails no item) by editing the stored document's command.
        spec = json.loads(json.dumps(request.spec))
        spec["stages"][0]["command"] = [a for a in spec["stages"][0]["command"] if a not in ("--fail-key", "s1")]
        from dataclasses import replace

        second = run_to_end(runtime, replace(request, spec=spec))
        assert second.status.value == "SUCCEEDED", second.failures
        assert second.items == 1 and second.parent_run_id == "first"
        assert output(runtime, "second", "c", "all.txt").read_text().splitlines() == ["s1:s1.txt"]


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
