"""Every validation limit answers ClientException (HTTP 400) naming the field; bad HTTP never gives a 500."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.localbatch.access import signed_headers
from tests.helpers import http_request, wait_for_status
from tests.integration.localbatch.conftest import LiveEngine, register


@pytest.fixture(scope="module")
def live(shared_live: LiveEngine) -> LiveEngine:
    register(shared_live.batch, "jd", ["true"])
    return shared_live


@pytest.fixture(scope="module")
def raw_batch(live: LiveEngine) -> Any:
    """boto3 without client-side checks, so the engine's own validation answers."""
    return boto3.client("batch", endpoint_url=live.url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x",
                        config=Config(parameter_validation=False, retries={"max_attempts": 1}))


def submit_error(batch: Any, **overrides: Any) -> str:
    request = {"jobName": "ok", "jobQueue": "default", "jobDefinition": "jd", **overrides}
    request = {k: v for k, v in request.items() if v is not None}
    with pytest.raises(ClientError) as info:
        batch.submit_job(**request)
    assert info.value.response["Error"]["Code"] == "ClientException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return info.value.response["Error"]["Message"]


SUBMIT_CASES = [
    ({"jobName": "-starts-with-dash"}, "jobName"),
    ({"jobName": "x" * 129}, "jobName"),
    ({"jobName": "has space"}, "jobName"),
    ({"jobName": None}, "jobName"),
    ({"jobQueue": "nope"}, "jobQueue"),
    ({"jobDefinition": "nope"}, "jobDefinition"),
    ({"jobDefinition": "jd:99"}, "jobDefinition"),
    ({"arrayProperties": {"size": 1}}, "arrayProperties.size"),
    ({"arrayProperties": {"size": 10_001}}, "arrayProperties.size"),
    ({"dependsOn": [{"jobId": "x"}] * 21}, "more than 20 dependencies"),
    ({"dependsOn": [{"jobId": "missing"}]}, "dependsOn[0].jobId"),
    ({"dependsOn": [{"type": "SEQUENTIAL"}]}, "dependsOn[0].type"),
    ({"dependsOn": [{"jobId": "x", "type": "ALL"}]}, "dependsOn[0].type"),
    ({"parameters": {"p": "x" * 31_000}}, "Job size must be less than 30 KiB"),
    ({"retryStrategy": {"attempts": 0}}, "retryStrategy.attempts"),
    ({"retryStrategy": {"attempts": 11}}, "retryStrategy.attempts"),
    ({"retryStrategy": {"evaluateOnExit": [{"action": "RETRY"}]}}, "RetryAttempts must be provided"),
    ({"retryStrategy": {"attempts": 2, "evaluateOnExit": [{"action": "RETRY", "onExitCode": "1"}] * 6}},
     "retryStrategy.evaluateOnExit"),
    ({"retryStrategy": {"attempts": 2, "evaluateOnExit": [{"action": "RETRY", "onReason": "x" * 513}]}},
     "retryStrategy.evaluateOnExit[0].onReason"),
    ({"timeout": {"attemptDurationSeconds": 59}}, "timeout.attemptDurationSeconds"),
    ({"tags": {f"k{i}": "v" for i in range(51)}}, "tags"),
    ({"containerOverrides": {"environment": [{"name": "AWS_BATCH_X", "value": "1"}]}},
     "containerOverrides.environment[0].name"),
    ({"containerOverrides": {"command": ["echo", ""]}}, "containerOverrides.command[1]"),
    ({"containerOverrides": {"resourceRequirements": [{"type": "VCPU", "value": "-1"}]}}, "VCPU"),
    ({"containerOverrides": {"resourceRequirements": [{"type": "MEMORY", "value": "2"}]}}, "MEMORY"),
    ({"schedulingPriorityOverride": 10_000}, "schedulingPriorityOverride"),
    ({"shareIdentifier": "abc"}, "shareIdentifier"),
    ({"propagateTags": "yes"}, "propagateTags"),
    ({"arrayProperties": {"size": "5"}}, "arrayProperties.size"),
]


@pytest.mark.parametrize(("overrides", "expected"), SUBMIT_CASES,
                         ids=[f"{i}-{c[1][:30]}" for i, c in enumerate(SUBMIT_CASES)])
