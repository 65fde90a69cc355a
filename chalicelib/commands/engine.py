"""Engine commands: `conveyor serve`, `jobs`, `logs` and `events`."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import threading
import time
from typing import Any

from chalicelib.local.engine_reader import EngineReader, open_reader

DEFAULT_PORT = 8000
JOB_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")


def register(commands: Any) -> None:
    """Adds the engine sub-commands to the `conveyor` parser."""
    serve = commands.add_parser(
        "serve", help="serve the embedded AWS Batch engine over HTTP",
        description="Starts the engine on --data-dir and serves the AWS Batch API (boto3, the aws CLI), "
                    "/events and /logs. One engine owns a data folder; `conveyor run` and the read commands "
                    "on that folder use this one.")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s; 0 picks one)")
    serve.add_argument("--data-dir", default=default_data_dir(), help="state folder (default %(default)s)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow a non-loopback --host; the API has no authentication")
    serve.add_argument("--vcpus", type=float, help="host vCPUs offered to jobs (default: this machine's cores)")
    serve.add_argument("--memory", type=int, help="host memory in MiB offered to jobs (default: this machine's)")
    serve.add_argument("--gpus", type=int, help="GPUs offered to jobs (default: those nvidia-smi lists)")
    serve.add_argument("--spot-reclaim-rate", type=float, default=0.0,
                       help="probability that an attempt on a SPOT environment loses its host (0-1)")
    serve.add_argument("--kill-grace", type=float, default=30.0,
                       help="seconds between SIGTERM and SIGKILL on timeout or terminate (default 30)")
    serve.add_argument("--seed", type=int, help="seed for Spot reclaims, for repeatable runs")
    serve.add_argument("--pass-env", action="append", default=[], metavar="NAME",
                       help="hand this host variable to every job (repeatable; jobs otherwise get "
                            "none of the engine's environment)")
    serve.add_argument("--warm-python-module", action="append", default=[], metavar="MODULE[:PRELOAD,...]",
                       help="start `python -m MODULE` jobs from a warm launcher that imported MODULE's package "
                            "and PRELOAD once (repeatable; the pipeline runner is warm unless --no-warm-runner)")
    serve.add_argument("--no-warm-runner", action="store_true",
                       help="start every pipeline runner job as a fresh interpreter")
    serve.add_argument("--job-credentials", metavar="FILE",
                       help="JSON {jobRoleArn or \"*\": {AccessKeyId, SecretAccessKey, Token}} served to jobs "
                            "through AWS_CONTAINER_CREDENTIALS_FULL_URI")
    serve.add_argument("--region", default=None, help="AWS_REGION jobs see (default us-east-1)")
    serve.add_argument("--inbox", help="start a pipeline run for each manifest dropped into this folder")
    serve.add_argument("--spec", help="pipeline spec the --inbox runs use")
    serve.add_argument("--specs", help="folder of pipeline specs the console (/console) offers to start")
    serve.set_defaults(handler=serve_command)

    jobs = commands.add_parser("jobs", help="list jobs of the embedded engine",
                               description="Lists the engine's jobs, newest first (array children: "
                                           "`conveyor logs JOB_ID:INDEX`, or `conveyor logs --run`).")
    _add_target(jobs)
    jobs.add_argument("--status", type=job_status, help=f"only jobs in this status ({', '.join(JOB_STATUSES)})")
    jobs.add_argument("--limit", type=int, default=50, help="at most this many jobs (default %(default)s)")
    jobs.add_argument("--json", action="store_true", help="print the jobs as JSON")
    jobs.set_defaults(handler=jobs_command)

    logs = commands.add_parser("logs", help="print a job's log (stdout and stderr)",
                               description="Prints the log of JOB_ID (an array child is JOB_ID:INDEX), or of a "
                                           "run's items: --run RUN_ID [--stage STAGE] [--item KEY] (--run alone: "
                                           "the failed items).")
    _add_target(logs)
    logs.add_argument("job_id", nargs="?", help="job id; an array job's children are JOB_ID:INDEX")
    logs.add_argument("--run", help="the run whose item logs to print (instead of JOB_ID)")
    logs.add_argument("--stage", help="with --run: only this stage")
    logs.add_argument("--item", help="with --run: only this item (its key, as in the run summary, or index)")
    logs.add_argument("--attempt", type=int, help="attempt number, 1-based (default: the latest)")
    logs.add_argument("--aws", action="store_true",
                      help="read the job from AWS Batch and its log from CloudWatch Logs (/aws/batch/job) "
                           "with the usual AWS credentials and region")
    logs.set_defaults(handler=logs_command)

    events = commands.add_parser("events", help="print Batch Job State Change events (JSON lines)")
    _add_target(events)
    events.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    events.add_argument("--after", type=int, default=0, help="start after this event sequence number")
    events.add_argument("--job-id", help="only this job's events")
    events.set_defaults(handler=events_command)


def default_data_dir() -> str:
    return os.environ.get("CONVEYOR_DATA_DIR", os.path.join(os.getcwd(), "conveyor-data"))


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", default=os.environ.get("CONVEYOR_ENDPOINT_URL"),
                        help="a running `conveyor serve` (default: read --data-dir directly)")
    parser.add_argument("--data-dir", default=default_data_dir(), help="engine state folder (default %(default)s)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_command(args: argparse.Namespace) -> int:
    from chalicelib.console.mount import console_mounts
    from chalicelib.localbatch.engine import Engine
    from chalicelib.localbatch.rest import BatchHttpServer
    from chalicelib.localbatch.scheduling.capacity import HostCapacity
    from chalicelib.localbatch.scheduling.scheduler import EngineOptions
    from chalicelib.localbatch.storage.folder_lock import FolderInUseError
    from chalicelib.localbatch.storage.store import StoreError

    if not _is_loopback(args.host):
        if not args.allow_remote:
            print(f"error: --host {args.host} is not a loopback address; the engine API has no "
                  "authentication. Pass --allow-remote to expose it anyway.", file=sys.stderr)
            return 2
        print(f"WARNING: serving the engine API without authentication on {args.host}; anyone who can "
              "reach this port can run commands on this machine.", file=sys.stderr)
    if not 0.0 <= args.spot_reclaim_rate <= 1.0:
        print("error: --spot-reclaim-rate: expected a number between 0 and 1", file=sys.stderr)
        return 2
    problem = _serve_option_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.specs and not os.path.isdir(args.specs):
        print(f"error: --specs {args.specs}: not a folder", file=sys.stderr)
        return 2
    if args.inbox and not args.spec:
        print("error: --inbox needs --spec (the pipeline the dropped manifests run)", file=sys.stderr)
        return 2
    detected = HostCapacity.detect()
    host = HostCapacity(vcpus=args.vcpus or detected.vcpus, memory_mib=args.memory or detected.memory_mib,
                        gpus=detected.gpus if args.gpus is None else args.gpus)
    options = EngineOptions(kill_grace_seconds=args.kill_grace, spot_reclaim_rate=args.spot_reclaim_rate,
                            seed=args.seed)
    container = _container_options(args)
    if isinstance(container, str):
        print(f"error: {container}", file=sys.stderr)
        return 2
    try:
        engine = Engine(args.data_dir, host=host, options=options, container=container, owner="serve").start()
    except FolderInUseError as err:
        print(f"error: {err}. Stop it first, or give this engine its own --data-dir.", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: --data-dir {args.data_dir}: {err.strerror or err}", file=sys.stderr)
        return 2
    except StoreError as err:
        print(f"error: --data-dir {args.data_dir}: {err}", file=sys.stderr)
        return 2
    mounts, console = console_mounts(engine, args.specs)
    try:
        server = BatchHttpServer(engine, args.host, args.port, mounts=mounts).start()
    except OSError as err:
        engine.stop()
        print(f"error: cannot listen on {args.host}:{args.port}: {err.strerror}", file=sys.stderr)
        return 2
    engine.folder_lock.advertise(server.url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    inbox_thread = _start_inbox(args, engine, server.url, stop) if args.inbox else None
    print(f"conveyor engine serving the AWS Batch API on {server.url} (data: {engine.data_dir}; "
          f"{host.vcpus:g} vCPUs, {host.memory_mib} MiB, {host.gpus} GPUs; launcher: {launcher_name(engine)}; "
          f"{_jobs_line(engine)})", flush=True)
    print(f"console: {server.url}/console", flush=True)
    try:
        while not stop.wait(0.5) and not engine.failed.is_set():
            pass
    except KeyboardInterrupt:
        pass
    stop.set()
    if inbox_thread is not None:
        inbox_thread.join(timeout=5)
    server.stop()
    console.close()
    engine.stop()
    if engine.failure is not None:  # the watchdog: never go on answering with a dead scheduler
        print(f"error: the engine failed: {engine.failure}", file=sys.stderr)
        return 70
    return 0


def launcher_name(engine: Any) -> str:
    """How the engine starts attempts, as the start line names it (the fast C spawner or not)."""
    names = {"SpawnerExecutor": "C spawner", "ProcessExecutor": "Python subprocess (slower; no C compiler?)",
             "DockerExecutor": "Docker"}
    kind = type(engine.executor).__name__
    return names.get(kind, kind)


def _container_options(args: argparse.Namespace) -> Any:
    """The job environment options, or the problem with them (a string)."""
    from chalicelib.localbatch.execution.container_env import ContainerOptions
    from chalicelib.localbatch.execution.task_endpoints import load_credentials
    from chalicelib.localbatch.execution.warm_launches import parse_warm_modules
    from chalicelib.pipeline.invocation import RUNNER_WARM_ENTRY

    credentials = {}
    if args.job_credentials:
        try:
            credentials = load_credentials(args.job_credentials)
        except OSError as err:
            return f"--job-credentials {args.job_credentials}: {err.strerror or err}"
        except ValueError as err:
            return f"--job-credentials {err}"
    bad = [name for name in args.pass_env if not name or "=" in name]
    if bad:
        return f"--pass-env: expected a variable name, got {bad[0]!r}"
    region = args.region or "us-east-1"
    warm = [*([] if args.no_warm_runner else [RUNNER_WARM_ENTRY]), *args.warm_python_module]
    try:
        parse_warm_modules(warm)
    except ValueError as err:
        return f"--warm-python-module: {err}"
    return ContainerOptions(region=region, pass_env=tuple(args.pass_env), credentials=credentials,
                            warm_modules=tuple(warm))


def _jobs_line(engine: Any) -> str:
    describe = getattr(engine.executor, "describe", None)
    return describe() if describe is not None else "jobs: docker executor"


def _serve_option_problem(args: argparse.Namespace) -> str | None:
    """The first out-of-range `serve` option, described; None when all are usable."""
    if not 0 <= args.port <= 65535:
        return f"--port: expected 0 to 65535, got {args.port}"
    if args.vcpus is not None and args.vcpus <= 0:
        return f"--vcpus: expected a number greater than 0, got {args.vcpus:g}"
    if args.memory is not None and args.memory < 4:
        return f"--memory: expected at least 4 MiB, got {args.memory}"
    if args.gpus is not None and args.gpus < 0:
        return f"--gpus: expected 0 or more, got {args.gpus}"
    if args.kill_grace < 0:
        return f"--kill-grace: expected 0 or more seconds, got {args.kill_grace:g}"
    return None


def _start_inbox(args: argparse.Namespace, engine: Any, url: str, stop: threading.Event) -> threading.Thread:
    from chalicelib.local.inbox import run_inbox
    from chalicelib.local.stream import is_stream_spec
    from chalicelib.local.stream_inbox import run_stream_inbox

    if is_stream_spec(args.spec):  # a stream: files become items on a worker fleet
        target, targs = run_stream_inbox, (args.inbox, args.spec, engine, url, stop)
    else:
        target, targs = run_inbox, (args.inbox, args.spec, engine, stop)
    thread = threading.Thread(target=target, args=targs, name="conveyor-inbox", daemon=True)
    thread.start()
    return thread


def job_status(text: str) -> str:
    """A Batch job status, any case; argparse reports anything else with the valid ones."""
    status = text.strip().upper()
    if status not in JOB_STATUSES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(JOB_STATUSES)}, got {text!r}")
    return status


def jobs_command(args: argparse.Namespace) -> int:
    reader = open_reader(args.endpoint_url, args.data_dir)
    rows = reader.jobs(args.status, args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    # Columns as wide as their longest value: an id or name is never cut.
    id_width = max([len("JOB ID"), *(len(job["jobId"]) for job in rows)])
    name_width = max([len("NAME"), *(len(job["jobName"]) for job in rows)])
    print(f"{'JOB ID':<{id_width}}  {'NAME':<{name_width}}  {'STATUS':<9}  REASON")
    for job in rows:
        print(f"{job['jobId']:<{id_width}}  {job['jobName']:<{name_width}}  {job['status']:<9}  "
              f"{job.get('statusReason', '')}".rstrip())
    return 0


def logs_command(args: argparse.Namespace) -> int:
    if bool(args.job_id) == bool(args.run):
        print("error: give a JOB_ID or --run RUN_ID (one of the two)", file=sys.stderr)
        return 2
    if args.run:
        return _run_logs(args)
    if args.aws:
        return _cloudwatch_logs(args.job_id, args.attempt)
    return _write_log(open_reader(args.endpoint_url, args.data_dir), args.job_id, args.attempt)


def _write_log(reader: EngineReader, job_id: str, attempt: int | None) -> int:
    """Writes one job's log to stdout; 1 with the reason on stderr when there is none."""
    try:
        sys.stdout.write(reader.log(job_id, attempt))
    except LookupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _run_logs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from chalicelib.commands.run_logs import RunLogError, find_item_jobs

    try:
        found = find_item_jobs(Path(args.data_dir), args.run, args.stage, args.item)
    except RunLogError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    reader: EngineReader = open_reader(args.endpoint_url, args.data_dir)
    for entry in found:
        print(f"==> stage {entry.stage}, item {entry.item!r}: {entry.status}, job {entry.job_id} <==", flush=True)
        if _write_log(reader, entry.job_id, args.attempt):
            return 1
    return 0


