"""The console's read models: runs, one run, one job, queues and events as JSON-able dicts.

Aggregates only: a stage is its counts per status and its few Batch jobs (array parents),
never a row per array child; failures are capped at FAILURES_SHOWN with the total given.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from chalicelib.console.backend import ConsoleBackend
from chalicelib.objectstores import open_store
from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.manifest import read_item
from chalicelib.pipeline.records import RunRecord, StageRecord

FAILURES_SHOWN = 50
LOG_TAIL_LINES = 12
LOG_MAX_BYTES = 256 * 1024
DEPENDENCY_FAILED = "Dependent Job failed"
RUN_STATUSES = ("SUBMITTING", "RUNNING", "SUCCEEDED", "FAILED")


class NotFound(LookupError):
    """The thing a console URL names does not exist (answered as 404)."""


def _stage_dict(stage: StageRecord) -> dict[str, Any]:
    return {"stage": stage.stage, "status": stage.status.value, "items": stage.items, "counts": stage.counts,
            "startedAt": stage.started_at, "endedAt": stage.ended_at, "deferred": stage.deferred}


def _run_dict(run: RunRecord, stages: list[StageRecord]) -> dict[str, Any]:
    return {"runId": run.run_id, "pipeline": run.pipeline, "status": run.status.value, "items": run.items,
            "createdAt": run.created_at, "endedAt": run.ended_at, "source": run.source,
            "parentRunId": run.parent_run_id, "prefix": run.prefix,
            "stages": [_stage_dict(s) for s in stages]}


def runs_view(backend: ConsoleBackend, status: str | None, limit: int = 200) -> dict[str, Any]:
    store = backend.store()
    runs = [r for r in store.list_runs(limit) if not status or r.status.value == status]
    return {"runs": [_run_dict(r, store.list_stages(r.run_id)) for r in runs], "statuses": list(RUN_STATUSES)}


def _edges(run: RunRecord) -> dict[str, list[str]]:
    stages = run.spec.get("document", {}).get("stages", []) if isinstance(run.spec, dict) else []
    return {str(s.get("name")): [str(a) for a in s.get("after", []) or []] for s in stages if isinstance(s, dict)}


def _item_key(run: RunRecord, index: int) -> str:
    """An item's key, read from the run's manifest by offset (two range reads, not the whole manifest)."""
    manifest = run.spec.get("manifest") if isinstance(run.spec, dict) else None
    if not manifest:
        return f"#{index}"
    try:
        return read_item(open_store(manifest.rsplit("/", 1)[0]), manifest, index).key
    except PipelineError:
        return f"#{index}"


def _log_tail(backend: ConsoleBackend, job_id: str) -> str:
    try:
        text = backend.read_log(job_id)
    except Exception as err:  # a job the engine no longer knows: say so in place of the log
        return f"(no log: {err})"
    return "\n".join(text.rstrip().splitlines()[-LOG_TAIL_LINES:])


def _failures(backend: ConsoleBackend, run: RunRecord, stages: list[StageRecord]) -> dict[str, Any]:
    failed = backend.store().list_item_results(run.run_id, status="FAILED")
    roots = [r for r in failed if r.reason != DEPENDENCY_FAILED]
    skipped = Counter(r.stage for r in failed if r.reason == DEPENDENCY_FAILED)
    joins = {s.stage for s in stages if s.items == 1}
    shown = []
    for result in roots[:FAILURES_SHOWN]:
        is_join = result.stage in joins and run.items != 1
        shown.append({"stage": result.stage, "item": result.index,
                      "key": "(join)" if is_join else _item_key(run, result.index), "reason": result.reason,
                      "exitCode": result.exit_code, "jobId": result.job_id,
                      "logTail": _log_tail(backend, result.job_id)})
    return {"total": len(roots), "shown": shown, "skipped": dict(skipped)}


def run_view(backend: ConsoleBackend, run_id: str) -> dict[str, Any]:
    store = backend.store()
    run = store.get_run(run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r}")
    stages = store.list_stages(run_id)
    view = _run_dict(run, stages)
    edges = _edges(run)
    jobs: dict[str, list[dict[str, Any]]] = {}
    for job in store.list_jobs(run_id):
        jobs.setdefault(job.stage, []).append({"jobId": job.job_id, "key": job.key, "isArray": job.is_array,
                                               "size": job.size, "status": job.status})
    for stage in view["stages"]:
        stage["after"] = edges.get(stage["stage"], [])
        stage["jobs"] = jobs.get(stage["stage"], [])
    view["failures"] = _failures(backend, run, stages)
    # Run-level causes (a cancel, a stage's wait timing out) come first in the run's failures, stage-less.
    view["failures"]["causes"] = [str(f.get("reason", "")) for f in run.failures if not f.get("stage")]
    view["children"] = [r.run_id for r in store.list_runs(500) if r.parent_run_id == run_id]
    return view


def job_view(backend: ConsoleBackend, job_id: str) -> dict[str, Any]:
    engine = backend.engine
    found = engine.service.call("DescribeJobs", {"jobs": [job_id]}).get("jobs", [])
    if not found:
        raise NotFound(f"no job {job_id!r}")
    job = found[0]
    events, _ = engine.read_events(0, 1000, 0.0, job_id)
    history = [{"time": e.get("time"), "status": e["detail"].get("status"),
                "reason": e["detail"].get("statusReason", "")}
               for e in events if e.get("detail-type") == "Batch Job State Change"]
    parent_id = job_id.split(":", 1)[0]
    record = backend.store().find_job(parent_id)
    container = job.get("container", {})
    return {
        "jobId": job["jobId"], "jobName": job.get("jobName"), "status": job.get("status"),
        "statusReason": job.get("statusReason", ""), "queue": job.get("jobQueue", "").rsplit("/", 1)[-1],
        "createdAt": job.get("createdAt"), "startedAt": job.get("startedAt"), "stoppedAt": job.get("stoppedAt"),
        "command": container.get("command", []), "image": container.get("image", ""),
        "exitCode": container.get("exitCode"), "history": history,
        "attempts": [{"exitCode": a.get("container", {}).get("exitCode"),
                      "reason": a.get("container", {}).get("reason", ""), "statusReason": a.get("statusReason", ""),
                      "startedAt": a.get("startedAt"), "stoppedAt": a.get("stoppedAt")}
                     for a in job.get("attempts", [])],
        "dependsOn": [d.get("jobId") for d in job.get("dependsOn", [])],
        "array": job.get("arrayProperties"), "parentId": parent_id if parent_id != job_id else None,
        "run": {"runId": record.run_id, "stage": record.stage} if record else None,
    }


def job_log(backend: ConsoleBackend, job_id: str, attempt: int | None) -> dict[str, Any]:
    text = backend.read_log(job_id, attempt)
    clipped = len(text) > LOG_MAX_BYTES
    return {"text": text[-LOG_MAX_BYTES:], "clipped": clipped}


def queues_view(backend: ConsoleBackend) -> dict[str, Any]:
    engine = backend.engine
    queues = engine.service.call("DescribeJobQueues", {}).get("jobQueues", [])
    ces = engine.service.call("DescribeComputeEnvironments", {}).get("computeEnvironments", [])
    scheduler = engine.scheduler
    with engine.lock:
        by_queue: dict[str, Counter[str]] = {}
        for job in scheduler.jobs.values():
            if not job.is_parent:  # children are counted, their parent is not counted twice
                by_queue.setdefault(job.sub.queue, Counter())[job.status.value] += 1
        attempts = reclaimed = 0
        for job in scheduler.jobs.values():
            for attempt in job.attempts:
                attempts += 1
                reclaimed += str(attempt.get("statusReason", "")).startswith("Host EC2")
        used_ce = {name: ce.used_vcpus for name, ce in scheduler.ces.items()}
        ledger = scheduler.ledger
        host = {"vcpus": engine.host.vcpus, "memoryMiB": engine.host.memory_mib, "gpus": engine.host.gpus,
                "usedVcpus": ledger.used_vcpus, "usedMemoryMiB": ledger.used_memory,
                "usedGpus": engine.host.gpus - len(ledger.free_gpus)}
    rate = scheduler.options.spot_reclaim_rate
    return {
        "host": host,
        "computeEnvironments": [_ce_row(ce, used_ce.get(ce["computeEnvironmentName"], 0.0), rate) for ce in ces],
        "queues": [{"name": q["jobQueueName"], "state": q.get("state"), "priority": q.get("priority"),
                    "environments": [o["computeEnvironment"].rsplit("/", 1)[-1]
                                     for o in q.get("computeEnvironmentOrder", [])],
                    "counts": dict(by_queue.get(q["jobQueueName"], {}))} for q in queues],
        "spot": {"declaredRate": rate, "attempts": attempts, "reclaimed": reclaimed,
                 "observedRate": reclaimed / attempts if attempts else 0.0},
    }


def _ce_row(ce: dict[str, Any], used: float, default_rate: float) -> dict[str, Any]:
    resources = ce.get("computeResources") or {}
    kind = resources.get("type", "")
    rate = 0.0
    if kind in ("SPOT", "FARGATE_SPOT"):
        tagged = (ce.get("tags") or {}).get("conveyor:reclaim-rate")
        try:
            rate = float(tagged) if tagged is not None else default_rate
        except ValueError:
            rate = default_rate
    return {"name": ce["computeEnvironmentName"], "state": ce.get("state"), "type": kind or ce.get("type"),
            "maxVcpus": resources.get("maxvCpus"), "usedVcpus": used, "reclaimRate": rate}


def events_view(backend: ConsoleBackend, after: int, pipeline_after: int, job_id: str | None,
                limit: int = 300) -> dict[str, Any]:
    if after < 0:  # the page's first read: the newest events, not the whole history
        after = max(0, head_seq(backend.engine) - limit)
    events, next_seq = backend.engine.read_events(after, limit, 0.0, job_id)
    batch = [{"time": e.get("time"), "type": e.get("detail-type"),
              "jobId": e.get("detail", {}).get("jobId", ""), "jobName": e.get("detail", {}).get("jobName", ""),
              "status": e.get("detail", {}).get("status", ""), "reason": e.get("detail", {}).get("statusReason", "")}
             for e in events]
    pipeline, pipeline_next = _pipeline_events(backend.events_log, pipeline_after)
    return {"batch": batch, "next": next_seq, "pipeline": pipeline, "pipelineNext": pipeline_next}


def head_seq(engine: Any) -> int:
    """The engine's newest event seq: a job filter no submission matches reads no rows and answers it."""
    _, head = engine.read_events(0, 1, 0.0, "console-head")
    return int(head)


def _pipeline_events(path: Path, offset: int, max_bytes: int = 256 * 1024) -> tuple[list[dict[str, Any]], int]:
    """Conveyor's own events appended after byte ``offset`` (the newest ``max_bytes`` at most)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            start = max(offset, size - max_bytes) if offset <= size else 0
            handle.seek(start)
            raw = handle.read(size - start)
    except OSError:
        return [], offset
    complete = raw[: raw.rfind(b"\n") + 1]
    rows = []
    for line in complete.splitlines()[-300:]:
        try:
            env = json.loads(line)
        except ValueError:
            continue
        detail = env.get("detail", {})
        rows.append({"time": env.get("time"), "type": env.get("detail-type"), "runId": detail.get("runId", ""),
                     "stage": detail.get("stage", ""), "status": detail.get("status", "")})
    return rows, start + len(complete)
