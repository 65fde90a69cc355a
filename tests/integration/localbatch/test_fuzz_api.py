"""Fuzzing the engine's HTTP API from botocore's Batch service model (issue 11).

Every operation the model names (the engine serves 19; the rest must be refused cleanly), every
member of its input: after each case the answer is JSON, no 5xx, no traceback in the log and the
watchdog has nothing to report; after each operation's run a normal job still runs to SUCCEEDED.
Fuzz cases are signed so they reach validation; the refusals have their own cases below.
`CONVEYOR_FUZZ_EXAMPLES` sets the examples per operation (`make soak` runs many more).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import http_request, wait_for_status
from tests.integration.localbatch import fuzz_model as fm
from tests.integration.localbatch.conftest import LiveEngine, register, start_live, stop_live

pytestmark = pytest.mark.slow
FUZZ = settings(max_examples=fm.EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEngine]:
    live = start_live(Path(tmp_path_factory.mktemp("fuzz")))
    register(live.batch, "ok", ["true"])
    register(live.batch, "fuzzjd", ["true"])
    live.batch.create_compute_environment(computeEnvironmentName="fuzzce", type="MANAGED",
                                          computeResources={"type": "EC2", "maxvCpus": 1})
    live.batch.create_job_queue(jobQueueName="fuzzq", priority=1,
                                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "fuzzce"}])
    yield live
    stop_live(live)


@pytest.fixture
def quiet_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="chalicelib"):
        yield caplog


def check_answer(live: LiveEngine, case: fm.Case | None, status: int, headers: dict[str, str], body: bytes,
                 log: pytest.LogCaptureFixture) -> None:
    assert status < 500, (case, status, body[:300])
    if status >= 400:
        reply = json.loads(body)  # every error is JSON in the Batch shape
        assert reply["__type"] in ("ClientException", "AccessDeniedException"), reply
        assert headers.get("x-amzn-ErrorType") == reply["__type"]
        assert isinstance(reply["message"], str) and reply["message"]
    else:
        json.loads(body)
    problems = [r for r in log.records if r.levelno >= logging.ERROR]
    assert not problems, (case, [r.getMessage() for r in problems][:3])
    assert live.engine.failure is None, live.engine.failure


def still_schedules(live: LiveEngine) -> None:
    job = live.batch.submit_job(jobName="health", jobQueue="default", jobDefinition="ok")["jobId"]
    wait_for_status(live.batch, job, "SUCCEEDED")


@pytest.mark.parametrize("operation", fm.OPERATION_NAMES)
def test_every_operation_survives_hostile_input(target: LiveEngine, operation: str,
                                                quiet_log: pytest.LogCaptureFixture,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    @FUZZ
    @given(case=fm.requests_for(operation))
    def one(case: fm.Case) -> None:
        status, headers, body = http_request(target.url + case.path, case.body, case.method)
        check_answer(target, case, status, headers, body, quiet_log)

    one()
    still_schedules(target)
    assert "Traceback" not in capfd.readouterr().err


_TOKEN = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"),
                 min_size=1, max_size=12)


@FUZZ
@given(method=st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE",
                                         "CONNECT"]), _TOKEN.filter(str.isalpha).map(str.upper)),
       path=st.one_of(st.lists(_TOKEN, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
                      st.sampled_from(["/v1/", "/v1/tags/", "/logs/", "/events", "/health/x", "/v2/submitjob",
                                       "/v1/submitjob/extra", "/v1/SubmitJob", "/console"])),
       body=st.binary(max_size=64))
def test_unknown_routes_and_methods_are_client_errors(target: LiveEngine, quiet_log: pytest.LogCaptureFixture,
                                                      method: str, path: str, body: bytes) -> None:
    status, headers, reply = http_request(target.url + path, body, method)
    if method == "HEAD":  # headers only: the error type travels in x-amzn-ErrorType
        assert status < 500 and reply == b"" and headers.get("x-amzn-ErrorType") in (None, "ClientException")
        return
    check_answer(target, None, status, headers, reply, quiet_log)


@FUZZ
@given(operation=st.sampled_from(fm.OPERATION_NAMES), data=st.data(),
       headers=st.one_of(st.just({}), st.fixed_dictionaries({"Content-Type": st.sampled_from(
           ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])}),
           st.fixed_dictionaries({"Authorization": st.text(max_size=80).filter(lambda t: t.isascii())}),
           st.fixed_dictionaries({"X-Conveyor-Console-Token": st.text(
               alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", max_size=50)})))
def test_unsigned_requests_are_refused(target: LiveEngine, quiet_log: pytest.LogCaptureFixture, operation: str,
                                       data: st.DataObject, headers: dict[str, str]) -> None:
    case = data.draw(fm.requests_for(operation))
    jobs_before = len(target.engine.scheduler.jobs)
    status, answer_headers, reply = http_request(target.url + case.path, case.body, case.method, headers,
                                                 sign=False)
    if case.method == "GET":
        assert status != 403, reply  # reads need only the Host check
    else:
        assert status == 403 and json.loads(reply)["__type"] == "AccessDeniedException", (case, headers, reply)
        assert len(target.engine.scheduler.jobs) == jobs_before
    check_answer(target, case, status, answer_headers, reply, quiet_log)
