"""Small pure pieces of the AWS side: settings, job definition conversion, ASL tokens, wait timeouts."""

from __future__ import annotations

import pytest

from chalicelib.aws.composition import InputError, deployed_document, validate_input
from chalicelib.aws.logs import JobLogError, log_stream_of
from chalicelib.pipeline.run_end import DEFAULT_WAIT_S, QUEUE_SLACK_S, wait_timeout
from chalicelib.pipeline.spec import load_spec
from chalicelib.settings import Settings, SettingsError
from infra.constructs.job_definitions import to_cfn_properties
from infra.constructs.state_machine import asl_tokens
from tests.integration.infra.conftest import SPEC


def test_settings_read_json_maps_and_name_bad_ones() -> None:
    settings = Settings.from_env({"CONVEYOR_TABLE": "t", "CONVEYOR_JOB_QUEUES": '{"spot": "arn:q"}'})
    assert settings.table == "t" and settings.job_queues == {"spot": "arn:q"} and settings.event_bus == "default"
    with pytest.raises(SettingsError, match="CONVEYOR_JOB_DEFINITIONS"):
        Settings.from_env({"CONVEYOR_JOB_DEFINITIONS": "{not json"})
    with pytest.raises(SettingsError, match="table, bucket"):
        Settings().require("table", "bucket")


def test_job_definition_request_becomes_cloudformation_properties() -> None:
    request = {
        "jobDefinitionName": "d", "containerProperties": {"resourceRequirements": [{"type": "VCPU", "value": "1"}],
                                                          "environment": [{"name": "A", "value": "1"}]},
        "retryStrategy": {"attempts": 2, "evaluateOnExit": [{"action": "EXIT", "onReason": "*"}]},
        "parameters": {"conveyorHash": "h"}, "tags": {"conveyor:stage": "qc"},
    }
    props = to_cfn_properties(request)
    assert props["ContainerProperties"]["ResourceRequirements"] == [{"Type": "VCPU", "Value": "1"}]
    assert props["ContainerProperties"]["Environment"] == [{"Name": "A", "Value": "1"}]
    assert props["RetryStrategy"]["EvaluateOnExit"] == [{"Action": "EXIT", "OnReason": "*"}]
    # User maps keep their keys as written.
    assert props["Parameters"] == {"conveyorHash": "h"} and props["Tags"] == {"conveyor:stage": "qc"}


def test_asl_tokens_are_found() -> None:
    assert asl_tokens('{"a": "${FnArn}", "b": "${Other1}", "c": "$.x"}') == {"FnArn", "Other1"}


def test_wait_timeout_sums_the_upstream_chain_or_falls_back() -> None:
    spec = load_spec(SPEC)
    assert wait_timeout(spec, "qc") == DEFAULT_WAIT_S  # qc has no timeout
    assert wait_timeout(spec, "joint") == DEFAULT_WAIT_S  # upstream qc has none either


def test_wait_timeout_with_timeouts_everywhere() -> None:
    from dataclasses import replace

    spec = load_spec(SPEC)
    stages = tuple(replace(s, timeout=600) for s in spec.stages)
    timed = replace(spec, stages=stages)
    align = timed.stage("align")
    assert wait_timeout(timed, "align") == 600 * timed.stage("qc").retry.attempts + 600 * align.retry.attempts + 2 * QUEUE_SLACK_S


def test_deployed_document_names_job_definitions_instead_of_build_folders() -> None:
    doc = {"name": "p", "stages": [{"name": "a", "build": "tools"}, {"name": "b", "image": "x"}]}
    deployed = deployed_document(doc)
    assert deployed["stages"][0] == {"name": "a", "image": "job-definition:conveyor-p-a"}
    assert deployed["stages"][1] == {"name": "b", "image": "x"} and doc["stages"][0]["build"] == "tools"


def test_execution_input_is_validated_against_the_documented_schema() -> None:
    assert validate_input({"items": "s3://bucket/inbox/m.json", "runId": "r-1"})["runId"] == "r-1"
    with pytest.raises(InputError, match=r"\$\.runId"):
        validate_input({"runId": "has space"})
    with pytest.raises(InputError, match="Additional properties"):
        validate_input({"itmes": "s3://b/x"})


def test_log_stream_is_the_latest_attempts_or_a_clear_error() -> None:
    job = {"jobId": "j", "status": "FAILED", "attempts": [{"container": {"logStreamName": "s1"}},
                                                           {"container": {"logStreamName": "s2"}}]}
    assert log_stream_of(job) == "s2" and log_stream_of(job, attempt=0) == "s1"
    with pytest.raises(JobLogError, match="no log stream yet"):
        log_stream_of({"jobId": "j", "status": "RUNNABLE"})
