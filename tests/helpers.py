"""Test helpers shared across suites: waiting on job statuses and conditions with deadlines."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

TERMINAL = ("SUCCEEDED", "FAILED")


def wait_until(predicate: Callable[[], T], deadline: float = 30.0, what: str = "condition",
               interval: float = 0.02) -> T:
    """Polls `predicate` until it returns something truthy; fails the test after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:g}s waiting for {what}")
        time.sleep(interval)


def describe(client: Any, job_id: str) -> dict[str, Any]:
    jobs = client.describe_jobs(jobs=[job_id])["jobs"]
    assert jobs, f"job {job_id} is not described"
    return jobs[0]


def wait_for_status(client: Any, job_id: str, statuses: str | Iterable[str] = TERMINAL,
                    deadline: float = 30.0) -> dict[str, Any]:
    """Waits until DescribeJobs shows the job in one of `statuses`; returns its JobDetail."""
    wanted = {statuses} if isinstance(statuses, str) else set(statuses)
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        nonlocal last
        last = describe(client, job_id)
        return last if last["status"] in wanted else None

    try:
        return wait_until(reached, deadline, f"job {job_id} to reach {sorted(wanted)}")
    except AssertionError as err:
        raise AssertionError(f"{err}; last seen {explain(client, last)}") from None


def explain(client: Any, job: dict[str, Any]) -> str:
    """A job's status, reasons and exit codes (and its first children's, for an array) for failure messages."""
    def one(detail: dict[str, Any]) -> str:
        container = detail.get("container") or {}
        attempts = [(a.get("statusReason"), (a.get("container") or {}).get("exitCode"),
                     (a.get("container") or {}).get("reason")) for a in detail.get("attempts") or []]
        return (f"{detail.get('jobId')} {detail.get('status')} ({detail.get('statusReason')}; "
                f"exitCode={container.get('exitCode')}, reason={container.get('reason')}, attempts={attempts})")
    text = one(job)
    size = (job.get("arrayProperties") or {}).get("size")
    if size:
        ids = [f"{job['jobId']}:{i}" for i in range(min(size, 10))]
        text += "; children: " + "; ".join(one(c) for c in client.describe_jobs(jobs=ids)["jobs"])
    return text


def http_request(url: str, data: bytes = b"", method: str = "POST", headers: dict[str, str] | None = None,
                 *, sign: bool = True, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request to the engine, SigV4-signed (placeholder keys) unless `sign` is False,
    as the engine's request rule wants of every non-GET (localbatch/access.py).
    Returns (status, headers, body) for error answers too."""
    import urllib.error
    import urllib.request

    from chalicelib.localbatch.access import signed_headers

    base = {"Content-Type": "application/json"}
    if sign and method != "GET":
        base = signed_headers(method, url, data)
    request = urllib.request.Request(url, data=data if method != "GET" or data else None, method=method,
                                     headers={**base, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()
