"""Shared set-up of the pipeline e2e tests: a real engine in a temp folder, the local runtime, run helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from chalicelib.local.runtime import LocalRuntime, open_with_engine
from chalicelib.localbatch.engine import Engine, HostCapacity
from chalicelib.pipeline.model import PlannedJob
from chalicelib.pipeline.ports import RunRequest
from chalicelib.pipeline.records import RunRecord
from chalicelib.pipeline.runs import start_run

RUN_TIMEOUT = 60.0

# The test tool package (a `build:` folder) and the stage settings every e2e spec shares.
TOOLS = Path(__file__).resolve().parents[1] / "fixtures" / "pipeline_tools"
STAGE = f"""    build: {TOOLS}
    compute: on-demand
    resources: {{vcpus: 1, memory: 64}}
"""


@contextmanager
def local_runtime(data_dir: Path, **limits: int) -> Iterator[tuple[Engine, LocalRuntime]]:
    engine = Engine(data_dir / "engine", host=HostCapacity(vcpus=2, memory_mib=4096, gpus=0)).start()
    runtime = open_with_engine(engine, data_dir, **limits)
    try:
        yield engine, runtime
    finally:
        runtime.close()
        engine.stop()


def make_items(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(f"content of {name}\n")
    return folder


def request_for(runtime: LocalRuntime, spec_text: str, items: Path | str, run_id: str, base_dir: Path) -> RunRequest:
    return RunRequest(
        run_id=run_id, spec=yaml.safe_load(spec_text), items_source=str(items),
        prefix=runtime.run_prefix(run_id), source="test", base_dir=str(base_dir),
    )


def run_to_end(
    runtime: LocalRuntime,
    request: RunRequest,
    *,
    on_submit: Callable[[PlannedJob, str], None] | None = None,
) -> RunRecord:
    """Starts the run (through the starter, or the service when ``on_submit`` is given) and waits for its end."""
    if on_submit is None:
        runtime.starter.start_run(request)
    else:
        start_run(runtime.ports, request, on_submit=on_submit)
        runtime.tracker.reconcile(request.run_id)
    return wait_for_end(runtime, request.run_id)


def wait_for_end(runtime: LocalRuntime, run_id: str) -> RunRecord:
    deadline = time.monotonic() + RUN_TIMEOUT
    last_reconcile = time.monotonic()
    while time.monotonic() < deadline:
        run = runtime.store.get_run(run_id)
        if run is not None and run.status.is_terminal:
            return run
        time.sleep(0.05)
        if time.monotonic() - last_reconcile > 3:
            runtime.tracker.reconcile(run_id)
            last_reconcile = time.monotonic()
    raise AssertionError(f"run {run_id} did not end within {RUN_TIMEOUT}s: {runtime.store.list_stages(run_id)}")


def describe(runtime: LocalRuntime, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(job_ids), 100):
        for job in runtime.batch.describe_jobs(jobs=job_ids[start : start + 100])["jobs"]:
            found[job["jobId"]] = job
    return found


def child_ids(runtime: LocalRuntime, run_id: str, key: str, size: int) -> list[str]:
    job = runtime.store.get_job(run_id, key)
    assert job is not None, key
    return [f"{job.job_id}:{i}" for i in range(size)]


def output(runtime: LocalRuntime, run_id: str, *parts: str) -> Path:
    return runtime.data_dir / "runs" / run_id / Path(*parts)

