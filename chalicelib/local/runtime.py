"""Composition root of local pipeline runs: wires the engine (in-process or over HTTP), SQLite run store, tracker and starter.

Used by `conveyor run / runs / run-status / rerun` and by `serve --inbox`. In-process the
tracker subscribes to the engine's events; against a running `conveyor serve` it follows the
engine's HTTP event feed (``GET /events``), falling back to DescribeJobs polling when the feed
is not there.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.local.runstore import SqliteRunStore
from chalicelib.local.starter import LocalRunStarter
from chalicelib.objectstores import open_store
from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.events import MemoryPublisher
from chalicelib.pipeline.joins import manifest_join_items
from chalicelib.pipeline.planner import DEFAULT_ARRAY_LIMIT, DEFAULT_DEPENDENCY_LIMIT
from chalicelib.pipeline.runs import RunPorts, epoch_ms
from chalicelib.pipeline.tracker import Tracker

logger = logging.getLogger(__name__)
COMPUTE_CLASSES = ("spot", "on-demand", "gpu")
RUNS_DB = "runs.sqlite3"
EVENTS_LOG = "pipeline-events.jsonl"  # Conveyor's own events, one EventBridge envelope per line


def event_log_appender(path: Path) -> Callable[[dict[str, Any]], None]:
    """Appends each envelope as one JSON line (the local stand-in for the pipeline event bus)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def append(envelope: dict[str, Any]) -> None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(envelope, separators=(",", ":")) + "\n")

    return append


@dataclass
class LocalRuntime:
    """The wired ports of local runs; ``close()`` stops what ``open_*`` started."""

    data_dir: Path
    batch: Any
    store: SqliteRunStore
    publisher: MemoryPublisher
    tracker: Tracker
    ports: RunPorts
    starter: LocalRunStarter
    read_log: Callable[[str], str]
    follows_events: bool = True
    endpoint_url: str | None = None
    engine: Any = None  # the in-process engine, when there is one (None over HTTP)
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def run_prefix(self, run_id: str) -> str:
        return (self.data_dir / "runs" / run_id).resolve().as_uri()

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:
                logger.exception("closing the local runtime failed")
        self._closers.clear()


def queue_map(batch: Any) -> dict[str, str]:
    """Compute class -> queue: a queue named like the class when it exists, else ``default``.

    Raises:
        PipelineError: the engine did not answer DescribeJobQueues (every job would otherwise
            be sent to ``default`` without a word, or fail later at SubmitJob).
    """
    try:
        found = batch.describe_job_queues(jobQueues=list(COMPUTE_CLASSES)).get("jobQueues", [])
    except Exception as err:  # any client error (botocore, HTTP, engine) becomes one message naming the call
        raise PipelineError(f"cannot list the engine's job queues (DescribeJobQueues): {err}") from err
    names = {q["jobQueueName"] for q in found if q.get("state", "ENABLED") == "ENABLED"}
    return {cls: (cls if cls in names else "default") for cls in COMPUTE_CLASSES}


def _wire(
    data_dir: Path,
    batch: Any,
    read_log: Callable[[str], str],
    *,
    array_limit: int,
    dependency_limit: int,
) -> LocalRuntime:
    store = SqliteRunStore(data_dir / RUNS_DB)
    publisher = MemoryPublisher(sink=event_log_appender(data_dir / EVENTS_LOG))
    tracker = Tracker(
        store=store, batch=batch, publisher=publisher,
        join_items=manifest_join_items(open_store("file:///")), clock=epoch_ms,
        enforce_deadlines=True,  # no state machine here: the tracker ends waits past wait_timeout
    )
    ports = RunPorts(
        batch=batch, store=store, publisher=publisher, queues=queue_map(batch), objects=open_store,
        array_limit=array_limit, dependency_limit=dependency_limit,
    )
    return LocalRuntime(
        data_dir=data_dir, batch=batch, store=store, publisher=publisher, tracker=tracker,
        ports=ports, starter=LocalRunStarter(ports, tracker), read_log=read_log,
    )


def open_with_engine(
    engine: Any,
    data_dir: Path | None = None,
    *,
    array_limit: int = DEFAULT_ARRAY_LIMIT,
    dependency_limit: int = DEFAULT_DEPENDENCY_LIMIT,
) -> LocalRuntime:
    """Runtime over an engine already started in this process (the caller stops it)."""
    root = Path(data_dir or engine.data_dir)
    runtime = _wire(
        root, engine.client(), lambda job_id: str(engine.read_log(job_id)),
        array_limit=array_limit, dependency_limit=dependency_limit,
    )
    runtime.engine = engine
    runtime._closers.append(engine.subscribe(runtime.tracker.handle))
    runtime._closers.append(runtime.store.close)
    return runtime