def test_submit_job_limits(raw_batch: Any, overrides: dict[str, Any], expected: str) -> None:
    assert expected in submit_error(raw_batch, **overrides)


def test_limits_at_the_boundaries_are_accepted(raw_batch: Any, live: LiveEngine) -> None:
    base = raw_batch.submit_job(jobName="b", jobQueue="default", jobDefinition="jd")["jobId"]
    accepted = raw_batch.submit_job(
        jobName="x" * 128, jobQueue="default", jobDefinition="jd", arrayProperties={"size": 2},
        dependsOn=[{"jobId": base}] * 20, retryStrategy={"attempts": 10, "evaluateOnExit": [
            {"action": "EXIT", "onExitCode": str(i)} for i in range(5)]},
        timeout={"attemptDurationSeconds": 60}, tags={f"k{i}": "v" for i in range(50)})
    wait_for_status(live.batch, accepted["jobId"], "SUCCEEDED")


def test_container_overrides_over_8192_fail_the_job(raw_batch: Any, live: LiveEngine) -> None:
    job = raw_batch.submit_job(jobName="big", jobQueue="default", jobDefinition="jd", containerOverrides={
        "environment": [{"name": f"V{i}", "value": "x" * 100} for i in range(90)]})["jobId"]
    detail = wait_for_status(live.batch, job, "FAILED")
    assert detail["statusReason"] == "Container Overrides length must be at most 8192"


