"""Read access to an engine for the CLI: over HTTP (`--endpoint-url`) or straight from its data dir."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol


class EngineReader(Protocol):
    is_direct: bool

    def jobs(self, status: str | None, limit: int) -> list[dict[str, Any]]: ...
    def log(self, job_id: str, attempt: int | None) -> str: ...
    def events(self, after: int, wait: float, job_id: str | None) -> tuple[list[dict[str, Any]], int]: ...


class EngineRefused(SystemExit):
    """The engine answered 403: the request broke its request rule (Host, Origin or signature).

    A SystemExit, so the CLI prints it and stops; never taken for "no such feed" and worked around.
    """


def _refusal(base: str, err: urllib.error.HTTPError) -> EngineRefused:
    try:
        message = json.loads(err.read() or b"{}").get("message", str(err))
    except ValueError:
        message = str(err)
    return EngineRefused(f"error: the engine at {base} refused the request: {message}")


def open_reader(endpoint_url: str | None, data_dir: str) -> EngineReader:
    """The given endpoint, else the engine that owns ``data_dir`` now, else its state read directly."""
    url = endpoint_url or engine_url(Path(data_dir))
    if url:
        return HttpReader(url)
    return DirectReader(Path(data_dir))


def served_endpoint(data_dir: Path) -> str | None:
    """The URL of the `conveyor serve` that owns ``data_dir``, if one does.

    Raises:
        FolderInUseError: an engine that is not served (another `conveyor run`) owns it.
    """
    from chalicelib.localbatch.storage import folder_lock

    holder = folder_lock.holder(data_dir)
    if holder is None:
        return None
    if holder.get("owner") == "serve" and holder.get("url"):
        return str(holder["url"])
    raise folder_lock.FolderInUseError(Path(data_dir), holder)


def engine_url(data_dir: Path) -> str | None:
    """The URL of whatever engine owns ``data_dir`` now (served or a running `conveyor run`), if any."""
    from chalicelib.localbatch.storage import folder_lock

    holder = folder_lock.holder(data_dir)
    return str(holder["url"]) if holder and holder.get("url") else None


def local_batch_client(endpoint_url: str) -> Any:
    """A boto3 Batch client for a local engine (`conveyor serve` or a running `conveyor run`).

    The local engine does not check SigV4 signatures, but botocore refuses to sign without
    credentials: placeholders are given when none are configured (this process only).
    """
    import os

    import boto3  # type: ignore[import-untyped]

    from chalicelib import aws_clients

    if boto3.Session().get_credentials() is None:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "conveyor-local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "conveyor-local")
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    return aws_clients.client("batch", endpoint_url=endpoint_url, region=region)


class HttpReader:
    """Talks to `conveyor serve`: the Batch API for jobs, /logs and /events for the rest."""

    is_direct = False

    def __init__(self, endpoint_url: str) -> None:
        self.base = endpoint_url.rstrip("/")

    def _get(self, path: str, timeout: float = 30.0) -> bytes:
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as response:
                return response.read()  # type: ignore[no-any-return]
        except urllib.error.HTTPError as err:
            if err.code == 403:
                raise _refusal(self.base, err) from None
            try:
                message = json.loads(err.read()).get("message", str(err))
            except ValueError:
                message = str(err)
            raise LookupError(message) from None
        except (urllib.error.URLError, OSError) as err:
            raise SystemExit(f"error: cannot reach the engine at {self.base}: "
                             f"{getattr(err, 'reason', err)}") from None

    def jobs(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        batch = local_batch_client(self.base)
        request: dict[str, Any] = {"jobQueue": "default", "maxResults": min(limit, 100)}
        if status:
            request["jobStatus"] = status
        else:
            request["filters"] = [{"name": "AFTER_CREATED_AT", "values": ["0"]}]
        try:
            return list(batch.list_jobs(**request)["jobSummaryList"])[:limit]
        except ClientError as err:
            message = err.response.get("Error", {}).get("Message", str(err))
            if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
                raise EngineRefused(f"error: the engine at {self.base} refused the request: {message}") from None
            raise SystemExit(f"error: {message}") from None
        except BotoCoreError as err:
            raise SystemExit(f"error: cannot reach the engine at {self.base}: {err}") from None

    def log(self, job_id: str, attempt: int | None) -> str:
        query = f"?attempt={attempt}" if attempt else ""
        return self._get(f"/logs/{urllib.parse.quote(job_id, safe='')}{query}").decode(errors="replace")

    def events(self, after: int, wait: float, job_id: str | None) -> tuple[list[dict[str, Any]], int]:
        query = {"after": after, "wait": wait}
        if job_id:
            query["jobId"] = job_id
        data = json.loads(self._get("/events?" + urllib.parse.urlencode(query), timeout=wait + 30))
        return data["events"], int(data["next"])

    def newest_event(self) -> int:
        """The sequence number of the engine's newest event: every event from now on is numbered above it."""
        def any_after(seq: int) -> bool:
            data = json.loads(self._get("/events?" + urllib.parse.urlencode({"after": seq, "wait": 0, "limit": 1})))
            return bool(data["events"])
        return newest_seq(any_after)


