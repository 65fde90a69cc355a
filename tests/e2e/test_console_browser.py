"""The console in a real Chromium: start the genomics pipeline, watch it go green, read a failed item's log,
re-run failed items, cancel a running run and see every job end, and every problem of a bad start shown.

One served engine and one browser page for the module (starting Chromium costs seconds). Each
test drives the page the way a person would: links, buttons and forms, no direct API calls
except to check what the engine itself says.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from examples.genomics.simulate import ITEMS_MANIFEST, SimulationConfig, simulate
from tests.e2e.console_harness import Served, chromium_page, screenshot, served_console

pytestmark = pytest.mark.slow
GENOMICS_STAGES = ("qc", "align", "call", "joint", "report")
TERMINAL = {"SUCCEEDED", "FAILED"}


def _dataset(folder: Path, malformed: tuple[str, ...] = ()) -> Path:
    simulate(SimulationConfig(out=folder, samples=2, genome_size=20_000, depth=10, seed=21, malformed=malformed),
             log=lambda _: None)
    return folder / ITEMS_MANIFEST


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_console(tmp_path_factory.mktemp("console")) as srv:
        yield srv


@pytest.fixture(scope="module")
def page(served: Served) -> Iterator[Any]:
    with chromium_page() as browser_page:
        errors: list[str] = []
        browser_page.on("pageerror", lambda err: errors.append(str(err)))
        yield browser_page
        assert not errors, f"script errors in the console: {errors}"


def _start(page: Any, served: Served, spec: str, run_input: str) -> str:
    page.goto(f"{served.url}/console#/start")
    page.wait_for_selector(f'#spec option[value="{spec}"]', state="attached")
    page.select_option("#spec", spec)
    page.fill("#input", run_input)
    page.click("#start")
    page.wait_for_url(re.compile(r"#/run/"))
    return page.url.rsplit("#/run/", 1)[1]


def _wait_run(page: Any, status: str) -> None:
    page.wait_for_selector(f'main[data-run-status="{status}"]', timeout=90_000)


def test_start_the_genomics_pipeline_and_watch_every_stage_turn_green(page: Any, served: Served,
                                                                      tmp_path: Path) -> None:
    items = _dataset(tmp_path / "data")
    run_id = _start(page, served, "genomics.yaml", f'{{"items": "{items}"}}')
    page.wait_for_selector("#graph .node")  # the graph is drawn while the run is still going
    _wait_run(page, "SUCCEEDED")
    for stage in GENOMICS_STAGES:
        page.wait_for_selector(f'#graph .node[data-stage="{stage}"][data-status="SUCCEEDED"]')
    assert "2/2" in page.text_content('#graph .node[data-stage="qc"] .stage-counts')
    assert "No failures" in page.inner_text("#failures")
    screenshot(page, "run")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "run-dark")
    page.emulate_media(color_scheme="light")
    page.click("nav >> text=Runs")
    page.wait_for_selector(f'tr[data-run="{run_id}"] .st-SUCCEEDED')
    screenshot(page, "runs")


def test_a_malformed_sample_shows_its_failure_and_log_and_its_rerun_succeeds(page: Any, served: Served,
                                                                              tmp_path: Path) -> None:
    items = _dataset(tmp_path / "data", malformed=("S02",))
    run_id = _start(page, served, "genomics.yaml", f'{{"items": "{items}"}}')
    _wait_run(page, "FAILED")
    row = page.locator("#failures tr.failure").first
    row.wait_for()
    text = row.inner_text()
    assert "qc" in text and "S02" in text and "malformed FASTQ" in text
    screenshot(page, "run-failed")
    row.locator("a", has_text="log").click()
    page.wait_for_url(re.compile(r"#/job/"))
    expect(page.locator("#log")).to_contain_text("malformed FASTQ", timeout=30_000)
    assert page.locator('main[data-job-status="FAILED"]').count() == 1
    assert "S02_R2.fastq.gz" in page.inner_text("#log")
    screenshot(page, "job")
    _dataset(tmp_path / "data")  # the sample's reads, fixed
    page.goto(f"{served.url}/console#/run/{run_id}")
    page.wait_for_selector('main[data-run-status="FAILED"]')
    page.click("#rerun")
    page.wait_for_url(re.compile(r"#/run/(?!" + re.escape(run_id) + ")"))
    _wait_run(page, "SUCCEEDED")
    meta = page.inner_text("#run-meta")
    assert run_id in meta and "rerun:" + run_id in meta
    page.wait_for_selector('#graph .node[data-stage="qc"][data-status="SUCCEEDED"]')  # S02's chain, now good


def test_cancel_a_running_run_ends_every_job(page: Any, served: Served, tmp_path: Path) -> None:
    folder = tmp_path / "items"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / name).write_text(name)
    run_id = _start(page, served, "slow.yaml", f'{{"items": "{folder}"}}')
    _wait_run(page, "RUNNING")
    _wait_for_running_jobs(served, run_id)
    page.click("#cancel")
    page.click("#cancel-confirm")
    _wait_run(page, "FAILED")
    expect(page.locator("#failures")).to_contain_text("cancelled")
    deadline = time.monotonic() + 60
    while True:  # the run ends at once; its jobs end as their processes are stopped
        jobs = served.backend.store().list_jobs(run_id)
        described = served.engine.service.call("DescribeJobs", {"jobs": [j.job_id for j in jobs]})["jobs"]
        if described and all(job["status"] in TERMINAL for job in described):
            break
        assert time.monotonic() < deadline, [j["status"] for j in described]
        time.sleep(0.2)
    parent = next(job for job in described if job.get("arrayProperties"))
    assert parent["arrayProperties"]["statusSummary"].get("RUNNING", 0) == 0
    expect(page.locator('#graph .node[data-status="RUNNING"]')).to_have_count(0, timeout=30_000)
    screenshot(page, "run-cancelled")


def _wait_for_running_jobs(served: Served, run_id: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        ids = [job.job_id for job in served.backend.store().list_jobs(run_id) if job.stage == "wait"]
        jobs = served.engine.service.call("DescribeJobs", {"jobs": ids})["jobs"] if ids else []
        if any(job.get("arrayProperties", {}).get("statusSummary", {}).get("RUNNING") for job in jobs):
            return
        assert time.monotonic() < deadline, "no job of the slow run started"
        time.sleep(0.1)


def test_a_bad_start_shows_every_problem_at_its_path(page: Any, served: Served) -> None:
    page.goto(f"{served.url}/console#/start")
    page.wait_for_selector('#spec option[value="broken.yaml"]', state="attached")
    page.select_option("#spec", "broken.yaml")
    page.fill("#input", '{"items": "/no/such/items", "color": "blue", "runId": "-bad"}')
    page.click("#start")
    problems = page.locator(".problems")
    problems.wait_for()
    text = problems.inner_text()
    for path in ("$.items", "$.color", "$.runId", "spec $.stages[0]"):
        assert path in text, (path, text)
    assert "#/start" in page.url  # nothing started
    screenshot(page, "start-problems")
    page.select_option("#spec", "genomics.yaml")
    page.fill("#input", '{"items": ""}')
    screenshot(page, "start")


def test_queues_events_and_array_jobs_render_aggregates(page: Any, served: Served) -> None:
    page.goto(f"{served.url}/console#/queues")
    page.wait_for_selector('main[data-loaded="true"] #queues table')
    assert "default" in page.inner_text("#queues") and "vCPUs" in page.inner_text("#host")
    screenshot(page, "queues")
    page.goto(f"{served.url}/console#/events")
    page.wait_for_selector("#events table")
    assert "Batch Job State Change" in page.inner_text("#events")
    page.select_option("#kind", "pipeline")
    expect(page.locator("#events")).not_to_contain_text("Batch Job State Change")
    screenshot(page, "events")
    page.click("nav >> text=Runs")
    page.locator("tbody tr a").first.click()
    page.wait_for_selector("#stage-table a")
    page.locator("#stage-table a", has_text="[").first.click()  # an array job: "<key> [size]"
    page.wait_for_selector("#job-array .bar")
    assert page.locator("#job-array tr").count() == 0  # counts, never a row per child
