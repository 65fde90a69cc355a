"""One engine per data folder, and `conveyor cancel` from another terminal.

A `conveyor serve` owns its folder: a second `serve` there refuses with a message naming it,
and `conveyor run` / `jobs` without --endpoint-url use the served engine instead of starting
a second one (which used to kill the served engine's running jobs as orphans).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.cli import main
from chalicelib.localbatch.engine import Engine
from chalicelib.localbatch.scheduling.capacity import HostCapacity
from chalicelib.localbatch.storage.folder_lock import FolderInUseError
from tests.e2e.pipeline_harness import STAGE, make_items

QUICK = f"""name: quick
stages:
  - name: a
{STAGE}    command: [python, -m, tool, copy, --key, "{{key}}", --out, "{{out}}", "{{item}}"]
    foreach: item
"""
SLOW = f"""name: slow
stages:
  - name: wait
{STAGE}    command: [python, -m, tool, copy, --key, "{{key}}", --slow-key, "{{key}}", --sleep, "60", --out, "{{out}}", "{{item}}"]
    foreach: item
  - name: join
{STAGE}    command: [python, -m, tool, gather, --out, "{{out}}", "{{wait}}"]
    after: [wait]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _batch(url: str) -> Any:
    return boto3.client("batch", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


@pytest.fixture()
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chalicelib.cli", "serve", "--port", str(port), "--data-dir", str(data),
         "--vcpus", "4", "--kill-grace", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
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
    yield data, url
    proc.terminate()
    proc.wait(timeout=30)


def test_a_second_engine_on_a_folder_is_refused_naming_the_first(tmp_path: Path) -> None:
    host = HostCapacity(vcpus=2, memory_mib=1024, gpus=0)
    first = Engine(tmp_path / "data", host=host).start()
    try:
        with pytest.raises(FolderInUseError, match=rf"in use by the engine of process {os.getpid()}"):
            Engine(tmp_path / "data", host=host)
    finally:
        first.stop()
    Engine(tmp_path / "data", host=host).start().stop()  # released on stop


def test_serve_twice_refuses_and_run_uses_the_served_engine_without_killing_its_job(
    tmp_path: Path, served: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    data, url = served
    batch = _batch(url)
    batch.register_job_definition(jobDefinitionName="sleeper", type="container", containerProperties={
        "image": "local", "command": ["sleep", "30"],
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}]})
    sleeper = batch.submit_job(jobName="sleeper", jobQueue="default", jobDefinition="sleeper")["jobId"]
    deadline = time.monotonic() + 20
    while batch.describe_jobs(jobs=[sleeper])["jobs"][0]["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)

    second = subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", "serve", "--port", "0", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 2
    assert f"the data folder {data} is in use by the engine of process" in second.stderr
    assert f"`conveyor serve` on {url}" in second.stderr

    spec = tmp_path / "quick.yaml"
    spec.write_text(QUICK)
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt"])
    code = main(["run", str(spec), "--items", str(items), "--data-dir", str(data), "--run-id", "q1",
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert f"using the engine `conveyor serve` runs for {data} at {url}" in captured.err
    assert batch.describe_jobs(jobs=[sleeper])["jobs"][0]["status"] == "RUNNING"

    assert main(["jobs", "--data-dir", str(data), "--status", "running"]) == 0
    assert sleeper in capsys.readouterr().out


def test_cancel_from_another_terminal_stops_a_running_conveyor_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spec = tmp_path / "slow.yaml"
    spec.write_text(SLOW)
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt", "s2.txt"])
    run = subprocess.Popen(
        [sys.executable, "-m", "chalicelib.cli", "run", str(spec), "--items", str(items), "--data-dir", str(data),
         "--run-id", "slow1", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (data / "runs.sqlite3").exists():
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.1)
        while True:  # the run's array is recorded and running
            out = subprocess.run([sys.executable, "-m", "chalicelib.cli", "run-status", "slow1", "--data-dir",
                                  str(data), "--json"], capture_output=True, text=True, timeout=60).stdout
            if '"RUNNING"' in out:
                break
            assert time.monotonic() < deadline and run.poll() is None, out
            time.sleep(0.2)
        second = subprocess.run(
            [sys.executable, "-m", "chalicelib.cli", "run", str(spec), "--items", str(items), "--data-dir",
             str(data), "--no-progress"], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"the data folder {data} is in use by the engine of process {run.pid} (`conveyor run`)" in \
            second.stderr
        assert "conveyor serve --data-dir" in second.stderr  # how to share one engine instead
        cancel = subprocess.run(
            [sys.executable, "-m", "chalicelib.cli", "cancel", "slow1", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=90,
        )
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        assert "run slow1 is FAILED; stopped" in cancel.stdout
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, output
    # As the run-level cause, or on each stopped item when the tracker recorded the jobs' ends first.
    assert "cancelled: by the user (conveyor cancel)" in output
    status = subprocess.run([sys.executable, "-m", "chalicelib.cli", "jobs", "--data-dir", str(data)],
                            capture_output=True, text=True, timeout=60).stdout
    assert "RUNNING" not in status and "RUNNABLE" not in status and "PENDING" not in status, status
    assert main(["cancel", "nope", "--data-dir", str(data)]) == 1
