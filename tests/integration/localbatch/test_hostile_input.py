"""Issue 11's defects as regression tests, over real loopback HTTP: every client mistake is a 400
ClientException naming the field, the request rule refuses what a web page could send (403), and
after each the engine still schedules a normal job."""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
from typing import Any

import pytest

from chalicelib.localbatch.access import CONSOLE_TOKEN_HEADER
from tests.helpers import http_request, wait_for_status, wait_until
from tests.integration.localbatch.conftest import LiveEngine, register

JD = "hostile"


@pytest.fixture(scope="module")
def engine(shared_live: LiveEngine) -> LiveEngine:
    register(shared_live.batch, JD, ["true"])
    return shared_live


def call(live: LiveEngine, operation: str, body: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, reply = http_request(f"{live.url}/v1/{operation.lower()}", raw, **kwargs)
    return status, json.loads(reply)


def client_error(live: LiveEngine, operation: str, body: Any, field: str) -> None:
    status, reply = call(live, operation, body)
    assert status == 400 and reply["__type"] == "ClientException", (status, reply)
    assert reply["message"].startswith(field) or field in reply["message"], reply


def still_schedules(live: LiveEngine) -> None:
    job = live.submit("after", JD)
    wait_for_status(live.batch, job, "SUCCEEDED")


def submit_body(**extra: Any) -> dict[str, Any]:
    return {"jobName": "h", "jobQueue": "default", "jobDefinition": JD, **extra}


def test_1_a_timeout_beyond_any_clock_is_refused(engine: LiveEngine) -> None:
    raw = b'{"jobName":"h","jobQueue":"default","jobDefinition":"%s","timeout":{"attemptDurationSeconds":1%s}}' % (
        JD.encode(), b"0" * 309)
    client_error(engine, "SubmitJob", raw, "timeout.attemptDurationSeconds")
    client_error(engine, "SubmitJob", submit_body(timeout={"attemptDurationSeconds": 2**31}),
                 "timeout.attemptDurationSeconds")
    still_schedules(engine)


def test_2_a_huge_max_vcpus_is_refused(engine: LiveEngine) -> None:
    raw = (b'{"computeEnvironmentName":"huge","type":"MANAGED","computeResources":{"type":"EC2","maxvCpus":1'
           + b"0" * 400 + b"}}")
    client_error(engine, "CreateComputeEnvironment", raw, "computeResources.maxvCpus")
    client_error(engine, "CreateComputeEnvironment", {"computeEnvironmentName": "huge", "type": "MANAGED",
                                                      "computeResources": {"type": "EC2", "maxvCpus": 1e300}},
                 "computeResources.maxvCpus")
    still_schedules(engine)


@pytest.mark.parametrize("operation", ["CancelJob", "TerminateJob"])
def test_3_a_lone_surrogate_is_refused_naming_the_field(engine: LiveEngine, operation: str) -> None:
    job = engine.submit("s", JD)
    raw = json.dumps({"jobId": job, "reason": "bad \ud800"}).encode()  # json escapes it as \ud800
    assert b"\\ud800" in raw
    client_error(engine, operation, raw, "reason")
    client_error(engine, "SubmitJob", submit_body(parameters={"p": "x\udfff"}), "parameters.p")
    client_error(engine, "SubmitJob", json.dumps(submit_body(tags={"k\ud800": "v"})).encode(), "tags")
    assert engine.batch.describe_jobs(jobs=[job])["jobs"]
    still_schedules(engine)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400"])
def test_4_non_finite_resources_are_refused(engine: LiveEngine, value: str) -> None:
    client_error(engine, "SubmitJob", submit_body(containerOverrides={"resourceRequirements": [
        {"type": "VCPU", "value": value}]}), "resourceRequirements.VCPU")
    client_error(engine, "RegisterJobDefinition", {
        "jobDefinitionName": "nf", "type": "container", "containerProperties": {
            "image": "x", "command": ["true"], "resourceRequirements": [
                {"type": "VCPU", "value": value}, {"type": "MEMORY", "value": "64"}]}}, "VCPU")
    still_schedules(engine)


@pytest.mark.parametrize("raw", [b'{"jobName":NaN}', b'{"jobName":Infinity}', b'{"x":-Infinity}', b'{"x":1e999}'])
def test_4_non_finite_json_numbers_are_refused(engine: LiveEngine, raw: bytes) -> None:
    client_error(engine, "SubmitJob", raw, "request body")


def test_5_deep_nesting_is_a_client_error(engine: LiveEngine) -> None:
    for depth in (40, 500, 5000, 100_000):
        raw = b'{"jobName":' + b"[" * depth + b"]" * depth + b"}"
        client_error(engine, "SubmitJob", raw, "request body" if depth > 900 else "jobName")
        client_error(engine, "SubmitJob", b'{"tags":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}",
                     "request body" if depth > 900 else "tags")
    still_schedules(engine)


def test_5_unicode_digits_are_client_errors(engine: LiveEngine) -> None:
    job = engine.submit("d", JD)
    client_error(engine, "ListJobs", {"jobQueue": "default", "filters": [
        {"name": "BEFORE_CREATED_AT", "values": ["\u00b2"]}]}, "filters[0].values[0]")
    array = engine.submit("arr", JD, arrayProperties={"size": 2})
    client_error(engine, "SubmitJob", submit_body(dependsOn=[{"jobId": f"{array}:\u00b2"}]), "dependsOn[0].jobId")
    for query, field in ((f"/logs/{job}?attempt=%C2%B2", "attempt"), (f"/logs/{job}?attempt=x", "attempt"),
                         ("/events?after=1e19", "after"), ("/events?after=-1", "after"),
                         (f"/events?jobId={array}:%C2%B2", None)):
        status, _, reply = http_request(engine.url + query, method="GET")
        if field is None:  # an id no job has: simply no events
            assert status == 200 and json.loads(reply)["events"] == []
            continue
        assert status == 400 and json.loads(reply)["message"].startswith(field), (query, reply)
    still_schedules(engine)


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "BREW", "PROPFIND", "OPTIONS", "PUT"])
def test_5_other_methods_are_client_errors_not_501(engine: LiveEngine, method: str) -> None:
    status, headers, reply = http_request(engine.url + "/v1/submitjob", b"{}", method=method)
    assert status == 400 and json.loads(reply)["__type"] == "ClientException", (status, reply)
    assert headers["x-amzn-ErrorType"] == "ClientException"


