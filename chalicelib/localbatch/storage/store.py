"""SQLite repository: schema, job/queue/environment/definition rows and the event log; sole sqlite3 importer.

The engine keeps its working state in memory and writes every change here inside one
transaction per scheduler tick (or per API call), together with the events that change
produced. WAL with synchronous=NORMAL survives a kill -9 of the engine (not a power cut),
which is the durability the engine promises.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chalicelib.localbatch import wire
from chalicelib.localbatch.model import (
    ComputeEnvironment,
    Job,
    JobDefinition,
    JobQueue,
    Resources,
    Submission,
)

logger = logging.getLogger(__name__)
_SURROGATES = re.compile("[\ud800-\udfff]")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS compute_environments (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_queues (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_definitions (
    arn TEXT PRIMARY KEY, name TEXT NOT NULL, revision INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (seq INTEGER PRIMARY KEY, job_id TEXT UNIQUE NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, parent_id TEXT, idx INTEGER, status TEXT NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, job_id TEXT, time_ms INTEGER NOT NULL, body TEXT NOT NULL, job_key INTEGER);
"""

# A job's events are found through job_key: its submission's seq and its array index + 1 (0 for the
# submitted job itself) packed in one integer, so the index entries of jobs submitted together lie
# together and a commit dirties a few index pages. Indexed by the random job UUID instead, every
# commit wrote one index page per job it touched: most of its WAL writes.
_KEY_SPAN = 16384  # more than the largest array index + 1
_EVENTS_INDEX = "CREATE INDEX IF NOT EXISTS events_by_job_key ON events (job_key, seq)"
_COLON = "instr(events.job_id, ':')"
_BACKFILL_KEYS = (
    "UPDATE events SET job_key = (SELECT s.seq FROM submissions s WHERE s.job_id = CASE WHEN "
    f"{_COLON} > 0 THEN substr(events.job_id, 1, {_COLON} - 1) ELSE events.job_id END) * {_KEY_SPAN}"
    f" + CASE WHEN {_COLON} > 0 THEN CAST(substr(events.job_id, {_COLON} + 1) AS INTEGER) + 1 ELSE 0 END"
)


def _add_event_keys(db: sqlite3.Connection) -> None:
    """Migrates a store written before job_key: fills it in and swaps the job_id index for its own."""
    db.execute("BEGIN IMMEDIATE")
    try:
        # Checked again inside the transaction: another process may have migrated it meanwhile.
        if "job_key" not in {row[1] for row in db.execute("PRAGMA table_info(events)")}:
            db.execute("ALTER TABLE events ADD COLUMN job_key INTEGER")
            db.execute(_BACKFILL_KEYS)
            db.execute("DROP INDEX IF EXISTS events_by_job")
            db.execute(_EVENTS_INDEX)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _scrub(value: Any) -> Any:
    """Text with lone surrogates replaced by U+FFFD; anything else unchanged."""
    if not isinstance(value, str):
        return value
    return _SURROGATES.sub("\ufffd", value)


class StoreError(Exception):
    """The state file cannot be opened as an engine store (corrupt, or not ours)."""