def newest_seq(any_after: Callable[[int], bool]) -> int:
    """The newest event's sequence number, probing ``any_after(seq)`` (are there events after it?).

    Doubling then halving: about 2 log2(n) one-event reads, where paging through an engine's whole
    history (hundreds of thousands of events after a few big runs) to find its end took a page per
    thousand. While events keep coming the answer is some sequence number the engine had reached
    during the probe: nothing numbered above it had happened before the probe began.
    """
    if not any_after(0):
        return 0
    low, high = 0, 1  # invariant: events after ``low`` were seen, none after ``high``
    while any_after(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if any_after(middle):
            low = middle
        else:
            high = middle
    return high


class DirectReader:
    """Reads the SQLite state of a data dir without starting an engine (safe beside a running one)."""

    is_direct = True

    def __init__(self, data_dir: Path) -> None:
        path = data_dir / "state.sqlite3"
        if not path.exists():
            raise SystemExit(f"error: no engine state in {data_dir} (give --data-dir or --endpoint-url)")
        self.data_dir = data_dir
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def jobs(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        sql = ("SELECT j.job_id, s.body, j.status, j.state FROM jobs j JOIN submissions s "
               "ON s.job_id = COALESCE(j.parent_id, j.job_id) WHERE j.parent_id IS NULL")
        params: list[Any] = []
        if status:
            sql += " AND j.status = ?"
            params.append(status)
        sql += " ORDER BY j.rowid DESC LIMIT ?"
        params.append(limit)
        out = []
        for job_id, sub, job_status, state in self.db.execute(sql, params):
            reason = json.loads(state).get("status_reason") or ""
            out.append({"jobId": job_id, "jobName": json.loads(sub)["name"], "status": job_status,
                        "statusReason": reason})
        return out

    def log(self, job_id: str, attempt: int | None) -> str:
        row = self.db.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise LookupError(f"job {job_id!r} does not exist")
        size = self._array_size(job_id)
        if size:
            raise LookupError(f"{job_id} is an array job; its logs are its children's: "
                              f"{job_id}:0 to {job_id}:{size - 1}")
        state = json.loads(row[0])
        streams = [a["container"].get("logStreamName") for a in state.get("attempts", [])]
        if state.get("log_stream") and state["log_stream"] not in streams:
            streams.append(state["log_stream"])
        if not streams:
            return ""
        if attempt is not None and not 1 <= attempt <= len(streams):
            raise LookupError(f"job {job_id!r} has {len(streams)} attempt(s), got --attempt {attempt}")
        stream = streams[-1] if attempt is None else streams[attempt - 1]
        path = self.data_dir / "logs" / (stream or "")
        return path.read_text(errors="replace") if path.is_file() else ""

    def _array_size(self, job_id: str) -> int:
        if ":" in job_id:
            return 0
        row = self.db.execute("SELECT body FROM submissions WHERE job_id = ?", (job_id,)).fetchone()
        body = json.loads(row[0]) if row else {}
        size = body.get("array_size") if isinstance(body, dict) else None
        return int(size) if size else 0

    def events(self, after: int, wait: float, job_id: str | None) -> tuple[list[dict[str, Any]], int]:
        from chalicelib.localbatch import wire
        from chalicelib.localbatch.storage.store import Store

        store = Store(self.data_dir / "state.sqlite3")
        try:
            token = store.get_meta("engine_token") or "0" * 32
            rows, next_seq = store.read_events(after, 1000, job_id)
            subs: dict[str, Any] = {}
            events = []
            for seq, jid, time_ms, body in rows:
                root = jid.split(":", 1)[0]
                if root not in subs:
                    subs[root] = store.load_submission(root)
                events.append(json.loads(wire.render_event(token, seq, jid, time_ms, body, subs[root])))
            return events, next_seq
        finally:
            store.close()
