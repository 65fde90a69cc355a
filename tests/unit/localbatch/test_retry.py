"""retryStrategy evaluation: first match wins, trailing *, case-insensitive action, no match retries."""

from __future__ import annotations

import pytest

from chalicelib.localbatch.scheduling.retry import matches, rule_matches, should_retry


def decide(strategy, made=1, status_reason="Essential container in task exited", reason=None, exit_code=1):
    return should_retry(strategy, made, status_reason=status_reason, reason=reason, exit_code=exit_code)


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("Host EC2*", "Host EC2 (instance i-0abc) terminated.", True),
    ("Host EC2*", "host ec2 (instance i-0abc) terminated.", False),  # case-sensitive, as the reference says
    ("*", "anything", True),
    ("*", "", True),
    ("137", "137", True),
    ("13", "137", False),
    ("13*", "137", True),
    ("abc", None, False),
])
def test_glob_matching(pattern, value, expected):
    assert matches(pattern, value) is expected


def test_no_strategy_and_single_attempt_never_retry():
    assert decide(None) is False
    assert decide({"attempts": 1}) is False


def test_no_rule_matches_retries_while_attempts_remain():
    strategy = {"attempts": 3, "evaluateOnExit": [{"action": "EXIT", "onExitCode": "2"}]}
    assert decide(strategy, made=1, exit_code=1) is True
    assert decide(strategy, made=2, exit_code=1) is True
    assert decide(strategy, made=3, exit_code=1) is False


def test_first_matching_rule_decides():
    strategy = {"attempts": 5, "evaluateOnExit": [
        {"action": "RETRY", "onStatusReason": "Host EC2*"},
        {"action": "EXIT", "onReason": "*"},
    ]}
    assert decide(strategy, status_reason="Host EC2 (instance i-1) terminated.", reason=None, exit_code=None)
    # A container reason is present: the EXIT rule matches first for a normal failure.
    assert not decide(strategy, reason="OutOfMemoryError: Container killed due to memory usage")
    # Reversed order: a missing reason reads as empty text, so EXIT onReason "*" matches first.
    reversed_ = {"attempts": 5, "evaluateOnExit": list(reversed(strategy["evaluateOnExit"]))}
    assert not decide(reversed_, status_reason="Host EC2 (instance i-1) terminated.", reason=None, exit_code=None)
    both = {"attempts": 5, "evaluateOnExit": [{"action": "EXIT", "onStatusReason": "*"},
                                               {"action": "RETRY", "onStatusReason": "Host EC2*"}]}
    assert not decide(both, status_reason="Host EC2 (instance i-1) terminated.", exit_code=None)


@pytest.mark.parametrize("action", ["retry", "Retry", "RETRY", "rEtRy"])
def test_action_is_case_insensitive(action):
    strategy = {"attempts": 2, "evaluateOnExit": [{"action": action, "onExitCode": "3"},
                                                   {"action": "exit", "onExitCode": "*"}]}
    assert decide(strategy, exit_code=3) is True
    assert decide(strategy, exit_code=4) is False


def test_all_conditions_in_a_rule_must_match():
    rule = {"action": "RETRY", "onExitCode": "1", "onReason": "Cannot*"}
    assert rule_matches(rule, None, "CannotStartContainerError: x", 1)
    assert not rule_matches(rule, None, "CannotStartContainerError: x", 2)
    assert not rule_matches(rule, None, None, 1)


def test_exit_code_pattern_never_matches_a_missing_code():
    strategy = {"attempts": 3, "evaluateOnExit": [{"action": "EXIT", "onExitCode": "*"}]}
    # The host died: no exit code, so the EXIT rule does not match and the default (retry) applies.
    assert decide(strategy, status_reason="Host EC2 (instance i-1) terminated.", exit_code=None) is True
    assert decide(strategy, exit_code=0) is False


def test_exit_code_zero_is_a_code():
    assert rule_matches({"action": "EXIT", "onExitCode": "0"}, None, None, 0)
