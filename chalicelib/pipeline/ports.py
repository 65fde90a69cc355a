"""Ports: the small Protocols through which the pipeline core reaches Batch, run state, run starts and event buses.

Each port has a local and an AWS implementation chosen at a composition root (CLI, Lambda
entry, tests), never by ``if local:``:

| port            | local                                   | AWS                                   |
| --------------- | --------------------------------------- | ------------------------------------- |
| BatchClient     | engine.client() or boto3 at `serve`     | boto3 ``batch`` client                |
| RunStore        | local/runstore.SqliteRunStore           | aws/runstore.DynamoRunStore           |
| RunStarter      | local/starter.LocalRunStarter           | aws/starter.SfnRunStarter             |
| EventPublisher  | events.MemoryPublisher (+ event log)    | aws/publisher.EventBridgePublisher    |

The ObjectStore port (manifests, outputs) belongs to ``objectstore.py``.

Run-store contract (both implementations must honour it; the unit tests in
``tests/unit/pipeline/test_runstore*.py`` are written against this Protocol):

* ``create_run`` is idempotent: it returns False and changes nothing when the run id exists
  (a trigger delivered twice starts one run).
* ``update_run`` never moves a finished (SUCCEEDED/FAILED) run back to a non-terminal status
  (``records.updated_run`` is the rule; both stores call it).
* ``put_job`` records a submitted Batch job under its deterministic ``(run_id, key)``; the
  submitter calls it right after each SubmitJob, and ``get_job`` before each one.
* ``advance_job`` applies a Batch status to a recorded job only if it moves the job forward
  in the lifecycle (SUBMITTED < PENDING < RUNNABLE < STARTING < RUNNING < SUCCEEDED|FAILED);
  it returns False for duplicates, regressions (RUNNING after SUCCEEDED) and unknown job ids,
  which is what makes the tracker idempotent for duplicate and out-of-order events. A move
  without a reason keeps the earlier reason (``records.advanced_job`` is the rule; both
  stores call it, and ``tests/unit/pipeline/test_runstore_sqlite.py`` holds both to it).
* ``claim_submission`` is a lock taken by a conditional write: exactly one caller gets True
  until the lease ends. The tracker takes it before submitting a deferred join, since
  ListJobs (the submitter's duplicate check) is eventually consistent on AWS.
* ``put_item_results`` upserts per-item states with the same no-regress rule.
* The wait pattern (AWS): the state machine's waiting task stores its task token with
  ``put_task_token``; the tracker stores a finished stage's result with ``put_stage_result``.
  Whichever call finds the other half already present gets ``WaitOutcome(completed=True,
  token, result)`` and must resume the wait (SendTaskSuccess/Failure). With conditional
  writes at least one caller sees completion; a duplicate resume is harmless because Step
  Functions rejects a used token. Neither call ever loses a stage that ended before its wait
  began.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from chalicelib.pipeline.records import (
    ItemResult,
    JobRecord,
    RunRecord,
    RunStatus,
    StageRecord,
    WaitOutcome,
)


@runtime_checkable
class BatchClient(Protocol):
    """The subset of boto3's ``batch`` client the core uses (same names, keyword args, dicts).

    Errors are ``botocore.exceptions.ClientError``; only ``submitter.py`` interprets them.
    """

    def submit_job(self, **kwargs: Any) -> dict[str, Any]: ...

    def describe_jobs(self, **kwargs: Any) -> dict[str, Any]: ...

    def list_jobs(self, **kwargs: Any) -> dict[str, Any]: ...

    def terminate_job(self, **kwargs: Any) -> dict[str, Any]: ...

    def register_job_definition(self, **kwargs: Any) -> dict[str, Any]: ...

    def describe_job_definitions(self, **kwargs: Any) -> dict[str, Any]: ...


class RunStore(Protocol):
    """Durable run state: runs, job-to-run map, stage and item results, wait tokens."""

    def create_run(self, run: RunRecord) -> bool:
        """Stores a new run; False (and no change) when the run id already exists."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """Newest first."""
        ...

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        ended_at: int | None = None,
        failures: Sequence[dict[str, Any]] | None = None,
        failure_count: int | None = None,
    ) -> None: ...

    def put_job(self, job: JobRecord) -> None:
        """Records a submitted job (idempotent on ``(run_id, key)``)."""
        ...

    def get_job(self, run_id: str, key: str) -> JobRecord | None: ...

    def find_job(self, job_id: str) -> JobRecord | None:
        """The recorded job with that Batch job id (events carry no tags)."""
        ...

    def list_jobs(self, run_id: str) -> list[JobRecord]: ...

    def advance_job(
        self,
        job_id: str,
        status: str,
        *,
        reason: str = "",
        started_at: int | None = None,
        stopped_at: int | None = None,
    ) -> bool:
        """Moves a recorded job forward; False for duplicate, regressing or unknown."""
        ...

    def claim_submission(self, run_id: str, key: str, *, now_ms: int, lease_ms: int) -> bool:
        """True for the one caller that may submit ``key`` now (a lease that ends after ``lease_ms``)."""
        ...

    def put_stage(self, stage: StageRecord) -> None:
        """Creates or replaces the stage's status and counts."""
        ...

    def get_stage(self, run_id: str, stage: str) -> StageRecord | None: ...

    def list_stages(self, run_id: str) -> list[StageRecord]: ...

    def put_item_results(self, results: Sequence[ItemResult]) -> None:
        """Upserts item states; a state never regresses (terminal states win)."""
        ...

    def list_item_results(self, run_id: str, stage: str | None = None) -> list[ItemResult]: ...

    def put_task_token(self, run_id: str, stage: str, token: str) -> WaitOutcome: ...

    def put_stage_result(self, run_id: str, stage: str, result: dict[str, Any]) -> WaitOutcome: ...


@dataclass(frozen=True)
class RunRequest:
    """What a run starter needs to start one run.

    ``spec`` is the spec document (parsed YAML/JSON, validated again when planned),
    ``items_source`` a folder, ``file://``/``s3://`` prefix or manifest URI, ``prefix`` the
    run's object-store prefix, ``source`` says what started it (``cli``, ``inbox:<key>``,
    ``s3://bucket/key#etag``, ``rerun:<run id>``), ``base_dir`` is the folder relative
    ``build`` paths in the spec resolve against (the spec file's folder; empty: cwd).
    """

    run_id: str
    spec: dict[str, Any]
    items_source: str
    prefix: str
    source: str = ""
    parent_run_id: str | None = None
    base_dir: str = ""


class RunStarter(Protocol):
    """Starts a run: in-process plan+submit+track locally, StartExecution on AWS."""

    def start_run(self, request: RunRequest) -> str:
        """Starts the run (idempotent on ``request.run_id``) and returns its id."""
        ...


class EventPublisher(Protocol):
    """Publishes Conveyor's EventBridge envelopes (``source: conveyor``)."""

    def publish(self, envelopes: Sequence[dict[str, Any]]) -> None: ...
