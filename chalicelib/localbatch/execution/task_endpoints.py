"""The ECS task metadata endpoint (v4 and v3) and the container credentials endpoint, on loopback.

Each attempt gets an unguessable path (a random secret), so one job cannot read another's
metadata or credentials; the path stops answering when the attempt ends. Shapes follow the
ECS documentation ("Amazon ECS task metadata endpoint version 4" and "task IAM role"):

    GET {ECS_CONTAINER_METADATA_URI_V4}            the container: DockerId, Name, Image, Limits, ...
    GET {ECS_CONTAINER_METADATA_URI_V4}/task       the task: Cluster, TaskARN, LaunchType, Containers, Limits
    GET {ECS_CONTAINER_METADATA_URI_V4}/stats      {} (no Docker stats here)
    GET {AWS_CONTAINER_CREDENTIALS_FULL_URI}       AccessKeyId, SecretAccessKey, Token, Expiration, RoleArn

Credentials are the user's (``conveyor serve --job-credentials FILE``: a JSON object mapping
a ``jobRoleArn``, or ``"*"`` for any job with a role, to ``AccessKeyId``/``SecretAccessKey``/
optional ``Token``); a job without a matching entry gets no credentials variable.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from chalicelib.localbatch import arns

logger = logging.getLogger(__name__)
CLUSTER = "conveyor-local"
CONTAINER_NAME = "default"  # the name AWS Batch gives a job's container


@dataclass(frozen=True)
class _Task:
    attempt_key: str
    request: Any
    facts: Any
    started: float
    credentials: Mapping[str, str] | None
    role_arn: str | None


def load_credentials(path: str) -> dict[str, dict[str, str]]:
    """Reads ``--job-credentials``: {role ARN or "*": {AccessKeyId, SecretAccessKey[, Token]}}.

    Raises:
        ValueError: the file is not such an object (the message names the entry).
    """
    with open(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object mapping role ARNs (or \"*\") to credentials")
    out: dict[str, dict[str, str]] = {}
    for role, entry in data.items():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) and entry.get(k)
                                                  for k in ("AccessKeyId", "SecretAccessKey")):
            raise ValueError(f"{path}: entry {role!r}: expected AccessKeyId and SecretAccessKey strings")
        if "Token" in entry and not isinstance(entry["Token"], str):
            raise ValueError(f"{path}: entry {role!r}: Token must be a string")
        out[role] = {k: entry[k] for k in ("AccessKeyId", "SecretAccessKey", "Token") if k in entry}
    return out


class TaskEndpoints:
    """A loopback HTTP listener answering each live attempt's metadata and credentials."""

    def __init__(self, credentials: Mapping[str, Mapping[str, str]] | None = None,
                 region: str = arns.REGION, host: str = "127.0.0.1") -> None:
        self._credentials = dict(credentials or {})
        self._region = region
        self._tasks: dict[str, _Task] = {}
        self._by_key: dict[str, str] = {}
        self._lock = threading.Lock()
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = endpoints.answer(self.path)
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},  # a quick close()
                                        name="conveyor-task-endpoints",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the attempt table ---------------------------------------------------------------------

    def register(self, request: Any, facts: Any) -> dict[str, str]:
        """Makes the attempt's URLs answer; returns the variables that point the job at them."""
        secret = secrets.token_urlsafe(18)
        role = getattr(facts, "job_role_arn", None)
        creds = (self._credentials.get(role) or self._credentials.get("*")) if role else None
        task = _Task(request.attempt_key, request, facts, time.time(), creds, role)
        with self._lock:
            old = self._by_key.pop(request.attempt_key, None)
            if old is not None:
                self._tasks.pop(old, None)
            self._tasks[secret] = task
            self._by_key[request.attempt_key] = secret
        env = {"ECS_CONTAINER_METADATA_URI_V4": f"{self.url}/v4/{secret}",
               "ECS_CONTAINER_METADATA_URI": f"{self.url}/v3/{secret}"}
        if creds is not None:
            env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = f"{self.url}/credentials/{secret}"
        return env

    def forget(self, attempt_key: str) -> None:
        with self._lock:
            secret = self._by_key.pop(attempt_key, None)
            if secret is not None:
                self._tasks.pop(secret, None)

    # -- answers -----------------------------------------------------------------------------

    def answer(self, path: str) -> tuple[int, Any]:
        parts = [part for part in path.split("?", 1)[0].split("/") if part]
        if len(parts) < 2 or parts[0] not in ("v4", "v3", "credentials"):
            return 404, {"message": "not found"}
        with self._lock:
            task = self._tasks.get(parts[1])
        if task is None:
            return 404, {"message": "no running task answers at this address"}
        rest = parts[2:]
        if parts[0] == "credentials":
            if rest or task.credentials is None:
                return 404, {"message": "no credentials for this task"}
            return 200, self._credentials_body(task)
        if rest in ([], ["task"]):
            return 200, self._container(task) if not rest else self._task(task)
        if rest in (["stats"], ["task", "stats"]):
            return 200, {}
        return 404, {"message": "not found"}

    def _credentials_body(self, task: _Task) -> dict[str, str]:
        creds = task.credentials or {}
        expires = datetime.now(timezone.utc) + timedelta(hours=6)
        return {"AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": creds["SecretAccessKey"],
                "Token": creds.get("Token", ""), "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "RoleArn": task.role_arn or ""}

    def _task_arn(self, task: _Task) -> str:
        task_id = task.attempt_key.replace("#", "-").replace(":", "-")
        return f"arn:aws:ecs:{self._region}:{arns.ACCOUNT}:task/{CLUSTER}/{task_id}"

    def _limits(self, task: _Task) -> dict[str, Any]:
        return {"CPU": float(task.request.vcpus), "Memory": int(task.request.memory_mib)}

    def _container(self, task: _Task) -> dict[str, Any]:
        request, facts = task.request, task.facts
        started = datetime.fromtimestamp(task.started, timezone.utc).isoformat()
        return {
            "DockerId": task.attempt_key, "Name": CONTAINER_NAME, "DockerName": f"ecs-{CONTAINER_NAME}",
            "Image": request.image or "", "ImageID": "", "Labels": {
                "com.amazonaws.ecs.cluster": CLUSTER, "com.amazonaws.ecs.task-arn": self._task_arn(task),
                "com.amazonaws.ecs.container-name": CONTAINER_NAME},
            "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING", "Limits": self._limits(task),
            "CreatedAt": started, "StartedAt": started, "Type": "NORMAL",
            "ContainerARN": f"arn:aws:ecs:{self._region}:{arns.ACCOUNT}:container/{CLUSTER}/{task.attempt_key}",
            "LogDriver": "awslogs",
            "LogOptions": {"awslogs-group": "/aws/batch/job", "awslogs-region": self._region,
                           "awslogs-stream": getattr(facts, "log_stream", "") or ""},
            "Networks": [{"NetworkMode": "host", "IPv4Addresses": ["127.0.0.1"]}],
        }

    def _task(self, task: _Task) -> dict[str, Any]:
        facts = task.facts
        fargate = bool(getattr(facts, "fargate", False))
        return {
            "Cluster": CLUSTER, "TaskARN": self._task_arn(task), "Family": getattr(facts, "job_name", "") or "",
            "Revision": "1", "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING",
            "Limits": self._limits(task), "PullStartedAt": None, "PullStoppedAt": None,
            "AvailabilityZone": f"{self._region}a", "LaunchType": "FARGATE" if fargate else "EC2",
            "Containers": [self._container(task)],
        }
