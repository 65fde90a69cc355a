"""retryStrategy evaluation: which ended attempts go back to RUNNABLE (first matching rule wins)."""

from __future__ import annotations

from typing import Any


def matches(pattern: str, value: str | None) -> bool:
    """AWS glob: exact match, or a prefix match when the pattern ends with `*`."""
    if value is None:
        return False
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def rule_matches(rule: dict[str, Any], status_reason: str | None, reason: str | None,
                 exit_code: int | None) -> bool:
    """Every condition present in a rule must match; an exit-code pattern never matches a missing code."""
    # A missing reason reads as empty text, so `onReason: "*"` matches every ending: AWS's
    # documented fail-fast rule [RETRY "Host EC2*", EXIT onReason "*"] depends on that.
    # A missing exit code is different: an onExitCode pattern never matches it.
    checks = (
        ("onStatusReason", status_reason or ""),
        ("onReason", reason or ""),
        ("onExitCode", None if exit_code is None else str(exit_code)),
    )
    present = [(key, value) for key, value in checks if rule.get(key) is not None]
    return all(matches(str(rule[key]), value) for key, value in present)


def attempts_allowed(strategy: dict[str, Any] | None) -> int:
    """The most attempts a job gets: retryStrategy.attempts, 1 without a strategy."""
    return int((strategy or {}).get("attempts") or 1)


def should_retry(strategy: dict[str, Any] | None, attempts_made: int, *, status_reason: str | None,
                 reason: str | None, exit_code: int | None) -> bool:
    """Decides whether a failed attempt is retried.

    Timeouts, cancellations and terminations are never passed here: the scheduler
    (`Scheduler._settle`) ends those jobs without consulting the strategy, as AWS does.
    """
    if not strategy:
        return False
    if attempts_made >= attempts_allowed(strategy):
        return False
    for rule in strategy.get("evaluateOnExit") or []:
        if rule_matches(rule, status_reason, reason, exit_code):
            return str(rule.get("action", "")).upper() == "RETRY"
    # No rule matched: AWS retries while attempts remain.
    return True