@pytest.mark.parametrize(("call", "kwargs", "expected"), [
    ("describe_jobs", {"jobs": [f"id{i}" for i in range(101)]}, "Maximum number of jobs supported is 100"),
    ("cancel_job", {"jobId": "nope", "reason": "r"}, "jobId"),
    ("terminate_job", {"jobId": "nope", "reason": "x" * 1025}, "jobId"),
    ("register_job_definition", {"jobDefinitionName": "bad name", "type": "container",
                                 "containerProperties": {"image": "x"}}, "jobDefinitionName"),
    ("register_job_definition", {"jobDefinitionName": "n", "type": "container",
                                 "containerProperties": {"image": "x" * 256}}, "containerProperties.image"),
    ("register_job_definition", {"jobDefinitionName": "n", "type": "container",
                                 "containerProperties": {"image": "x", "environment": [
                                     {"name": "AWS_BATCH_JOB_ID", "value": "1"}]}},
     "containerProperties.environment[0].name"),
    ("register_job_definition", {"jobDefinitionName": "n", "type": "container",
                                 "containerProperties": {"image": "x"},
                                 "timeout": {"attemptDurationSeconds": 10}}, "timeout.attemptDurationSeconds"),
    ("register_job_definition", {"jobDefinitionName": "n", "type": "container",
                                 "containerProperties": {"image": "x", "environment": [
                                     {"name": f"V{i}", "value": "x" * 300} for i in range(90)]}}, "24 KiB"),
    ("register_job_definition", {"jobDefinitionName": "n", "type": "container",
                                 "containerProperties": {"image": "x"},
                                 "schedulingPriority": 10_000}, "schedulingPriority"),
    ("deregister_job_definition", {"jobDefinition": "jd"}, "jobDefinition"),
    ("create_job_queue", {"jobQueueName": "q", "priority": 1, "computeEnvironmentOrder": []},
     "computeEnvironmentOrder"),
    ("create_job_queue", {"jobQueueName": "q", "priority": 1,
                          "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "local"}],
                          "jobStateTimeLimitActions": [{"reason": "r", "state": "RUNNABLE", "maxTimeSeconds": 10,
                                                        "action": "CANCEL"}]},
     "jobStateTimeLimitActions[0].maxTimeSeconds"),
    ("create_compute_environment", {"computeEnvironmentName": "c", "type": "MANAGED",
                                    "computeResources": {"type": "GPU", "maxvCpus": 1}}, "computeResources.type"),
    ("create_compute_environment", {"computeEnvironmentName": "c", "type": "MANAGED",
                                    "computeResources": {"type": "EC2", "maxvCpus": 1, "minvCpus": 2}},
     "computeResources.minvCpus"),
    ("create_compute_environment", {"computeEnvironmentName": "c", "type": "MANAGED"}, "computeResources"),
    ("tag_resource", {"resourceArn": "not-an-arn", "tags": {"a": "b"}}, "resourceArn"),
])
def test_other_operation_limits(raw_batch: Any, call: str, kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(ClientError) as info:
        getattr(raw_batch, call)(**kwargs)
    assert info.value.response["Error"]["Code"] == "ClientException"
    assert expected in info.value.response["Error"]["Message"]


def test_reason_longer_than_1024_is_refused(raw_batch: Any, live: LiveEngine) -> None:
    job = raw_batch.submit_job(jobName="r", jobQueue="default", jobDefinition="jd")["jobId"]
    for call in (raw_batch.cancel_job, raw_batch.terminate_job):
        with pytest.raises(ClientError) as info:
            call(jobId=job, reason="x" * 1025)
        assert "reason" in info.value.response["Error"]["Message"]
    raw_batch.cancel_job(jobId=job, reason="x" * 1024)


# -- raw HTTP ------------------------------------------------------------------------------------

def post(url: str, data: bytes, method: str = "POST", headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    return http_request(url, data, method, headers)


BAD_REQUESTS = [
    ("/v1/submitjob", b"{not json"),
    ("/v1/submitjob", b"\xff\xfe\x00garbage"),
    ("/v1/submitjob", b"[1, 2, 3]"),
    ("/v1/submitjob", b'"a string"'),
    ("/v1/submitjob", b"null"),
    ("/v1/submitjob", json.dumps({"jobName": 5, "jobQueue": "default", "jobDefinition": "jd"}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": ["default"], "jobDefinition": "jd"}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": "default", "jobDefinition": {"x": 1}}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": "default", "jobDefinition": "jd",
                                  "containerOverrides": "cmd"}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": "default", "jobDefinition": "jd",
                                  "containerOverrides": {"command": "echo hi"}}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": "default", "jobDefinition": "jd",
                                  "containerOverrides": {"environment": [["A", "1"]]}}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": "default", "jobDefinition": "jd",
                                  "dependsOn": "abc"}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": "default", "jobDefinition": "jd",
                                  "dependsOn": [None]}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": "default", "jobDefinition": "jd",
                                  "parameters": {"p": 1}}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": "default", "jobDefinition": "jd",
                                  "retryStrategy": {"attempts": 2, "evaluateOnExit": "x"}}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": "default", "jobDefinition": "jd",
                                  "retryStrategy": {"attempts": 2.5}}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": "default", "jobDefinition": "jd",
                                  "timeout": 60}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": "default", "jobDefinition": "jd",
                                  "tags": ["a"]}).encode()),
    ("/v1/describejobs", json.dumps({"jobs": "abc"}).encode()),
    ("/v1/describejobs", json.dumps({"jobs": [1, 2]}).encode()),
    ("/v1/describejobs", b"{}"),
    ("/v1/listjobs", json.dumps({"jobQueue": "default", "maxResults": "10"}).encode()),
    ("/v1/listjobs", json.dumps({"jobQueue": "default", "jobStatus": "DONE"}).encode()),
    ("/v1/listjobs", json.dumps({"jobQueue": "default", "filters": {"name": "JOB_NAME"}}).encode()),
    ("/v1/listjobs", json.dumps({"jobQueue": "default", "filters": [{"name": "JOB_NAME", "values": "a"}]}).encode()),
    ("/v1/listjobs", json.dumps({"jobQueue": 7}).encode()),
    ("/v1/canceljob", json.dumps({"jobId": ["x"], "reason": "r"}).encode()),
    ("/v1/terminatejob", json.dumps({"jobId": "x", "reason": 5}).encode()),
    ("/v1/createjobqueue", json.dumps({"jobQueueName": "q", "priority": "high",
                                       "computeEnvironmentOrder": []}).encode()),
    ("/v1/createjobqueue", json.dumps({"jobQueueName": "q", "priority": 1,
                                       "computeEnvironmentOrder": [{"order": 1}]}).encode()),
    ("/v1/createjobqueue", json.dumps({"jobQueueName": "q", "priority": 1,
                                       "computeEnvironmentOrder": ["local"]}).encode()),
    ("/v1/createjobqueue", json.dumps({"jobQueueName": "q", "priority": 1, "tags": "x",
                                       "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "local"}]}
                                      ).encode()),
    ("/v1/updatejobqueue", json.dumps({"jobQueue": "default", "state": "PAUSED"}).encode()),
    ("/v1/createcomputeenvironment", json.dumps({"computeEnvironmentName": "c", "type": "MANAGED",
                                                 "computeResources": "big"}).encode()),
    ("/v1/createcomputeenvironment", json.dumps({"computeEnvironmentName": "c", "type": "MANAGED",
                                                 "computeResources": {"type": "EC2", "maxvCpus": "2"}}).encode()),
    ("/v1/updatecomputeenvironment", json.dumps({"computeEnvironment": "local",
                                                 "computeResources": {"maxvCpus": -1}}).encode()),
    ("/v1/updatecomputeenvironment", json.dumps({"computeEnvironment": "local", "serviceRole": 3}).encode()),
    ("/v1/registerjobdefinition", json.dumps({"jobDefinitionName": "n", "type": "container",
                                              "containerProperties": []}).encode()),
    ("/v1/registerjobdefinition", json.dumps({"jobDefinitionName": "n", "type": "container",
                                              "containerProperties": {"image": "x", "command": "ls"}}).encode()),
    ("/v1/registerjobdefinition", json.dumps({"jobDefinitionName": "n", "type": "container",
                                              "containerProperties": {"image": "x", "vcpus": "1"}}).encode()),
    ("/v1/registerjobdefinition", json.dumps({"jobDefinitionName": "n", "type": "container",
                                              "containerProperties": {"image": "x"},
                                              "platformCapabilities": "EC2"}).encode()),
    ("/v1/registerjobdefinition", json.dumps({"jobDefinitionName": "n", "type": "container",
                                              "containerProperties": {"image": "x"},
                                              "parameters": ["a"]}).encode()),
    ("/v1/describejobdefinitions", json.dumps({"jobDefinitions": "jd"}).encode()),
    ("/v1/describejobdefinitions", json.dumps({"maxResults": 0}).encode()),
    ("/v1/describejobqueues", json.dumps({"jobQueues": [1]}).encode()),
    ("/v1/describecomputeenvironments", json.dumps({"computeEnvironments": [None]}).encode()),
    ("/v1/deregisterjobdefinition", json.dumps({"jobDefinition": 3}).encode()),
    ("/v1/submitjob", json.dumps({"jobName": "a", "jobQueue": "default", "jobDefinition": "jd",
                                  "bogusField": 1}).encode()),
    ("/v1/listjobs", json.dumps({"jobQueue": "default", "nextToken": "b2Zmc2V0Oi0x"}).encode()),  # offset:-1
    ("/v1/createcomputeenvironment", json.dumps({"computeEnvironmentName": "c", "type": "MANAGED", "serviceRole": 5,
                                                 "computeResources": {"type": "EC2", "maxvCpus": 2}}).encode()),
    ("/v1/createjobqueue", json.dumps({"jobQueueName": "q", "priority": 1, "schedulingPolicyArn": 5,
                                       "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "local"}]}
                                      ).encode()),
    ("/v1/nosuchoperation", b"{}"),
    ("/v2/submitjob", b"{}"),
    ("/v1/tags/arn:aws:batch:us-east-1:000000000000:job-queue/default", b'{"tags": "x"}'),
    ("/v1/tags/arn:aws:batch:us-east-1:000000000000:job-queue/default", b'{"tags": {"k": 1}}'),
]


@pytest.mark.parametrize(("path", "body"), BAD_REQUESTS, ids=[f"{i}-{p}" for i, (p, _) in enumerate(BAD_REQUESTS)])
def test_bad_http_requests_are_client_errors(raw_batch: Any, live: LiveEngine, path: str, body: bytes) -> None:
    status, headers, payload = post(live.url + path, body)
    assert status == 400, payload
    assert headers.get("x-amzn-ErrorType") == "ClientException"
    message = json.loads(payload)["message"]
    assert message and "Traceback" not in message
    # The engine keeps serving.
    assert live.batch.describe_job_queues()["jobQueues"][0]["jobQueueName"] == "default"


@pytest.mark.parametrize("query", ["after=nan", "wait=nan", "limit=inf", "after=1e400", "wait=soon"])
def test_bad_event_queries_are_client_errors(live: LiveEngine, query: str) -> None:
    status, headers, payload = post(f"{live.url}/events?{query}", None, method="GET")
    assert status == 400 and headers.get("x-amzn-ErrorType") == "ClientException"
    assert query.split("=")[0] in json.loads(payload)["message"]


def test_wrong_methods_and_paths(live: LiveEngine) -> None:
    for method, path in (("GET", "/v1/submitjob"), ("DELETE", "/v1/describejobs"), ("GET", "/nowhere"),
                         ("PUT", "/v1/tags/arn:aws:batch:us-east-1:000000000000:job-queue/default"),
                         ("PATCH", "/v1/submitjob"),
                         ("GET", "/logs/no-such-job"), ("GET", "/events?after=abc")):
        status, _, _ = post(live.url + path, b"" if method != "PUT" else b"{}", method=method)
        assert status == 400, (method, path, status)
    assert live.batch.describe_job_queues()["jobQueues"]


def test_head_request_gets_headers_only(live: LiveEngine) -> None:
    import http.client
    host, port = live.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("HEAD", "/v1/describejobqueues",
                           headers=signed_headers("HEAD", live.url + "/v1/describejobqueues"))
        head = connection.getresponse()
        assert head.status == 400 and head.read() == b""
        connection.request("POST", "/v1/describejobqueues", body=b"{}",
                           headers=signed_headers("POST", live.url + "/v1/describejobqueues", b"{}"))  # same connection still in sync
        follow = connection.getresponse()
        assert follow.status == 200 and json.loads(follow.read())["jobQueues"]
    finally:
        connection.close()


def test_malformed_content_length_is_a_client_error(live: LiveEngine) -> None:
    import socket
    host, port = live.url.removeprefix("http://").split(":")
    for header in (b"Content-Length: abc", b"Content-Length: -5", b"Content-Length: 99999999"):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            auth = signed_headers("POST", live.url + "/v1/describejobqueues", b"{}")["Authorization"]
            sock.sendall(b"POST /v1/describejobqueues HTTP/1.1\r\nHost: " + f"{host}:{port}".encode()
                         + b"\r\nAuthorization: " + auth.encode() + b"\r\n" + header + b"\r\n\r\n{}")
            reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        assert b"x-amzn-ErrorType: ClientException" in reply
    assert live.batch.describe_job_queues()["jobQueues"]


def test_propagating_more_than_50_tags_fails_the_job(raw_batch: Any, live: LiveEngine) -> None:
    register(live.batch, "tagged30", ["true"], tags={f"d{i}": "v" for i in range(30)})
    job = raw_batch.submit_job(jobName="tags", jobQueue="default", jobDefinition="tagged30", propagateTags=True,
                               tags={f"j{i}": "v" for i in range(25)})["jobId"]
    detail = wait_for_status(live.batch, job, "FAILED")
    assert detail["attempts"] == [] and "50" in detail["statusReason"]
    fine = raw_batch.submit_job(jobName="tags", jobQueue="default", jobDefinition="tagged30", propagateTags=True,
                                tags={f"d{i}": "override" for i in range(25)})["jobId"]  # same keys: 30 in all
    wait_for_status(live.batch, fine, "SUCCEEDED")


def _raw_exchange(live: LiveEngine, request: bytes) -> bytes:
    """Sends raw bytes; a `Host: x` line becomes the engine's Host and a signature (the request rule)."""
    import socket
    host, port = live.url.removeprefix("http://").split(":")
    auth = signed_headers("POST", live.url + "/v1/describejobqueues")["Authorization"]
    request = request.replace(b"Host: x\r\n", f"Host: {host}:{port}\r\nAuthorization: {auth}\r\n".encode())
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_a_chunked_request_body_is_read(live: LiveEngine) -> None:
    body = json.dumps({"jobQueues": ["default"]}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:])) + b"0\r\n\r\n"
    reply = _raw_exchange(live, b"POST /v1/describejobqueues HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["jobQueues"][0]["jobQueueName"] == "default"


def test_malformed_chunks_and_request_lines_get_json_client_errors(live: LiveEngine) -> None:
    for request in (
        b"POST /v1/describejobqueues HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"POST /v1/describejobqueues HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
        b"NONSENSE\r\n\r\n",
    ):
        reply = _raw_exchange(live, request)
        head, _, payload = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") or head.startswith(b"HTTP/1.0 400"), reply[:200]
        assert b"x-amzn-ErrorType: ClientException" in head
        assert json.loads(payload)["__type"] == "ClientException"
    assert live.batch.describe_job_queues()["jobQueues"]  # still serving