def _cloudwatch_logs(job_id: str, attempt: int | None) -> int:
    """`conveyor logs --aws`: the same job log, read where AWS Batch's awslogs driver put it."""
    from botocore.exceptions import BotoCoreError, ClientError

    from chalicelib import aws_clients as aws
    from chalicelib.aws.logs import JobLogError, log_stream_of, read_log_lines

    try:
        jobs = aws.client("batch").describe_jobs(jobs=[job_id])["jobs"]
        if not jobs:
            print(f"error: job {job_id!r} not found in AWS Batch", file=sys.stderr)
            return 1
        stream = log_stream_of(jobs[0], None if attempt is None else attempt - 1)
        for line in read_log_lines(aws.client("logs"), stream):
            print(line)
    except JobLogError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as err:
        print(f"error: AWS: {err}", file=sys.stderr)
        return 1
    return 0


def events_command(args: argparse.Namespace) -> int:
    reader = open_reader(args.endpoint_url, args.data_dir)
    after = args.after
    try:
        while True:
            events, after = reader.events(after, wait=5.0 if args.follow else 0.0, job_id=args.job_id)
            for event in events:
                print(json.dumps(event, separators=(",", ":")), flush=True)
            if not args.follow:
                return 0
            if not events and reader.is_direct:
                time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