class Store:
    """One writer connection (callers serialise writes under the engine lock), per-thread readers."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._connect()
            self._db.executescript(SCHEMA)
            if "job_key" not in {row[1] for row in self._db.execute("PRAGMA table_info(events)")}:
                _add_event_keys(self._db)
            self._db.execute(_EVENTS_INDEX)
            self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: not a usable engine state file ({err}); move it away to start "
                             "afresh") from None
        self._local = threading.local()
        # Every write on the shared connection holds this, so a transaction written outside
        # the engine lock (the group commit) never interleaves with another write.
        self.write_lock = threading.RLock()
        self._next_seq: int | None = None
        self._sub_seqs: dict[str, int] = {}  # submitted job id -> submission seq, for job keys

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.write_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                self._next_seq = None
                raise
            self._db.execute("COMMIT")

    # -- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.write_lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- resources ----------------------------------------------------------------------------
    def save_compute_environment(self, ce: ComputeEnvironment) -> None:
        with self.write_lock:
            body = {k: v for k, v in asdict(ce).items() if k != "used_vcpus"}
            self._db.execute("INSERT OR REPLACE INTO compute_environments VALUES (?, ?)", (ce.name, json.dumps(body)))

    def delete_compute_environment(self, name: str) -> None:
        with self.write_lock:
            self._db.execute("DELETE FROM compute_environments WHERE name=?", (name,))

    def load_compute_environments(self) -> list[ComputeEnvironment]:
        rows = self._db.execute("SELECT body FROM compute_environments").fetchall()
        return [ComputeEnvironment(**json.loads(r[0])) for r in rows]

    def save_queue(self, queue: JobQueue) -> None:
        with self.write_lock:
            body = asdict(queue)
            self._db.execute("INSERT OR REPLACE INTO job_queues VALUES (?, ?)", (queue.name, json.dumps(body)))

    def delete_queue(self, name: str) -> None:
        with self.write_lock:
            self._db.execute("DELETE FROM job_queues WHERE name=?", (name,))

    def load_queues(self) -> list[JobQueue]:
        queues = []
        for (body,) in self._db.execute("SELECT body FROM job_queues"):
            data = json.loads(body)
            data["ce_order"] = [tuple(x) for x in data["ce_order"]]
            queues.append(JobQueue(**data))
        return queues

    def save_job_definition(self, jd: JobDefinition) -> None:
        with self.write_lock:
            self._db.execute("INSERT OR REPLACE INTO job_definitions VALUES (?, ?, ?, ?)",
                             (jd.arn, jd.name, jd.revision, json.dumps(asdict(jd))))

    def load_job_definitions(self) -> list[JobDefinition]:
        rows = self._db.execute("SELECT body FROM job_definitions ORDER BY name, revision")
        return [JobDefinition(**json.loads(r[0])) for r in rows]

    # -- jobs ---------------------------------------------------------------------------------
    def insert_submission(self, sub: Submission) -> None:
        body = {k: v for k, v in asdict(sub).items() if k not in ("static_json", "container_json")}
        self._db.execute("INSERT INTO submissions VALUES (?, ?, ?)", (sub.seq, sub.job_id, json.dumps(body)))
        self._sub_seqs[sub.job_id] = sub.seq

    def load_submissions(self) -> list[Submission]:
        subs = []
        for (body,) in self._db.execute("SELECT body FROM submissions ORDER BY seq"):
            data = json.loads(body)
            data["resources"] = Resources(**data["resources"])
            subs.append(Submission(**data))
        return subs

    def max_submission_seq(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM submissions").fetchone()
        return int(row[0])

    @staticmethod
    def job_row(job: Job, state: str = "") -> tuple[str, str, str | None, int | None, str]:
        """A job's row as written: taken under the engine lock, written later.

        `state` is the job's current wire.state_json when the caller already has it.
        """
        parent = job.parent
        return (job.status.value, state or wire.state_json(job), None if parent is None else parent.job_id,
                job.index, job.job_id)

    def upsert_jobs(self, jobs: Iterable[Job]) -> None:
        self.upsert_job_rows([self.job_row(job) for job in jobs])

    def upsert_job_rows(self, rows: list[tuple[str, str, str | None, int | None, str]]) -> None:
        self._db.executemany(
            "INSERT INTO jobs (status, state, parent_id, idx, job_id) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(job_id) DO UPDATE SET status=excluded.status, state=excluded.state", rows)

    def load_jobs(self) -> Iterator[tuple[str, str | None, int | None, str, dict[str, Any]]]:
        """Yields (job_id, parent_id, index, status, state) in insertion order."""
        for job_id, parent_id, idx, status, state in self._db.execute(
                "SELECT job_id, parent_id, idx, status, state FROM jobs ORDER BY rowid"):
            fields = json.loads(state)
            # The status column is the job's status; a parent's summary is rebuilt from its children.
            fields.pop("status", None)
            fields.pop("summary", None)
            yield job_id, parent_id, idx, status, fields

    def write_changes(self, rows: list[tuple[str, str, str | None, int | None, str]],
                      events: list[tuple[str, int, str]]) -> int:
        """Writes one group commit (job rows and their events) in one transaction; returns the last seq.

        Text SQLite cannot store (a lone surrogate that got past validation) must not fail the
        whole group: every other job's change in it would be lost, and so would every later
        group that carries the same job. Such text is written with U+FFFD in its place.
        """
        try:
            return self._write_changes(rows, events)
        except UnicodeEncodeError:
            logger.error("a job change held text that is not valid Unicode; stored with U+FFFD in its place")
            return self._write_changes([tuple(_scrub(x) for x in row) for row in rows],  # type: ignore[misc]
                                       [(_scrub(j), t, _scrub(b)) for j, t, b in events])

    def _write_changes(self, rows: list[tuple[str, str, str | None, int | None, str]],
                       events: list[tuple[str, int, str]]) -> int:
        with self.transaction():
            if rows:
                self.upsert_job_rows(rows)
            return self.append_events(events) if events else 0

    # -- events -------------------------------------------------------------------------------
    def append_events(self, events: list[tuple[str, int, str]]) -> int:
        """Appends (job_id, time_ms, body) rows; returns the sequence number of the last one.

        The engine is the only writer, so sequence numbers are counted here rather than
        asked back from SQLite after every insert.
        """
        if self._next_seq is None:
            self._next_seq = self.last_event_seq() + 1
        first = self._next_seq
        key = self._job_key
        db = self._db
        self._db.executemany("INSERT INTO events (seq, job_id, time_ms, body, job_key) VALUES (?, ?, ?, ?, ?)",
                             [(first + i, job_id, time_ms, body, key(job_id, db) if job_id else None)
                              for i, (job_id, time_ms, body) in enumerate(events)])
        self._next_seq = first + len(events)
        return self._next_seq - 1

    def _job_key(self, job_id: str, db: sqlite3.Connection) -> int | None:
        """The job_key of a job id, None for an id no submission can have (its events are none)."""
        root, _, index = job_id.partition(":")
        if index and not (index.isascii() and index.isdigit() and int(index) < _KEY_SPAN - 1):
            return None
        seq = self._sub_seqs.get(root)
        if seq is None:  # submitted before this store was opened, or by another process
            row = db.execute("SELECT seq FROM submissions WHERE job_id=?", (root,)).fetchone()
            if row is None:
                return None
            seq = self._sub_seqs[root] = int(row[0])
        return seq * _KEY_SPAN + (int(index) + 1 if index else 0)

    def last_event_seq(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(row[0])

    def read_events(self, after: int, limit: int = 1000,
                    job_id: str | None = None) -> tuple[list[tuple[int, str, int, str]], int]:
        """Reads (seq, job_id, time_ms, body) rows after a sequence number, on this thread's own connection.

        Returns (rows, next): `next` is where the following read starts. With a job filter
        it moves past events of other jobs too, so a follower never rescans them.
        """
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = self._connect()
        reader.execute("BEGIN")
        try:
            (newest,) = reader.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
            if job_id is None:
                cursor = reader.execute("SELECT seq, job_id, time_ms, body FROM events WHERE seq > ? "
                                        "ORDER BY seq LIMIT ?", (after, limit))
            else:
                key = self._job_key(job_id, reader)
                cursor = reader.execute("SELECT seq, job_id, time_ms, body FROM events WHERE job_key = ? "
                                        "AND job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                                        (key, job_id, after, limit))
            rows = [(int(seq), str(jid), int(ms), str(body)) for seq, jid, ms, body in cursor]
        finally:
            reader.execute("COMMIT")
        if len(rows) == limit:
            return rows, rows[-1][0]
        return rows, max(int(newest), after)

    def load_submission(self, job_id: str) -> Submission | None:
        row = self._db.execute("SELECT body FROM submissions WHERE job_id=?", (job_id,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        data["resources"] = Resources(**data["resources"])
        return Submission(**data)

    def save_submission_tags(self, sub: Submission) -> None:
        with self.write_lock:
            row = self._db.execute("SELECT body FROM submissions WHERE job_id=?", (sub.job_id,)).fetchone()
            if row is None:
                return
            data = json.loads(row[0])
            data["tags"] = sub.tags
            self._db.execute("UPDATE submissions SET body=? WHERE job_id=?", (json.dumps(data), sub.job_id))
