"""The Lambda bundle as Lambda sees it: the zip the synth produced, imported and invoked in a fresh interpreter.

The interpreter's path holds only the unpacked bundle and the libraries the Lambda Python
runtime provides (boto3, botocore and their dependencies): a dependency missing from
requirements.txt fails here as it would fail every function on AWS. Each handler named in
the template is then invoked from the bundle with the event samples AWS documents, against
moto's server (the bundle's boto3 reaches it through AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.aws.composition import AwsRuntime
from chalicelib.aws.publisher import EventBridgePublisher
from chalicelib.aws.runstore import DynamoRunStore
from chalicelib.handlers import state_machine_tasks
from chalicelib.settings import Settings
from tests.integration.handlers.aws_fixtures import create_run_table
from tests.integration.handlers.fake_batch import FakeBatch
from tests.integration.infra.conftest import PIPELINE_STACK, SPEC

DRIVER = Path(__file__).with_name("bundle_driver.py")
EVENTS = Path(__file__).parents[2] / "fixtures" / "events"
# What the Lambda Python runtime provides besides the standard library.
LAMBDA_RUNTIME_LIBS = ("boto3", "botocore", "jmespath", "s3transfer", "dateutil", "six", "urllib3")
REGION, BUCKET, BUS, REPOSITORY = "us-east-1", "conveyor-infra-test-data", "conveyor-bus", "cdk-assets"
QUEUES = {"spot": "spot", "on-demand": "on-demand", "gpu": "gpu"}
DEFINITIONS = {s: f"conveyor-infra-test-{s}" for s in ("qc", "align", "joint")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def bundle(synth, tmp_path_factory: pytest.TempPathFactory) -> Path:
    zips = [p for p in synth.outdir.glob("asset.*.zip") if "app.py" in zipfile.ZipFile(p).namelist()]
    assert len(zips) == 1, zips
    target = tmp_path_factory.mktemp("bundle")
    zipfile.ZipFile(zips[0]).extractall(target)
    return target


@pytest.fixture(scope="module")
def runtime_libs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("lambda-runtime")
    for name in LAMBDA_RUNTIME_LIBS:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (target / source.name).symlink_to(source)
    return target


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


class _Responses(BaseHTTPRequestHandler):
    """The pre-signed S3 URL CloudFormation waits on: records each custom-resource response."""

    received: list[dict[str, Any]] = []

    def do_PUT(self) -> None:  # http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def response_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Responses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/cloudformation-response"
    finally:
        server.shutdown()


def _clients(endpoint: str) -> dict[str, Any]:
    return {name: boto3.client(name, region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
                               aws_secret_access_key="testing")
            for name in ("s3", "dynamodb", "events", "stepfunctions", "ecr", "iam")}


def _stack(endpoint: str) -> dict[str, Any]:
    """What the pipeline stack creates, on moto; plus two runs recorded by this process's own code."""
    c = _clients(endpoint)
    c["s3"].create_bucket(Bucket=BUCKET)
    c["s3"].put_object(Bucket=BUCKET, Key="deploy/pipeline.yaml", Body=SPEC.read_bytes())
    table = create_run_table(c["dynamodb"])
    c["events"].create_event_bus(Name=BUS)
    role = c["iam"].create_role(RoleName="conveyor-machine", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    machine = c["stepfunctions"].create_state_machine(
        name="conveyor-infra-test", roleArn=role,
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
    )["stateMachineArn"]
    c["ecr"].create_repository(repositoryName=REPOSITORY)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"digest": "sha256:" + "1" * 64, "size": 1, "mediaType": "x"}, "layers": []})
    c["ecr"].put_image(repositoryName=REPOSITORY, imageManifest=manifest, imageTag="a" * 64)
    settings = Settings(pipeline="infra-test", table=table, event_bus=BUS, bucket=BUCKET,
                        spec_uri=f"s3://{BUCKET}/deploy/pipeline.yaml", state_machine_arn=machine,
                        job_queues=QUEUES, job_definitions=DEFINITIONS)
    rt = AwsRuntime(settings=settings, store=DynamoRunStore(table, client=c["dynamodb"]), batch=FakeBatch(),
                    sfn=c["stepfunctions"], publisher=EventBridgePublisher(BUS, client=c["events"]), s3=c["s3"])
    from tests.integration.handlers.sfn_harness import put_manifest

    for run_id in ("run-tracked", "run-stop"):
        items = put_manifest(rt, run_id, 2)
        state_machine_tasks.plan(rt, {"input": {"runId": run_id, "items": items}, "execution": run_id})
    state_machine_tasks.submit(rt, {"runId": "run-tracked"})
    parent = next(j for j in rt.store.list_jobs("run-tracked") if j.stage == "qc" and j.is_array)
    return {"table": table, "machine": machine, "parent": parent, "rt": rt, "clients": c,
            "manifest": put_manifest(rt, "bundle-plan", 2)}


def _event(name: str, **replace: str) -> dict[str, Any]:
    text = (EVENTS / f"{name}.json").read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return json.loads(text)


