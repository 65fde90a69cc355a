"""The release Lambda (version guard, ECR version tag, digests) and the CloudWatch log reader, under moto."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

import app as chalice_app
from chalicelib.aws.logs import JobLogError, read_log_lines
from chalicelib.aws.release import ReleaseError, handle_release_event

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"digest": "sha256:" + "1" * 64, "size": 1, "mediaType": "x"}, "layers": []})


@pytest.fixture()
def ecr() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("ecr", region_name="us-east-1")
        client.create_repository(repositoryName="cdk-assets")
        client.put_image(repositoryName="cdk-assets", imageManifest=MANIFEST, imageTag="abc123")
        yield client


def _event(request: str, version: str, old: str | None = None, force: str = "false") -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": request, "StackId": "arn:aws:cloudformation:us-east-1:1:stack/s/1",
        "ResourceProperties": {"Pipeline": "p", "Version": version, "Force": force,
                               "Images": [{"Name": "Image0", "Repository": "cdk-assets", "Tag": "abc123"}]},
    }
    if old:
        event["OldResourceProperties"] = {**event["ResourceProperties"], "Version": old}
        event["PhysicalResourceId"] = "conveyor-release-p"
    return event


def test_release_pins_the_digest_and_tags_the_version(ecr) -> None:
    physical_id, data = handle_release_event(_event("Create", "0.2.0"), ecr=ecr, stack_status=lambda _: "")
    digest = ecr.describe_images(repositoryName="cdk-assets", imageIds=[{"imageTag": "abc123"}])["imageDetails"][0][
        "imageDigest"]
    assert physical_id == "conveyor-release-p" and data["Image0Digest"] == digest and data["Version"] == "0.2.0"
    # v<version>-<asset tag>: unique per image in the shared, immutable bootstrap repository.
    tagged = ecr.describe_images(repositoryName="cdk-assets", imageIds=[{"imageTag": "v0.2.0-abc123"}])[
        "imageDetails"]
    assert tagged[0]["imageDigest"] == digest
    # Re-tagging the same image on a re-deploy is fine.
    handle_release_event(_event("Update", "0.2.0", old="0.2.0"), ecr=ecr, stack_status=lambda _: "")


def test_downgrade_refused_unless_forced_or_rolling_back(ecr) -> None:
    with pytest.raises(ReleaseError, match="refusing"):
        handle_release_event(_event("Update", "0.1.0", old="0.2.0"), ecr=ecr,
                             stack_status=lambda _: "UPDATE_IN_PROGRESS")
    handle_release_event(_event("Update", "0.1.0", old="0.2.0", force="true"), ecr=ecr, stack_status=lambda _: "")
    handle_release_event(_event("Update", "0.1.0", old="0.2.0"), ecr=ecr,
                         stack_status=lambda _: "UPDATE_ROLLBACK_IN_PROGRESS")


class _Recorder(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        _Recorder.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_release_lambda_answers_cloudformation_on_refusal(ecr) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        stack_id = cloudformation.create_stack(StackName="conveyor-p", TemplateBody=json.dumps(
            {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}))["StackId"]
        event = {**_event("Update", "0.1.0", old="0.2.0"), "RequestId": "r", "LogicalResourceId": "ReleaseGuard",
                 "ResponseURL": f"http://127.0.0.1:{server.server_port}/response", "StackId": stack_id}
        with Client(chalice_app.app) as client:
            client.lambda_.invoke("release", event)
    finally:
        server.shutdown()
    answer = _Recorder.bodies[-1]
    assert answer["Status"] == "FAILED" and "refusing to deploy version 0.1.0" in answer["Reason"]
    assert answer["LogicalResourceId"] == "ReleaseGuard"


def test_job_log_lines_are_read_from_cloudwatch() -> None:
    with mock_aws():
        logs = boto3.client("logs", region_name="us-east-1")
        now = int(time.time() * 1000)
        logs.create_log_group(logGroupName="/aws/batch/job")
        logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName="conveyor/default/abc")
        logs.put_log_events(logGroupName="/aws/batch/job", logStreamName="conveyor/default/abc",
                            logEvents=[{"timestamp": now + i, "message": f"line {i}"} for i in range(5)])
        assert list(read_log_lines(logs, "conveyor/default/abc")) == [f"line {i}" for i in range(5)]
        assert list(read_log_lines(logs, "conveyor/default/abc", limit=2)) == ["line 0", "line 1"]
        with pytest.raises(JobLogError, match="not found"):
            list(read_log_lines(logs, "missing"))
