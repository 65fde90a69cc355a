"""`conveyor cancel`: stop a run (or one job) from any terminal, and the stop that Ctrl-C on `conveyor run` makes.

Both go through the core's ``run_end.cancel_run``; the CLI's own part is waiting until the engine
reports every job of the run ended, so no job outlives the engine that runs it (and comes
back as a lost-host retry at the next start).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError
from rich.console import Console

from chalicelib.local.engine_reader import engine_url
from chalicelib.local.runtime import LocalRuntime, open_in_process, open_remote
from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.run_end import cancel_run, unfinished_jobs
from chalicelib.pipeline.submitter import SubmissionError

STOP_WAIT_SECONDS = 45.0  # past the engine's SIGTERM-to-SIGKILL grace (30 s by default)
STOP_POLL_SECONDS = 0.2


def register(commands: Any, default_data_dir: str) -> None:
    cancel = commands.add_parser(
        "cancel", help="cancel a pipeline run (or one job) and wait until its jobs have stopped",
        description="Cancels RUN_ID: jobs not started yet are cancelled, running ones terminated, and the run "
                    "ends FAILED with the reason. With --job, stops that one engine job instead.",
    )
    cancel.add_argument("run_id", nargs="?", help="the run to cancel (see `conveyor runs`)")
    cancel.add_argument("--job", help="cancel (waiting) or terminate (running) this one job instead of a run")
    cancel.add_argument("--reason", default="by the user (conveyor cancel)", help="recorded on the run and its jobs")
    cancel.add_argument("--data-dir", default=default_data_dir, help="state folder (default %(default)s)")
    cancel.add_argument("--endpoint-url", help="a running `conveyor serve` (default: the engine of --data-dir)")
    cancel.set_defaults(handler=handle_cancel)


def handle_cancel(args: argparse.Namespace) -> int:
    if bool(args.run_id) == bool(args.job):
        print("error: give a RUN_ID or --job JOB_ID (one of the two)", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir).resolve()
    url = args.endpoint_url or engine_url(data_dir)
    runtime = open_remote(url, data_dir) if url else open_in_process(data_dir)
    console = Console()
    try:
        if args.job:
            runtime.batch.terminate_job(jobId=args.job, reason=args.reason[:1024])
            console.print(f"job {args.job}: stop requested ({args.reason})", highlight=False, soft_wrap=True)
            return 0
        if runtime.store.get_run(args.run_id) is None:
            print(f"error: no run {args.run_id!r} in {data_dir} (see `conveyor runs --data-dir ...`)",
                  file=sys.stderr)
            return 1
        stopped = stop_run(runtime, args.run_id, args.reason, console)
        run = runtime.store.get_run(args.run_id)
        status = run.status.value if run else "?"
        console.print(f"run {args.run_id} is {status}; stopped {stopped} job(s)", highlight=False, soft_wrap=True)
        return 0
    except (PipelineError, SubmissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ClientError as err:  # TerminateJob refused (an unknown job id)
        print(f"error: {err.response.get('Error', {}).get('Message', err)}", file=sys.stderr)
        return 1
    finally:
        runtime.close()


def stop_run(runtime: LocalRuntime, run_id: str, reason: str, console: Console) -> int:
    """Cancels the run through the core and waits until the engine reports each of its jobs ended.

    Returns how many jobs were stopped. A job submitted while cancelling (a join the tracker
    had under way) is stopped on a second pass.
    """
    outcome = cancel_run(runtime.ports, run_id, reason)
    stopped = set(outcome.terminated)
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    announced = False
    while True:
        try:
            alive = unfinished_jobs(runtime.ports, run_id)
        except EndpointConnectionError:
            # The engine belonged to a `conveyor run` process: it saw the run end, waited for
            # these jobs to stop, and exited with its engine.
            console.print("the engine that ran them has stopped with its `conveyor run`", highlight=False)
            return len(stopped)
        if not alive:
            break
        if set(alive) - stopped:
            stopped |= set(cancel_run(runtime.ports, run_id, reason).terminated)
        if time.monotonic() > deadline:
            console.print(f"warning: {len(alive)} job(s) of run {run_id} have not stopped yet: "
                          f"{', '.join(alive[:5])}", highlight=False, soft_wrap=True)
            break
        if not announced:
            console.print(f"waiting for {len(alive)} job(s) of run {run_id} to stop",
                          highlight=False, soft_wrap=True)
            announced = True
        time.sleep(STOP_POLL_SECONDS)
    runtime.tracker.reconcile(run_id)  # the jobs' ends into the stages and item results
    return len(stopped)


def settle_jobs(runtime: LocalRuntime, run_id: str, console: Console) -> None:
    """After a run ended: waits for jobs still stopping (cancelled elsewhere) before the engine stops."""
    if unfinished_jobs(runtime.ports, run_id):
        run = runtime.store.get_run(run_id)
        reason = str(run.failures[0].get("reason", "")) if run and run.failures else ""
        stop_run(runtime, run_id, reason.removeprefix("cancelled: ") or "the run ended", console)
