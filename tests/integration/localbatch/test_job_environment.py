"""What a job sees: a Batch container's environment, the task metadata and credentials endpoints,
nothing of the host unless passed, and memory counted once per page."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.localbatch.engine import Engine
from chalicelib.localbatch.execution.container_env import SYSTEM_PATH, ContainerOptions
from chalicelib.localbatch.execution.executor import OOM_REASON
from chalicelib.localbatch.scheduling.capacity import HostCapacity
from tests.helpers import wait_for_status

ROLE = "arn:aws:iam::000000000000:role/job-role"
DUMP_ENV = "import json, os; print(json.dumps({**os.environ, 'cwd': os.getcwd()}))"


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    # Host variables a job must not see, and one the user passes on purpose.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "host-key")
    monkeypatch.setenv("CONVEYOR_ENDPOINT_URL", "http://host")
    monkeypatch.setenv("VIRTUAL_ENV", str(Path(sys.executable).parent.parent))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("PASSED_ON", "yes")
    options = ContainerOptions(region="eu-west-1", pass_env=("PASSED_ON",),
                               credentials={ROLE: {"AccessKeyId": "job-key", "SecretAccessKey": "job-secret",
                                                   "Token": "job-token"}})
    started = Engine(tmp_path / "engine", host=HostCapacity(vcpus=4, memory_mib=8192, gpus=0),
                     container=options).start()
    yield started
    started.stop()


def _run(engine: Engine, name: str, command: list[str], *, memory: int = 256, status: str = "SUCCEEDED",
         **container: Any) -> dict[str, Any]:
    batch = engine.client()
    properties = {"image": "public.ecr.aws/docker/library/python:3.11", "command": command,
                  "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": str(memory)}],
                  **container}
    arn = batch.register_job_definition(jobDefinitionName=name, type="container",
                                        containerProperties=properties)["jobDefinitionArn"]
    job = batch.submit_job(jobName=name, jobQueue="default", jobDefinition=arn)["jobId"]
    detail = wait_for_status(batch, job, status)
    detail["log"] = engine.read_log(job)
    return detail


def test_a_job_gets_a_batch_containers_variables_and_none_of_the_hosts(engine: Engine) -> None:
    detail = _run(engine, "env", ["python", "-c", DUMP_ENV])
    env = json.loads(detail["log"])
    assert env["AWS_BATCH_JOB_ID"] == detail["jobId"]
    assert (env["AWS_BATCH_JOB_ATTEMPT"], env["AWS_BATCH_JQ_NAME"], env["AWS_BATCH_CE_NAME"]) == ("1", "default", "local")
    assert env["AWS_EXECUTION_ENV"] == "AWS_ECS_EC2"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["ECS_CONTAINER_METADATA_URI_V4"].startswith("http://127.0.0.1:")
    assert env["LANG"] == "C.UTF-8"
    assert env["HOME"] == env["cwd"]  # the attempt's scratch folder: the host user's ~/.aws is not read
    assert env["PATH"].endswith(SYSTEM_PATH)
    assert str(Path(sys.executable).parent) not in env["PATH"].split(":")
    assert env["PASSED_ON"] == "yes"
    for leaked in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "CONVEYOR_ENDPOINT_URL", "VIRTUAL_ENV",
                   "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        assert leaked not in env, leaked


def test_an_array_child_gets_its_index(engine: Engine) -> None:
    batch = engine.client()
    arn = batch.register_job_definition(
        jobDefinitionName="arr", type="container",
        containerProperties={"image": "busybox", "command": ["sh", "-c", "echo index=$AWS_BATCH_JOB_ARRAY_INDEX"],
                             "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                                      {"type": "MEMORY", "value": "64"}]})["jobDefinitionArn"]
    parent = batch.submit_job(jobName="arr", jobQueue="default", jobDefinition=arn,
                              arrayProperties={"size": 2})["jobId"]
    wait_for_status(batch, parent, "SUCCEEDED")
    assert engine.read_log(f"{parent}:1").strip() == "index=1"


METADATA = """
import json, os, urllib.request
base = os.environ["ECS_CONTAINER_METADATA_URI_V4"]
print(json.dumps({path: json.load(urllib.request.urlopen(base + path)) for path in ("", "/task")}))
print(base)
"""


def test_the_task_metadata_endpoint_answers_in_the_documented_shape(engine: Engine) -> None:
    detail = _run(engine, "meta", ["python", "-c", METADATA], memory=512)
    body, url = detail["log"].splitlines()
    answers = json.loads(body)
    container, task = answers[""], answers["/task"]
    assert container["Name"] == "default"
    assert container["Limits"] == {"CPU": 1.0, "Memory": 512}
    assert container["Image"] == "public.ecr.aws/docker/library/python:3.11"
    assert container["LogOptions"]["awslogs-stream"] == detail["container"]["logStreamName"]
    assert task["TaskARN"].startswith("arn:aws:ecs:eu-west-1:000000000000:task/")
    assert task["LaunchType"] == "EC2"
    assert task["Limits"] == {"CPU": 1.0, "Memory": 512}
    assert task["Containers"] == [container]
    with pytest.raises(urllib.error.HTTPError) as ended:  # the attempt ended: its address no longer answers
        urllib.request.urlopen(url, timeout=10)
    assert ended.value.code == 404


CREDENTIALS = """
import boto3
credentials = boto3.Session().get_credentials()
print(credentials.method if credentials else None, credentials and credentials.access_key)
"""


def test_boto3_inside_a_job_finds_its_role_credentials_as_on_ecs(engine: Engine) -> None:
    detail = _run(engine, "creds", ["python", "-c", CREDENTIALS], memory=512, jobRoleArn=ROLE)
    assert detail["log"].split() == ["container-role", "job-key"]


def test_a_job_without_a_configured_role_gets_no_credentials(engine: Engine) -> None:
    detail = _run(engine, "nocreds", ["python", "-c", CREDENTIALS], memory=512,
                  environment=[{"name": "AWS_EC2_METADATA_DISABLED", "value": "true"}])
    assert detail["log"].split() == ["None", "None"]


# Seven processes share 120 MiB of written pages (one parent, six forked children): resident
# sizes summed say 840 MiB, the pages are 120 MiB.
SHARED = """
import os, time
block = bytearray(b"x") * (120 << 20)
children = [pid for pid in (os.fork() for _ in range(6)) if pid]
if len(children) < 6:
    time.sleep(3); os._exit(0)