def open_in_process(
    data_dir: Path,
    *,
    array_limit: int = DEFAULT_ARRAY_LIMIT,
    dependency_limit: int = DEFAULT_DEPENDENCY_LIMIT,
    host: Any = None,
) -> LocalRuntime:
    """Starts the embedded engine on ``data_dir`` and wires a runtime to it.

    The engine is also served on a loopback port for as long as this runtime lives, and the
    folder's lock names that URL: `conveyor cancel` and the read commands of another terminal
    reach this engine through it.

    Raises:
        FolderInUseError: another engine owns ``data_dir``.
    """
    from chalicelib.localbatch.engine import Engine
    from chalicelib.localbatch.execution.container_env import ContainerOptions
    from chalicelib.localbatch.rest import BatchHttpServer
    from chalicelib.pipeline.invocation import RUNNER_WARM_ENTRY

    engine = Engine(data_dir, host=host, owner="run", container=ContainerOptions(warm_modules=(RUNNER_WARM_ENTRY,)))
    engine.start()
    try:
        server = BatchHttpServer(engine, "127.0.0.1", 0).start()
    except BaseException:
        engine.stop()
        raise
    try:
        engine.folder_lock.advertise(server.url)
        runtime = open_with_engine(engine, data_dir, array_limit=array_limit, dependency_limit=dependency_limit)
    except BaseException:
        server.stop()
        engine.stop()
        raise
    runtime.endpoint_url = server.url
    runtime._closers.insert(0, engine.stop)
    runtime._closers.insert(1, server.stop)
    return runtime


def open_local(
    data_dir: Path,
    endpoint_url: str | None = None,
    *,
    array_limit: int = DEFAULT_ARRAY_LIMIT,
    dependency_limit: int = DEFAULT_DEPENDENCY_LIMIT,
) -> LocalRuntime:
    """The runtime `conveyor run` uses: the given endpoint, else the engine serving the folder, else its own.

    Raises:
        FolderInUseError: another `conveyor run` owns ``data_dir`` (its engine stops with it).
    """
    from chalicelib.local.engine_reader import served_endpoint

    limits = {"array_limit": array_limit, "dependency_limit": dependency_limit}
    url = endpoint_url or served_endpoint(data_dir)
    if url:
        return open_remote(url, data_dir, **limits)
    return open_in_process(data_dir, **limits)


def open_remote(
    endpoint_url: str,
    data_dir: Path,
    *,
    array_limit: int = DEFAULT_ARRAY_LIMIT,
    dependency_limit: int = DEFAULT_DEPENDENCY_LIMIT,
) -> LocalRuntime:
    """Runtime against a running `conveyor serve` (boto3 + its HTTP event feed)."""
    from chalicelib.local.engine_reader import HttpReader, local_batch_client

    reader = HttpReader(endpoint_url)
    batch = local_batch_client(endpoint_url)
    runtime = _wire(
        data_dir, batch, lambda job_id: reader.log(job_id, None),
        array_limit=array_limit, dependency_limit=dependency_limit,
    )
    runtime.endpoint_url = endpoint_url
    stop = threading.Event()
    thread = threading.Thread(
        target=_follow_feed, args=(reader, runtime, stop), name="conveyor-event-feed", daemon=True
    )
    thread.start()
    runtime._closers.append(runtime.store.close)

    def stop_feed() -> None:
        stop.set()
        thread.join(timeout=5)

    runtime._closers.append(stop_feed)
    return runtime


def _follow_feed(reader: Any, runtime: LocalRuntime, stop: threading.Event) -> None:
    """Feeds the engine's HTTP event stream to the tracker; polling when there is none."""
    from chalicelib.local.engine_reader import EngineRefused

    try:
        _, after = reader.events(0, 0, None)
        while True:
            page, after_next = reader.events(after, 0, None)
            if not page:
                break
            after = after_next
    except EngineRefused as err:  # a refusal is reported, not taken for "no feed here"
        logger.error("%s", err)
        runtime.follows_events = False
        return
    except (LookupError, OSError, ValueError, KeyError):
        # No event feed on this server: the run command's periodic reconcile drives the tracker.
        runtime.follows_events = False
        logger.info("no /events feed at the endpoint; following runs by DescribeJobs polling")
        return
    while not stop.is_set():
        try:
            events, after = reader.events(after, 2.0, None)
        except EngineRefused as err:
            logger.error("%s; no longer following its events", err)
            return
        except (LookupError, OSError, ValueError, KeyError):
            stop.wait(1.0)
            continue
        for envelope in events:
            try:
                runtime.tracker.handle(envelope)
            except Exception:
                logger.exception("tracker failed on an event")
