"""Durability trials: `kill -9` of `conveyor serve` at random moments while jobs are submitted and run.

Each trial starts the engine on the same data dir, submits jobs from a client thread (plain
jobs, small arrays, jobs that depend on earlier ones) and kills the engine after a random
delay, mid-submission and mid-execution. A final engine then runs everything to its end.
Checked: no job whose SubmitJob was answered is lost; every one ends; no two attempts of one
job ever ran at once (each attempt holds an flock on its job's lock file while it runs, and a
second attempt that finds it held records an overlap; a surviving orphan would hold it too);
a dependent never started before what it depends on ended. `CONVEYOR_KILL_TRIALS` sets the
number of trials (`make soak` runs more).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.helpers import wait_until
from tests.integration.localbatch.conftest import boto_batch, register, start_serve, stop_serve

pytestmark = pytest.mark.slow
TRIALS = int(os.environ.get("CONVEYOR_KILL_TRIALS", "24"))
HOST_LOST = {"attempts": 10, "evaluateOnExit": [{"action": "RETRY", "onStatusReason": "Host EC2*"},
                                                {"action": "EXIT", "onReason": "*"}]}
# Holds the job's lock for the whole attempt (the sleep inherits fd 9), stamps start and end.
ATTEMPT = ('exec 9>"$M/$AWS_BATCH_JOB_ID.lock"; flock -n 9 || echo "$AWS_BATCH_JOB_ID" >> "$M/overlaps"; '
           'echo "start $AWS_BATCH_JOB_ID $(date +%s%N)" >> "$M/log"; sleep Ref::dur; '
           'echo "end $AWS_BATCH_JOB_ID $(date +%s%N)" >> "$M/log"')


class Submitter(threading.Thread):
    """Submits until the engine stops answering; keeps what was accepted (answered with an id)."""

    def __init__(self, url: str, rng: random.Random, accepted: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.batch = boto_batch(url)
        self.rng = rng
        self.accepted = accepted

    def run(self) -> None:
        while True:
            kwargs: dict[str, Any] = {"jobName": "t", "jobQueue": "default", "jobDefinition": "trial",
                                      "retryStrategy": HOST_LOST,
                                      "parameters": {"dur": self.rng.choice(["0.05", "0.2", "0.6"])}}
            roll = self.rng.random()
            if roll < 0.15:
                kwargs["arrayProperties"] = {"size": 3}
            elif roll < 0.35 and self.accepted:
                kwargs["dependsOn"] = [{"jobId": self.rng.choice(self.accepted[-20:])["jobId"]}]
            try:
                job_id = self.batch.submit_job(**kwargs).get("jobId")
            except (BotoCoreError, ClientError, OSError):
                return  # the engine was killed
            if job_id is None:
                return  # killed mid-answer: headers out, body cut off; no id reached the client
            self.accepted.append({"jobId": job_id, **kwargs})
            time.sleep(self.rng.uniform(0.0, 0.06))


def _marks(path: Path) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    starts: dict[str, list[int]] = defaultdict(list)
    ends: dict[str, list[int]] = defaultdict(list)
    for line in (path.read_text().splitlines() if path.exists() else []):
        parts = line.split()
        if len(parts) == 3:
            (starts if parts[0] == "start" else ends)[parts[1]].append(int(parts[2]))
    return starts, ends


def test_random_kill_9s_lose_nothing_and_never_overlap_attempts(tmp_path: Path) -> None:
    data, marks = tmp_path / "data", tmp_path / "marks"
    marks.mkdir()
    os.environ["M"] = str(marks)  # the engine passes it to its jobs (serve --pass-env M); nothing else leaks
    rng = random.Random(int(os.environ.get("CONVEYOR_KILL_SEED", "11")))
    accepted: list[dict[str, Any]] = []
    try:
        for trial in range(TRIALS + 1):
            serve = start_serve(data, "--vcpus", "4", "--pass-env", "M")
            batch = boto_batch(serve.url)
            if trial == 0:
                register(batch, "trial", ["sh", "-c", ATTEMPT], vcpus="0.25", memory="16")
            if trial == TRIALS:
                break  # the last engine runs everything to its end
            submitter = Submitter(serve.url, rng, accepted)
            submitter.start()
            time.sleep(rng.uniform(0.05, 1.2))  # mid-submission, mid-execution
            os.kill(serve.proc.pid, signal.SIGKILL)
            serve.proc.wait(timeout=10)
            submitter.join(timeout=30)
            stop_serve(serve)
        ids = [job["jobId"] for job in accepted]
        assert len(ids) > TRIALS, "too few jobs were submitted to try anything"

        def ended() -> list[dict[str, Any]] | None:
            found = [d for i in range(0, len(ids), 100) for d in batch.describe_jobs(jobs=ids[i:i + 100])["jobs"]]
            assert len(found) == len(ids), f"{len(ids) - len(found)} accepted job(s) lost"
            return found if all(d["status"] in ("SUCCEEDED", "FAILED") for d in found) else None
        details = wait_until(ended, deadline=240, what="every accepted job to end", interval=0.5)
    finally:
        stop_serve(serve)
        os.environ.pop("M", None)

    overlaps = (marks / "overlaps").read_text().split() if (marks / "overlaps").exists() else []
    assert not overlaps, f"two attempts of one job ran at once: {overlaps[:5]}"
    by_id = {d["jobId"]: d for d in details}
    starts, ends = _marks(marks / "log")
    for job in accepted:
        for dep in job.get("dependsOn", []):
            if by_id[job["jobId"]]["status"] == "SUCCEEDED" and by_id[dep["jobId"]]["status"] == "SUCCEEDED":
                later = min(starts[job["jobId"]])
                before = ends[dep["jobId"]] or [int(by_id[dep["jobId"]]["stoppedAt"]) * 1_000_000]
                assert later >= max(before), f"{job['jobId']} started before {dep['jobId']} ended"
    for detail in details:  # attempts of one job, as the engine recorded them, never overlap either
        spans = sorted((a["startedAt"], a["stoppedAt"]) for a in detail.get("attempts") or [])
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), (detail["jobId"], spans)
    plain = [d for d in details if "arrayProperties" not in d]
    assert sum(d["status"] == "SUCCEEDED" for d in plain) >= len(plain) // 2, "most jobs should succeed"
