"""Field checks of requests: every error names the field and what was expected."""

from __future__ import annotations

import pytest

from chalicelib.localbatch.api import shapes
from chalicelib.localbatch.api import validation as v
from chalicelib.localbatch.errors import ClientException


def error_of(func, *args, **kwargs) -> str:
    with pytest.raises(ClientException) as info:
        func(*args, **kwargs)
    return info.value.message


@pytest.mark.parametrize("name", ["a", "A1", "job_name-1", "x" * 128, "9lives"])
def test_job_name_regex_accepts(name):
    assert v.as_str(name, "jobName", pattern=v.NAME_RE) == name


@pytest.mark.parametrize("name", ["", "_lead", "-lead", "has space", "dot.ted", "x" * 129, "ünï"])
def test_job_name_regex_rejects(name):
    assert error_of(v.as_str, name, "jobName", pattern=v.NAME_RE).startswith("jobName: expected")


def test_type_errors_name_the_field():
    assert "count: expected an integer" in error_of(v.as_int, "3", "count")
    assert "flag: expected true or false" in error_of(v.as_bool, 1, "flag")
    assert "items: expected a list" in error_of(v.as_list, {}, "items")
    assert "obj: expected an object" in error_of(v.as_dict, [], "obj")
    assert "count: expected an integer" in error_of(v.as_int, True, "count")  # bool is not an int here
    assert "between 1 and 10" in error_of(v.as_int, 11, "n", minimum=1, maximum=10)


def test_tags_limits():
    assert v.tags({f"k{i}": "v" for i in range(50)})
    assert "at most 50" in error_of(v.tags, {f"k{i}": "v" for i in range(51)})
    assert "keys of 1 to 128" in error_of(v.tags, {"k" * 129: "v"})
    assert "at most 256" in error_of(v.tags, {"k": "v" * 257})
    assert "tags.k: expected a string" in error_of(v.tags, {"k": 1})


def test_retry_strategy_limits():
    assert shapes.retry_strategy({"attempts": 10}) == {"attempts": 10, "evaluateOnExit": []}
    assert "retryStrategy.attempts" in error_of(shapes.retry_strategy, {"attempts": 0})
    assert "retryStrategy.attempts" in error_of(shapes.retry_strategy, {"attempts": 11})
    assert "RetryAttempts must be provided" in error_of(
        shapes.retry_strategy, {"evaluateOnExit": [{"action": "RETRY", "onExitCode": "1"}]})
    six = [{"action": "RETRY", "onExitCode": str(i)} for i in range(6)]
    assert "retryStrategy.evaluateOnExit: at most 5" in error_of(
        shapes.retry_strategy, {"attempts": 2, "evaluateOnExit": six})
    assert "evaluateOnExit[0].action" in error_of(
        shapes.retry_strategy, {"attempts": 2, "evaluateOnExit": [{"action": "MAYBE"}]})
    assert "evaluateOnExit[0].onExitCode" in error_of(
        shapes.retry_strategy, {"attempts": 2, "evaluateOnExit": [{"action": "EXIT", "onExitCode": "1a"}]})
    assert "evaluateOnExit[0].onReason" in error_of(
        shapes.retry_strategy, {"attempts": 2, "evaluateOnExit": [{"action": "EXIT", "onReason": "x" * 513}]})
    assert "evaluateOnExit[0].onStatusReason" in error_of(
        shapes.retry_strategy, {"attempts": 2, "evaluateOnExit": [{"action": "EXIT", "onStatusReason": "a(b)"}]})
    lower = shapes.retry_strategy({"attempts": 2, "evaluateOnExit": [{"action": "retry", "onReason": "Out*"}]})
    assert lower["evaluateOnExit"][0]["action"] == "RETRY"


def test_timeout_minimum_is_60_seconds():
    assert shapes.timeout({"attemptDurationSeconds": 60}) == 60
    assert "timeout.attemptDurationSeconds: expected an integer at least 60" in error_of(
        shapes.timeout, {"attemptDurationSeconds": 59})


def test_environment_rejects_reserved_prefix():
    assert shapes.environment([{"name": "A", "value": "1"}], "env") == [{"name": "A", "value": "1"}]
    message = error_of(shapes.environment, [{"name": "AWS_BATCH_JOB_ID", "value": "x"}], "env")
    assert message.startswith("env[0].name") and "AWS_BATCH" in message


def test_command_elements():
    assert "cmd[1]: command elements may not be empty" in error_of(shapes.command, ["a", ""], "cmd")
    assert "cmd[0]: expected a string" in error_of(shapes.command, [1], "cmd")


def test_resources():
    res = shapes.to_resources({"VCPU": "2", "MEMORY": "512", "GPU": "1"}, "rr")
    assert (res.vcpus, res.memory_mib, res.gpus) == (2.0, 512, 1)
    assert "rr.MEMORY: expected at least 4 MiB" in error_of(shapes.to_resources, {"VCPU": "1", "MEMORY": "3"}, "rr")
    assert "rr.VCPU" in error_of(shapes.to_resources, {"VCPU": "x", "MEMORY": "64"}, "rr")
    assert "VCPU requirement is required" in error_of(shapes.to_resources, {"MEMORY": "64"}, "rr")
    assert "c.vcpus: vCPUs are set both" in error_of(
        shapes.merge_requirements, {"vcpus": 1, "resourceRequirements": [{"type": "VCPU", "value": "1"}]}, "c")
    assert "rr[0].type" in error_of(shapes.resource_requirements, [{"type": "DISK", "value": "1"}], "rr")


def test_ref_substitution_only_known_names():
    params = {"input": "a.txt", "inputfile": "b.txt"}
    assert shapes.substitute_refs(["cat", "Ref::inputfile", "Ref::input", "Ref::missing"], params) == \
        ["cat", "b.txt", "a.txt", "Ref::missing"]
    assert shapes.substitute_refs(["--in=Ref::inputfile"], params) == ["--in=b.txt"]
    assert shapes.substitute_refs(["Ref::x"], {}) == ["Ref::x"]