def _plan(synth, stack: dict[str, Any], response_url: str) -> dict[str, Any]:
    functions = {logical: r["Properties"]["Handler"] for logical, r in synth.templates[PIPELINE_STACK]["Resources"].items()
                 if r["Type"] == "AWS::Serverless::Function"}
    parent = stack["parent"]
    release = {"RESPONSE_URL": response_url, "VERSION": "0.1.0", "REPOSITORY": REPOSITORY, "TAG": "a" * 64}
    invocations = [
        ("trigger", "Trigger", _event("s3_object_created")),
        ("plan", "Tasks", {"action": "plan", "pipeline": "infra-test", "execution": "run-from-bundle",
                           "input": {"items": stack["manifest"]}}),
        ("tracker parent", "Tracker", _event("batch_array_parent_succeeded", JOB_ID=parent.job_id,
                                             JOB_NAME=parent.job_name)),
        ("tracker child", "Tracker", _event("batch_array_child_succeeded", JOB_ID=parent.job_id,
                                            JOB_NAME=parent.job_name)),
        ("execution ended", "ExecutionEnded", _event("sfn_execution_aborted")),
        *((f"release {kind}", "Release", _event(f"cfn_release_{kind}", **release))
          for kind in ("create", "update", "delete")),
    ]
    return {"handlers": sorted(functions.values()),
            "invocations": [{"name": n, "handler": functions[f], "event": e} for n, f, e in invocations]}


def _lambda_environment(endpoint: str, stack: dict[str, Any]) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        # As the Lambda runtime sets them, tracing active (the X-Ray SDK must be importable).
        "AWS_LAMBDA_FUNCTION_NAME": "Conveyor-infra-test-bundle", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "CONVEYOR_PIPELINE": "infra-test", "CONVEYOR_TABLE": stack["table"], "CONVEYOR_EVENT_BUS": BUS,
        "CONVEYOR_BUCKET": BUCKET, "CONVEYOR_STATE_MACHINE_ARN": stack["machine"],
        "CONVEYOR_SPEC_URI": f"s3://{BUCKET}/deploy/pipeline.yaml", "CONVEYOR_INBOX_PREFIX": "inbox/",
        "CONVEYOR_RUNS_PREFIX": "runs/", "CONVEYOR_JOB_QUEUES": json.dumps(QUEUES),
        "CONVEYOR_JOB_DEFINITIONS": json.dumps(DEFINITIONS),
    }


@pytest.fixture(scope="module")
def report(synth, bundle, runtime_libs, moto_endpoint, response_url, tmp_path_factory) -> dict[str, Any]:
    stack = _stack(moto_endpoint)
    plan_path = tmp_path_factory.mktemp("plan") / "plan.json"
    plan_path.write_text(json.dumps(_plan(synth, stack, response_url)))
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(DRIVER), str(bundle), str(runtime_libs), str(plan_path)],
        env=_lambda_environment(moto_endpoint, stack), cwd=str(bundle),
        capture_output=True, text=True, timeout=300, check=False,
    )
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("BUNDLE-REPORT ")), None)
    assert line, result.stdout[-3000:] + result.stderr[-3000:]
    return {**json.loads(line[len("BUNDLE-REPORT "):]), "stack": stack}


def test_every_handler_module_imports_from_the_bundle_and_the_lambda_runtime_alone(report):
    assert report["imports"] and all(v == "ok" for v in report["imports"].values()), report["imports"]
    assert report["outside"] == []


def test_every_handler_runs_from_the_bundle_on_the_documented_events(report):
    errors = {c["name"]: c["error"] for c in report["calls"] if "error" in c}
    assert errors == {}, "\n\n".join(f"{k}: {v}" for k, v in errors.items())
    results = {c["name"]: c["result"] for c in report["calls"]}
    stack = report["stack"]
    assert len(results["trigger"]["runs"]) == 1
    executions = stack["clients"]["stepfunctions"].list_executions(stateMachineArn=stack["machine"])["executions"]
    assert [e["name"] for e in executions] == results["trigger"]["runs"]
    assert results["plan"]["runId"] == "run-from-bundle"
    store = stack["rt"].store
    assert store.get_run("run-from-bundle") is not None
    assert store.find_job(stack["parent"].job_id).status == "SUCCEEDED"
    assert results["execution ended"]["runId"] == "run-stop"
    assert store.get_run("run-stop").status.value == "FAILED"


def test_the_release_custom_resource_answers_cloudformation_for_create_update_and_delete(report):
    responses = [r for r in _Responses.received if r["LogicalResourceId"] == "ReleaseGuard"]
    assert [r["Status"] for r in responses] == ["SUCCESS"] * 3, responses
    create, update, delete = responses
    assert create["Data"]["Image0Digest"].startswith("sha256:") and create["Data"]["Version"] == "0.1.0"
    assert update["Data"] == create["Data"] and delete["Data"] == {}
    assert {r["PhysicalResourceId"] for r in responses} == {"conveyor-release-infra-test"}
