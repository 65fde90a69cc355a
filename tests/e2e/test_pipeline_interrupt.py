"""Ctrl-C on `conveyor run --endpoint-url` terminates the run's outstanding jobs on a served engine and exits 130."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from tests.e2e.pipeline_harness import STAGE

SPEC = f"""name: slow
stages:
  - name: wait
{STAGE}    command: [python, -m, tool, copy, --key, "{{key}}", --slow-key, "{{key}}", --sleep, "60", --out, "{{out}}", "{{item}}"]
    foreach: item
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_OPERATIONS = {"listjobs": "list_jobs", "describejobs": "describe_jobs"}


def _post(url: str, operation: str, body: dict) -> dict:  # type: ignore[type-arg]
    """One Batch API call through boto3 (signed, as the engine's request rule wants)."""
    batch = boto3.client("batch", endpoint_url=url, region_name="us-east-1",
                         aws_access_key_id="local", aws_secret_access_key="local")
    return getattr(batch, _OPERATIONS[operation])(**body)  # type: ignore[no-any-return]


@pytest.fixture()
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chalicelib.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path / "engine"),
         "--vcpus", "2", "--kill-grace", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=1).read()
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "engine did not start"
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_ctrl_c_terminates_outstanding_jobs_and_exits_130(tmp_path: Path, served: str) -> None:
    items = tmp_path / "items"
    items.mkdir()
    for name in ("s0.txt", "s1.txt", "s2.txt"):
        (items / name).write_text(name)
    spec = tmp_path / "slow.yaml"
    spec.write_text(SPEC)
    data = tmp_path / "client"
    run = subprocess.Popen(
        [sys.executable, "-m", "chalicelib.cli", "run", str(spec), "--items", str(items), "--data-dir", str(data),
         "--endpoint-url", served, "--run-id", "slow1", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
    )
    deadline = time.monotonic() + 30
    while True:  # wait until a child is running
        running = _post(served, "listjobs", {"jobQueue": "default", "jobStatus": "RUNNING"})["jobSummaryList"]
        children = []
        for parent in _post(served, "listjobs", {"jobQueue": "default", "filters": [
                {"name": "JOB_NAME", "values": ["slow1-wait"]}]})["jobSummaryList"]:
            children = _post(served, "listjobs", {"arrayJobId": parent["jobId"], "jobStatus": "RUNNING"})[
                "jobSummaryList"]
        if running or children:
            break
        assert time.monotonic() < deadline and run.poll() is None, run.stdout.read() if run.stdout else ""
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    output, _ = run.communicate(timeout=30)
    assert run.returncode == 130, output
    assert "interrupted: run slow1 cancelled, 1 job(s) stopped" in output
    parent = _post(served, "listjobs", {"jobQueue": "default", "filters": [
        {"name": "JOB_NAME", "values": ["slow1-wait"]}]})["jobSummaryList"][0]
    deadline = time.monotonic() + 20
    while parent["status"] != "FAILED":
        assert time.monotonic() < deadline, parent
        time.sleep(0.2)
        parent = _post(served, "describejobs", {"jobs": [parent["jobId"]]})["jobs"][0]
    children = _post(served, "listjobs", {"arrayJobId": parent["jobId"], "jobStatus": "FAILED"})["jobSummaryList"]
    assert len(children) == 3
    assert {c["statusReason"] for c in children} == {"cancelled: interrupted by the user (Ctrl-C)"}


QUICK = f"""name: quick
stages:
  - name: a
{STAGE}    command: [python, -m, tool, copy, --key, "{{key}}", --out, "{{out}}", "{{item}}"]
    foreach: item
  - name: c
{STAGE}    command: [python, -m, tool, gather, --out, "{{out}}", "{{a}}"]
    after: [a]
"""


def test_run_over_endpoint_url_follows_the_engine_event_feed_to_success(tmp_path: Path, served: str) -> None:
    items = tmp_path / "items"
    items.mkdir()
    for name in ("s0.txt", "s1.txt"):
        (items / name).write_text(name)
    spec = tmp_path / "quick.yaml"
    spec.write_text(QUICK)
    data = tmp_path / "client"
    done = subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", "run", str(spec), "--items", str(items), "--data-dir", str(data),
         "--endpoint-url", served, "--run-id", "quick1", "--no-progress"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (data / "runs" / "quick1" / "c" / "all.txt").read_text().splitlines() == ["s0:s0.txt", "s1:s1.txt"]
