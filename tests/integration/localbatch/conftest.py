"""Engine fixtures: an in-process engine on an ephemeral loopback port with boto3, and `conveyor serve`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from chalicelib.localbatch.engine import Engine
from chalicelib.localbatch.rest import BatchHttpServer
from chalicelib.localbatch.scheduling.capacity import HostCapacity
from chalicelib.localbatch.scheduling.scheduler import EngineOptions

REPO = Path(__file__).resolve().parents[3]
JOBS = REPO / "tests" / "fixtures" / "jobs"
PYTHON = sys.executable


def boto_batch(url: str) -> Any:
    return boto3.client("batch", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30))


def register(batch: Any, name: str, command: list[str], vcpus: str = "1", memory: str = "256",
             gpus: str | None = None, **extra: Any) -> str:
    """Registers a job definition whose command runs on the host; returns its ARN."""
    reqs = [{"type": "VCPU", "value": vcpus}, {"type": "MEMORY", "value": memory}]
    if gpus:
        reqs.append({"type": "GPU", "value": gpus})
    container = {"image": "busybox", "command": command, "resourceRequirements": reqs}
    container.update(extra.pop("container", {}))
    return batch.register_job_definition(jobDefinitionName=name, type="container",
                                         containerProperties=container, **extra)["jobDefinitionArn"]


@dataclass
class LiveEngine:
    engine: Engine
    server: BatchHttpServer
    batch: Any
    data_dir: Path

    @property
    def url(self) -> str:
        return self.server.url

    def submit(self, name: str, jd: str, **kwargs: Any) -> str:
        kwargs.setdefault("jobQueue", "default")
        return self.batch.submit_job(jobName=name, jobDefinition=jd, **kwargs)["jobId"]


def start_live(data_dir: Path, gpus: int = 0, vcpus: float = 2, **options: Any) -> LiveEngine:
    """An engine (2 vCPUs, 4 GiB, optional declared GPUs) served over loopback HTTP on an ephemeral port."""
    engine = Engine(data_dir, host=HostCapacity(vcpus=vcpus, memory_mib=4096, gpus=gpus),
                    options=EngineOptions(**{"kill_grace_seconds": 1.0, **options})).start()
    server = BatchHttpServer(engine, port=0)
    # A short poll interval makes shutdown() quick (the default 0.5 s adds up over the suite).
    server.thread = threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                     name="localbatch-http", daemon=True)
    server.start()
    return LiveEngine(engine, server, boto_batch(server.url), data_dir)


def stop_live(live: LiveEngine) -> None:
    live.server.stop()
    live.engine.stop()


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., LiveEngine]]:
    """Starts engines; each test gets its own data dirs."""
    started: list[LiveEngine] = []

    def start(**kwargs: Any) -> LiveEngine:
        live = start_live(tmp_path / f"engine{len(started)}", **kwargs)
        started.append(live)
        return live

    yield start
    for live in started:
        stop_live(live)


@pytest.fixture(scope="module")
def shared_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEngine]:
    """One engine for a whole module of tests that only read or get refused (validation)."""
    live = start_live(tmp_path_factory.mktemp("shared-engine"))
    yield live
    stop_live(live)


@pytest.fixture
def live(make_engine: Callable[..., LiveEngine]) -> LiveEngine:
    return make_engine()


@dataclass
class ServeProcess:
    proc: subprocess.Popen[str]
    url: str
    data_dir: Path
    banner: str


def conveyor_argv(*args: str) -> list[str]:
    return [PYTHON, "-m", "chalicelib.cli", *args]


def start_serve(data_dir: Path, *extra: str) -> ServeProcess:
    """Runs `conveyor serve --port 0` and waits for its banner (which holds the URL)."""
    proc = subprocess.Popen(conveyor_argv("serve", "--port", "0", "--data-dir", str(data_dir), "--vcpus", "2",
                                          "--memory", "4096", "--gpus", "0", "--kill-grace", "1", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the banner; blocks until the engine is up or the process died
    match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    if match is None:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"conveyor serve did not start: {line!r} {err[-2000:]!r}")
    return ServeProcess(proc, match.group(1), data_dir, line)


def stop_serve(serve: ServeProcess, hard: bool = False) -> None:
    if serve.proc.poll() is None:
        os.kill(serve.proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
        try:
            serve.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            serve.proc.kill()
            serve.proc.wait(timeout=10)
    for stream in (serve.proc.stdout, serve.proc.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Starts `conveyor serve` subprocesses; stops whichever are still running at the end."""
    procs: list[ServeProcess] = []

    def start(data_dir: Path | None = None, *extra: str) -> ServeProcess:
        serve_ = start_serve(data_dir or tmp_path / "serve-data", *extra)
        procs.append(serve_)
        return serve_

    yield start
    for serve_ in procs:
        stop_serve(serve_)


def run_cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(conveyor_argv(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=env, check=False)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_group_quietly(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_file(path: Path, deadline: float = 30) -> str:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")
