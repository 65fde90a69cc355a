"""Run commands: `conveyor run`, `runs`, `run-status` and `rerun` (start, follow and inspect pipeline runs).

`run` plans, submits and follows a run on the embedded engine (in-process by default,
`--endpoint-url` for a running `conveyor serve`), shows live progress per stage and ends with
a summary. Exit codes: 0 every item succeeded, 1 the run failed or was refused, 130 Ctrl-C
(the run's outstanding jobs are terminated first).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from chalicelib.commands.cancel import settle_jobs, stop_run
from chalicelib.commands.interrupts import Interrupts, RunInterrupted
from chalicelib.commands.items_check import missing_items_path
from chalicelib.commands.progress import RunProgress
from chalicelib.commands.run_summary import format_duration, print_summary
from chalicelib.local.engine_reader import DirectReader, served_endpoint
from chalicelib.local.runstore import SqliteRunStore
from chalicelib.local.runtime import RUNS_DB, LocalRuntime, open_local
from chalicelib.local.starter import LocalRunStarter
from chalicelib.localbatch.storage.folder_lock import FolderInUseError
from chalicelib.pipeline.errors import PipelineError, SpecValidationError
from chalicelib.pipeline.objectstore import join_uri, to_uri
from chalicelib.pipeline.planner import DEFAULT_ARRAY_LIMIT, DEFAULT_DEPENDENCY_LIMIT
from chalicelib.pipeline.ports import RunRequest
from chalicelib.pipeline.runs import RunView, describe_run, epoch_ms, new_run_id, prepare_rerun
from chalicelib.pipeline.spec import load_spec, parse_document
from chalicelib.pipeline.submitter import SubmissionError

POLL_SECONDS = 0.25
RECONCILE_SECONDS = 5.0


def default_data_dir() -> str:
    return os.environ.get("CONVEYOR_DATA_DIR", os.path.join(os.getcwd(), "conveyor-data"))


def register_run_commands(commands: Any) -> None:
    """Adds run, runs, run-status and rerun to the `conveyor` parser."""
    run = commands.add_parser(
        "run", help="run a pipeline on the embedded engine and follow it",
        description="Plans SPEC over its items, submits the jobs to the engine of --data-dir (or --endpoint-url) "
                    "and follows the run to its end. Exit 0: every item succeeded; 1: the run failed or was "
                    "refused; 130: Ctrl-C (the run is cancelled and its jobs stopped first).")
    run.add_argument("spec", help="pipeline spec file (YAML or JSON)")
    run.add_argument("--items", help="items folder, file:// or s3:// prefix, or manifest (overrides the spec)")
    run.add_argument("--out", help="where runs write (default file://<data dir>/runs); the run id is appended")
    run.add_argument("--run-id", help="run id (default <pipeline>-<time>-<hex>); reusing one resumes that run")
    run.add_argument("--array-limit", type=int, default=DEFAULT_ARRAY_LIMIT, help=argparse.SUPPRESS)
    run.add_argument("--dependency-limit", type=int, default=DEFAULT_DEPENDENCY_LIMIT, help=argparse.SUPPRESS)
    run.add_argument("--console", action="store_true",
                     help="serve the console for this run's engine on a loopback port and print its URL")
    _add_engine_args(run)
    run.set_defaults(handler=handle_run)

    runs = commands.add_parser("runs", help="list pipeline runs",
                               description="Lists the runs recorded in the data folder, newest first.")
    runs.add_argument("--data-dir", default=default_data_dir(), help="state folder (default %(default)s)")
    runs.add_argument("--limit", type=int, default=20, help="at most this many runs (default %(default)s)")
    runs.add_argument("--json", action="store_true", help="print the runs as JSON")
    runs.add_argument("-q", "--quiet", action="store_true",
                      help="print only run ids, newest first (e.g. RUN_ID=$(conveyor runs -q --limit 1))")
    runs.set_defaults(handler=handle_runs)

    status = commands.add_parser("run-status", help="show one pipeline run: stages, counts, failures",
                                 description="Shows RUN_ID's stages, item counts and failures (see `conveyor runs`).")
    status.add_argument("run_id")
    status.add_argument("--data-dir", default=default_data_dir(), help="state folder (default %(default)s)")
    status.add_argument("--json", action="store_true", help="print the run as JSON")
    status.set_defaults(handler=handle_run_status)

    rerun = commands.add_parser(
        "rerun", help="complete a run: re-run what failed, never ran or changed; reuse the rest",
        description="Starts a new run linked to RUN_ID over all its items, like Nextflow's -resume: outputs "
                    "RUN_ID published are reused (referenced, not copied) unless the stage's definition "
                    "changed; everything else runs, and joins run over every item that has outputs.")
    rerun.add_argument("run_id")
    rerun.add_argument("--failed", action="store_true",
                       help="accepted for compatibility: a rerun always re-runs only what has no reusable output")
    rerun.add_argument("--spec", help="the (edited) spec to run (default: RUN_ID's); changed stages re-run")
    _add_engine_args(rerun)
    rerun.set_defaults(handler=handle_rerun)


def _add_engine_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=default_data_dir(), help="state folder (default %(default)s)")
    parser.add_argument("--endpoint-url", default=os.environ.get("CONVEYOR_ENDPOINT_URL"),
                        help="a running `conveyor serve` (default: start the engine in this process)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bars")


def _open_runtime(args: argparse.Namespace) -> LocalRuntime:
    """The engine for this command: --endpoint-url, else the `conveyor serve` of the folder, else its own.

    Raises:
        FolderInUseError: another `conveyor run` owns the folder's engine.
    """
    data_dir = Path(args.data_dir).resolve()
    url = args.endpoint_url or served_endpoint(data_dir)
    if url and not args.endpoint_url:
        print(f"using the engine `conveyor serve` runs for {data_dir} at {url}", file=sys.stderr)
    return open_local(
        data_dir, url,
        array_limit=getattr(args, "array_limit", DEFAULT_ARRAY_LIMIT),
        dependency_limit=getattr(args, "dependency_limit", DEFAULT_DEPENDENCY_LIMIT),
    )


def _folder_busy(err: FolderInUseError) -> int:
    print(f"error: {err}. Wait for it to finish, or share one engine: `conveyor serve --data-dir "
          f"{err.data_dir}` in another terminal, then `conveyor run` uses it.", file=sys.stderr)
    return 2


def handle_run(args: argparse.Namespace) -> int:
    console = Console()
    try:
        spec = load_spec(args.spec)
        document = parse_document(Path(args.spec).read_text(encoding="utf-8"))
    except SpecValidationError as err:
        print(str(err), file=sys.stderr)
        return 1
    problem = missing_items_path(args.items)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    run_id = args.run_id or new_run_id(spec.name, epoch_ms())
    with Interrupts() as interrupts:
        try:
            runtime = _open_runtime(args)
        except FolderInUseError as err:
            return _folder_busy(err)
        stop_console = _open_console(args, runtime, console) if args.console else None
        try:
            prefix = join_uri(to_uri(args.out), run_id) if args.out else runtime.run_prefix(run_id)
            request = RunRequest(
                run_id=run_id, spec=document, items_source=args.items or "", prefix=prefix,
                source="cli", base_dir=str(Path(args.spec).resolve().parent),
            )
            return follow_run(runtime, request, console, progress=not args.no_progress, interrupts=interrupts)
        except SubmissionError as err:
            print(f"error: run {run_id}: {err}; jobs submitted so far are kept, run again with "
                  f"--run-id {run_id} to resume", file=sys.stderr)
            return 1
        except PipelineError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        finally:
            if stop_console is not None:
                stop_console()
            runtime.close()


def _open_console(args: argparse.Namespace, runtime: LocalRuntime, console: Console) -> Callable[[], None] | None:
    """`run --console`: the console on a loopback port for the in-process engine (or the server's URL)."""
    if runtime.engine is None:
        console.print(f"console: {(runtime.endpoint_url or '').rstrip('/')}/console", highlight=False, soft_wrap=True)
        return None
    from chalicelib.console.mount import console_mounts
    from chalicelib.localbatch.rest import BatchHttpServer

    mounts, backend = console_mounts(runtime.engine, Path(args.spec).resolve().parent, runtime=runtime)
    server = BatchHttpServer(runtime.engine, "127.0.0.1", 0, mounts=mounts).start()
    console.print(f"console: {server.url}/console", highlight=False, soft_wrap=True)

    def stop() -> None:
        server.stop()
        backend.close()
    return stop


def handle_rerun(args: argparse.Namespace) -> int:
    console = Console()
    with Interrupts() as interrupts:
        try:
            runtime = _open_runtime(args)
        except FolderInUseError as err:
            return _folder_busy(err)
        try:
            old = runtime.store.get_run(args.run_id)
            if old is None:
                print(f"error: no run {args.run_id!r} in {runtime.data_dir}{_elsewhere_hint(runtime.data_dir)}", file=sys.stderr)
                return 1
            document, base_dir = None, None
            if args.spec:
                load_spec(args.spec)  # every problem at once, before anything is written
                document = parse_document(Path(args.spec).read_text(encoding="utf-8"))
                base_dir = str(Path(args.spec).resolve().parent)
            request, resume = prepare_rerun(runtime.ports, args.run_id, new_run_id=new_run_id(old.pipeline, epoch_ms()),
                                            document=document, base_dir=base_dir)
            console.print(f"rerun of {args.run_id} as {request.run_id}:", highlight=False, soft_wrap=True)
            for line in resume.lines():
                console.print(f"  {line}", highlight=False, soft_wrap=True)
            return follow_run(runtime, request, console, progress=not args.no_progress, interrupts=interrupts)
        except SpecValidationError as err:
            print(str(err), file=sys.stderr)
            return 1
        except PipelineError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        finally:
            runtime.close()


def follow_run(
    runtime: LocalRuntime, request: RunRequest, console: Console, *, progress: bool = True,
    interrupts: Interrupts | None = None,
) -> int:
    """Starts the run and follows it to the end; returns the exit code (0, 1 or 130).

    Ctrl-C (``interrupts``) is honoured after each recorded submission and between polls: the
    run is cancelled through the core and every job of it has ended before this returns.

    Raises:
        PipelineError: the run was refused before anything ran (bad spec or items).
    """
    interrupts = interrupts or Interrupts()
    store = runtime.store
    try:
        interrupts.check()
        LocalRunStarter(runtime.ports, runtime.tracker, on_submit=interrupts.check).start_run(request)
        console.print(
            f"run {request.run_id} started; outputs under {request.prefix}", highlight=False, soft_wrap=True
        )
        display = RunProgress(console, request.run_id) if progress else None
        if display is not None:
            display.__enter__()
        try:
            _wait(runtime, request.run_id, display, interrupts)
        finally:
            if display is not None:
                display.__exit__(None, None, None)
    except (RunInterrupted, KeyboardInterrupt):
        if store.get_run(request.run_id) is None:
            console.print("interrupted before the run was recorded; nothing was submitted", highlight=False)
            return 130
        stopped = stop_run(runtime, request.run_id, "interrupted by the user (Ctrl-C)", console)
        console.print(
            f"interrupted: run {request.run_id} cancelled, {stopped} job(s) stopped", highlight=False, soft_wrap=True
        )
        return 130
    settle_jobs(runtime, request.run_id, console)  # a run cancelled from elsewhere: let its jobs stop
    run = store.get_run(request.run_id)
    assert run is not None
    print_summary(console, run, store.list_stages(run.run_id), runtime.read_log)
    return 0 if run.status.value == "SUCCEEDED" else 1


def _wait(runtime: LocalRuntime, run_id: str, display: RunProgress | None, interrupts: Interrupts) -> None:
    store = runtime.store
    interval = RECONCILE_SECONDS if runtime.follows_events else 1.0
    last_reconcile = time.monotonic()
    while True:
        run = store.get_run(run_id)
        if display is not None:
            display.update(store.list_stages(run_id), store.item_counts(run_id))
        if run is not None and run.status.is_terminal:
            return
        interrupts.requested.wait(POLL_SECONDS)
        interrupts.check()
        if time.monotonic() - last_reconcile >= (RECONCILE_SECONDS if runtime.follows_events else interval):
            # Safety net for events missed while not subscribed, and the polling fallback.
            runtime.tracker.reconcile(run_id)
            last_reconcile = time.monotonic()


def _open_store(args: argparse.Namespace) -> SqliteRunStore | None:
    path = Path(args.data_dir) / RUNS_DB
    if not path.exists():
        print(f"no runs in {args.data_dir}{_elsewhere_hint(Path(args.data_dir))}", file=sys.stderr)
        return None
    return SqliteRunStore(path)


def _elsewhere_hint(data_dir: Path | None = None) -> str:
    """Names the other data folders under the current one that hold runs (`make demo` writes its own)."""
    here = Path.cwd()
    found = []
    for pattern in ("conveyor-data", "*/conveyor-data", "*/*/conveyor-data", "*/*/*/conveyor-data"):
        for folder in here.glob(pattern):
            if (folder / RUNS_DB).exists() and (data_dir is None or folder.resolve() != data_dir.resolve()):
                found.append(folder.relative_to(here))
    if not found:
        return " (give --data-dir, or set CONVEYOR_DATA_DIR)"
    return "; runs are also in " + ", ".join(f"--data-dir {f}" for f in found[:3])


def _log_reader(data_dir: Path) -> Callable[[str], str] | None:
    """Reads job logs straight from the engine state in ``data_dir`` (None when there is none)."""
    if not (data_dir / "state.sqlite3").exists():
        return None
    reader = DirectReader(data_dir)
    return lambda job_id: reader.log(job_id, None)


def handle_runs(args: argparse.Namespace) -> int:
    store = _open_store(args)
    if store is None:
        return 1
    runs = store.list_runs(args.limit)
    if args.quiet:
        for run in runs:
            print(run.run_id)
        return 0
    if args.json:
        print(json.dumps([{"runId": r.run_id, "pipeline": r.pipeline, "status": r.status.value, "items": r.items,
                           "createdAt": r.created_at, "endedAt": r.ended_at, "source": r.source,
                           "parentRunId": r.parent_run_id} for r in runs], indent=2))
        return 0
    rows = [("RUN ID", "PIPELINE", "STATUS", "ITEMS", "CREATED", "TIME", "SOURCE")]
    now = epoch_ms()
    for run in runs:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.created_at / 1000))
        elapsed = format_duration(run.created_at, run.ended_at if run.status.is_terminal else now)
        rows.append((run.run_id, run.pipeline, run.status.value, str(run.items), created,
                     elapsed if run.status.is_terminal else f"{elapsed}+", run.source))
    # Plain columns as wide as their values: ids are never cut, whatever the terminal or pipe.
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def with_live_counts(view: RunView, item_counts: Mapping[str, Mapping[str, int]]) -> RunView:
    """The view with each unfinished stage's counts as its item results say now (a stage's record
    holds the counts of its last status change: a running stage's would say it had not begun)."""
    stages = [
        replace(stage, counts=dict(item_counts[stage.stage]))
        if not stage.status.is_terminal and item_counts.get(stage.stage) else stage
        for stage in view.stages
    ]
    return RunView(run=view.run, stages=stages)


def handle_run_status(args: argparse.Namespace) -> int:
    store = _open_store(args)
    if store is None:
        return 1
    try:
        view = describe_run(store, args.run_id)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    view = with_live_counts(view, store.item_counts(args.run_id))
    if view.run.source == "stream":  # a stream keeps one record per item and stage instead of stages
        from chalicelib.commands.stream_status import print_stream_status, stream_items
        if args.json:
            print(json.dumps({**view.to_dict(), "items": stream_items(Path(args.data_dir), view.run)}, indent=2))
        else:
            print_stream_status(Console(), Path(args.data_dir), view.run)
    elif args.json:
        print(json.dumps(view.to_dict(), indent=2))
    else:
        print_summary(Console(), view.run, view.stages, _log_reader(Path(args.data_dir)))
    return 0 if view.run.status.value in ("SUCCEEDED", "RUNNING", "SUBMITTING") else 1