# -- 6: the request rule ---------------------------------------------------------------------------

def _raw(live: LiveEngine, request: bytes) -> tuple[int, bytes]:
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_6_a_simple_cross_site_post_is_refused_and_runs_nothing(engine: LiveEngine) -> None:
    before = len(engine.engine.scheduler.jobs)
    body = json.dumps(submit_body()).encode()
    for headers in ({"Content-Type": "text/plain"},
                    {"Content-Type": "text/plain", "Origin": "http://evil.example"},
                    {"Authorization": "Bearer something"},
                    {"Authorization": "AWS4-HMAC-SHA256 Credential=x"}):
        status, reply = call(engine, "SubmitJob", body, headers=headers, sign=False)
        assert status == 403 and reply["__type"] == "AccessDeniedException", (headers, reply)
    assert len(engine.engine.scheduler.jobs) == before


def test_6_a_foreign_origin_is_refused_even_when_signed(engine: LiveEngine) -> None:
    for origin in ("http://evil.example", "null", "http://127.0.0.1:1"):
        status, reply = call(engine, "DescribeJobQueues", {}, headers={"Origin": origin})
        assert status == 403 and "Origin" in reply["message"], (origin, reply)
    status, _ = call(engine, "DescribeJobQueues", {}, headers={"Origin": engine.url})
    assert status == 200


