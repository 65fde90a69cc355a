"""Shared helpers for the benchmarks: a served engine in a subprocess, a boto3 client, result files."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import boto3

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served_engine(pid_out: list[int] | None = None, *extra: str, vcpus: int = 2) -> Iterator[tuple[str, str]]:
    """Starts `conveyor serve` in its own process on a fresh data dir; yields (url, data_dir).

    The server's pid is appended to `pid_out` when given (for memory readings).
    """
    data_dir = tempfile.mkdtemp(prefix="conveyor-bench-")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "serve", "--port", str(port),
                             "--data-dir", data_dir, "--vcpus", str(vcpus), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    if pid_out is not None:
        pid_out.append(proc.pid)
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=1).read()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("engine did not start") from None
            time.sleep(0.05)
    try:
        yield url, data_dir
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def batch_client(url: str) -> Any:
    return boto3.client("batch", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench")


def wait_for_end(url: str, job_id: str, timeout: float = 600) -> str:
    """Long-polls the engine's event feed until the job is terminal; returns its final status."""
    after, deadline = 0, time.time() + timeout
    while time.time() < deadline:
        query = f"/events?jobId={job_id}&after={after}&wait=10"
        data = json.loads(urllib.request.urlopen(url + query, timeout=40).read())
        for event in data["events"]:
            if event["detail"]["status"] in ("SUCCEEDED", "FAILED"):
                return str(event["detail"]["status"])
        after = data["next"]
    raise TimeoutError(job_id)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_result(name: str, figures: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS / (name + '.json')}")


def median(values: list[float]) -> float:
    return statistics.median(values)
