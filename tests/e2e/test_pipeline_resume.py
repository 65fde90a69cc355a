"""An interrupted submission resumed on the real engine submits no job twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.pipeline import payloads
from chalicelib.pipeline.runcontext import from_record
from tests.e2e.pipeline_harness import (
    STAGE,
    local_runtime,
    make_items,
    output,
    request_for,
    run_to_end,
    wait_for_end,
)

SPEC = ("""name: resume
stages:
  - name: a
""" + STAGE + """    command: [python, -m, tool, copy, --key, "{key}", --out, "{out}", "{item}"]
    foreach: item
  - name: b
""" + STAGE + """    command: [python, -m, tool, copy, --key, "{key}", --out, "{out}", "{a}"]
    foreach: item
    after: [a]
  - name: c
""" + STAGE + """    command: [python, -m, tool, gather, --out, "{out}", "{b}"]
    after: [b]
""")


class Crash(Exception):
    """Stands for the submitting process dying."""


def _jobs_named(runtime, name: str) -> list[dict]:  # type: ignore[no-untyped-def]
    page = runtime.batch.list_jobs(jobQueue="default", filters=[{"name": "JOB_NAME", "values": [name]}])
    return [j for j in page["jobSummaryList"] if j["jobName"] == name]


def test_crash_after_a_submit_and_between_submit_and_record_resumes_without_duplicates(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt"])
    with local_runtime(tmp_path / "data") as (_, runtime):
        request = request_for(runtime, SPEC, items, "resume1", tmp_path)

        def crash_after_first(job, job_id):  # type: ignore[no-untyped-def]
            raise Crash(job.key)

        with pytest.raises(Crash):
            run_to_end(runtime, request, on_submit=crash_after_first)
        assert [j.key for j in runtime.store.list_jobs("resume1")] == ["a"]
        # The worse crash: "b" reached Batch but its record was never written.
        ctx = from_record(runtime.store.get_run("resume1"))
        a_id = runtime.store.get_job("resume1", "a").job_id
        orphan = runtime.batch.submit_job(**payloads.to_submit_job(ctx.spec, ctx.plan.job("b"), ctx.submit, {"a": a_id}))

        runtime.starter.start_run(request)  # the retried submission
        run = wait_for_end(runtime, "resume1")
        assert run.status.value == "SUCCEEDED", run.failures
        assert runtime.store.get_job("resume1", "b").job_id == orphan["jobId"]
        for job in ctx.plan.jobs:
            assert len(_jobs_named(runtime, job.name)) == 1, job.name
        assert output(runtime, "resume1", "c", "all.txt").read_text().splitlines() == ["s0:s0.txt", "s1:s1.txt"]


def test_starting_the_same_run_id_again_changes_nothing(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["s0.txt"])
    with local_runtime(tmp_path / "data") as (_, runtime):
        request = request_for(runtime, SPEC, items, "once", tmp_path)
        first = run_to_end(runtime, request)
        again = run_to_end(runtime, request)
        assert first == again
        assert len(runtime.store.list_runs()) == 1
        assert all(len(_jobs_named(runtime, j.job_name)) == 1 for j in runtime.store.list_jobs("once"))