@pytest.mark.parametrize("path", ["/health", "/events?after=0", "/logs/x", "/v1/describejobqueues"])
def test_6_a_foreign_host_is_refused_on_every_path(engine: LiveEngine, path: str) -> None:
    for host in (b"evil.example", b"evil.example:80", b"127.0.0.1", b"127.0.0.1:1", b"localhost.evil:"
                 + engine.url.rsplit(":", 1)[1].encode()):
        status, body = _raw(engine, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host
                            + b"\r\nConnection: close\r\n\r\n")
        assert status == 403 and json.loads(body)["__type"] == "AccessDeniedException", (host, body)
    status, _ = _raw(engine, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")  # no Host at all
    assert status == 403


def test_6_loopback_names_and_gets_need_only_the_host(engine: LiveEngine) -> None:
    port = engine.url.rsplit(":", 1)[1].encode()
    for host in (b"127.0.0.1", b"localhost", b"LOCALHOST", b"[::1]"):
        status, _ = _raw(engine, b"GET /health HTTP/1.1\r\nHost: " + host + b":" + port + b"\r\nConnection: close\r\n\r\n")
        assert status == 200, host
    with urllib.request.urlopen(engine.url + "/events?after=0&limit=1", timeout=10) as response:
        assert response.status == 200


def test_6_the_console_token_admits_a_post(engine: LiveEngine) -> None:
    token = engine.engine.console_token
    assert len(token) >= 32
    status, reply = call(engine, "DescribeJobQueues", {}, sign=False, headers={CONSOLE_TOKEN_HEADER: token})
    assert status == 200 and reply["jobQueues"]
    status, reply = call(engine, "DescribeJobQueues", {}, sign=False, headers={CONSOLE_TOKEN_HEADER: token[:-1]})
    assert status == 403


def test_6_boto3_passes_the_rule(engine: LiveEngine) -> None:
    assert engine.batch.describe_job_queues()["jobQueues"]
    still_schedules(engine)


# -- 8: bursts of connections, clients that hang up ------------------------------------------------

def test_8_a_burst_of_connections_is_queued_not_reset(engine: LiveEngine) -> None:
    """200 clients connect while the server accepts nothing yet: the kernel must queue them all
    (with the old backlog of 5 the rest wait for SYN retries or are reset), then each is answered."""
    from chalicelib.localbatch.rest import BatchHttpServer

    server = BatchHttpServer(engine.engine, "127.0.0.1", 0)  # listening, not yet accepting
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode()
    sockets: list[socket.socket] = []
    try:
        for _ in range(200):
            sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=2))
        server.start()
        for sock in sockets:
            sock.settimeout(30)
            sock.sendall(request)
        replies = [sock.recv(64) for sock in sockets]
        assert all(reply.startswith(b"HTTP/1.1 200") for reply in replies), [r for r in replies if r][:3]
    finally:
        for sock in sockets:
            sock.close()
        server.stop() if server.thread.is_alive() else server.httpd.server_close()


def test_8_clients_that_hang_up_leave_no_traceback(engine: LiveEngine, capfd: pytest.CaptureFixture[str],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    host, port = engine.url.removeprefix("http://").split(":")
    body = json.dumps({"jobQueue": "default", "jobStatus": "SUCCEEDED"}).encode()
    from chalicelib.localbatch.access import signed_headers
    headers = signed_headers("POST", engine.url + "/v1/listjobs", body)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"POST /v1/listjobs HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    with caplog.at_level(logging.INFO):
        for _ in range(60):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            sock.sendall(request)
            sock.close()
        wait_until(lambda: engine.batch.describe_job_queues()["jobQueues"], what="the engine to answer")
    out, err = capfd.readouterr()
    assert "Traceback" not in err + out
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_6_internal_callers_report_a_refusal(engine: LiveEngine) -> None:
    """The CLI's reader (`conveyor jobs/logs/events --endpoint-url`) says the engine refused it;
    it never takes a 403 for "no feed here" and falls back."""
    from chalicelib.local.engine_reader import EngineRefused, HttpReader
    from chalicelib.localbatch.rest import BatchHttpServer

    server = BatchHttpServer(engine.engine, "0.0.0.0", 0).start()  # reachable as 127.0.0.2: a foreign Host
    try:
        reader = HttpReader(f"http://127.0.0.2:{server.port}")
        for read in (lambda: reader.jobs(None, 10), lambda: reader.events(0, 0, None), lambda: reader.log("x", None)):
            with pytest.raises(EngineRefused, match="refused the request: Host"):
                read()
        assert HttpReader(f"http://127.0.0.1:{server.port}").jobs("SUCCEEDED", 5) is not None
    finally:
        server.stop()