for pid in children:
    os.waitpid(pid, 0)
print("seven processes done")
"""
HOG = "import time; blocks = [bytearray(b'x') * (100 << 20) for _ in range(4)]; time.sleep(30)"


def test_memory_is_counted_once_per_page(engine: Engine) -> None:
    detail = _run(engine, "shared", ["python", "-c", SHARED], memory=400)
    assert "seven processes done" in detail["log"]


def test_a_job_really_over_its_memory_is_killed_for_it(engine: Engine) -> None:
    detail = _run(engine, "hog", ["python", "-c", HOG], memory=200, status="FAILED")
    assert detail["container"]["reason"] == OOM_REASON
    assert detail["container"]["exitCode"] == 137


def _tiny_wheel(folder: Path) -> Path:
    """A one-module wheel made by hand (no network, no build backend)."""
    import zipfile

    wheel = folder / "conveyor_pip_probe-1.0-py3-none-any.whl"
    files = {"conveyor_pip_probe.py": "VALUE = 42\n",
             "conveyor_pip_probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: conveyor-pip-probe\nVersion: 1.0\n",
             "conveyor_pip_probe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{name},,\n" for name in files) + "conveyor_pip_probe-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in {**files, "conveyor_pip_probe-1.0.dist-info/RECORD": record}.items():
            archive.writestr(name, text)
    return wheel


def test_pip_install_in_a_job_never_touches_the_engines_installation(engine: Engine, tmp_path: Path) -> None:
    import site

    wheel = _tiny_wheel(tmp_path)
    script = (f"python -m pip install -q --no-index --disable-pip-version-check {wheel} && "
              "python -c 'import conveyor_pip_probe, sys; print(conveyor_pip_probe.__file__)'")
    detail = _run(engine, "pip", ["sh", "-c", script], memory=512)
    installed = Path(detail["log"].strip().splitlines()[-1])
    assert installed.is_relative_to(engine.data_dir / "runtime")  # the image's runtime folder
    for folder in site.getsitepackages():
        assert not (Path(folder) / "conveyor_pip_probe.py").exists()


@pytest.mark.parametrize("script, limit, killed", [(SHARED, 400, False), (HOG, 200, True)])
def test_without_cgroups_memory_is_proportional_set_sizes(tmp_path: Path, script: str, limit: int,
                                                          killed: bool) -> None:
    import queue

    from chalicelib.localbatch.execution.executor import ExitInfo, LaunchRequest, ProcessExecutor

    executor = ProcessExecutor("pss-test-token", use_cgroups=False)
    exits: queue.SimpleQueue[ExitInfo] = queue.SimpleQueue()
    executor.set_exit_callback(exits.put)
    try:
        assert "proportional set size" in executor.describe()
        executor.launch(LaunchRequest(attempt_key="pss#1", argv=("python", "-c", script), env={},
                                      workdir=str(tmp_path / "w"), log_path=str(tmp_path / "l.log"), memory_mib=limit))
        info = exits.get(timeout=60)
    finally:
        executor.close()
    assert (info.reason == OOM_REASON) is killed, (info, (tmp_path / "l.log").read_text())
