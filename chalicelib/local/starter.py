"""Local run starter: plans, submits and tracks a run in-process (the RunStarter used by `conveyor run` and `serve --inbox`).

The tracker must already receive the engine's events (the composition root subscribes it);
after submission the starter reconciles the run once through DescribeJobs, so an event that
arrived before its job was recorded is not lost.
"""

from __future__ import annotations

from collections.abc import Callable

from chalicelib.pipeline.model import PlannedJob
from chalicelib.pipeline.ports import RunRequest
from chalicelib.pipeline.runs import RunPorts, start_run
from chalicelib.pipeline.tracker import Tracker


class LocalRunStarter:
    """RunStarter that runs ``service.start_run`` in this process."""

    def __init__(
        self,
        ports: RunPorts,
        tracker: Tracker,
        *,
        on_submit: Callable[[PlannedJob, str], None] | None = None,
    ) -> None:
        self._ports = ports
        self._tracker = tracker
        self._on_submit = on_submit

    def start_run(self, request: RunRequest) -> str:
        """Starts (or resumes) the run and returns its id; idempotent on the run id."""
        run = start_run(self._ports, request, on_submit=self._on_submit)
        self._tracker.reconcile(run.run_id)
        return run.run_id
