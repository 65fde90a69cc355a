"""SQLite run store: the local RunStore (runs, job-to-run map, stages, item results, wait tokens).

Safe to share between the tracker's dispatcher thread and the CLI thread: one connection
per thread (WAL journal, busy timeout) and a process-wide lock around each write
transaction, so read-modify-write steps (no-regress status updates, wait handshakes) are
atomic within the process; across processes SQLite's own write lock serialises them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chalicelib.pipeline.records import (
    ItemResult,
    JobRecord,
    RunRecord,
    RunStatus,
    StageRecord,
    StageStatus,
    WaitOutcome,
    advanced_job,
    is_forward,
    updated_run,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, status TEXT NOT NULL,
  created_at INTEGER NOT NULL, ended_at INTEGER, prefix TEXT NOT NULL, items INTEGER NOT NULL,
  spec TEXT NOT NULL, source TEXT NOT NULL, failures TEXT NOT NULL, parent_run_id TEXT,
  failure_count INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs (
  run_id TEXT NOT NULL, key TEXT NOT NULL, stage TEXT NOT NULL, job_id TEXT NOT NULL,
  job_name TEXT NOT NULL, offset INTEGER NOT NULL, size INTEGER NOT NULL,
  is_array INTEGER NOT NULL, is_barrier INTEGER NOT NULL, status TEXT NOT NULL,
  status_reason TEXT NOT NULL, started_at INTEGER, stopped_at INTEGER,
  PRIMARY KEY (run_id, key));
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_id ON jobs (job_id);
CREATE TABLE IF NOT EXISTS stages (
  run_id TEXT NOT NULL, stage TEXT NOT NULL, status TEXT NOT NULL, items INTEGER NOT NULL,
  counts TEXT NOT NULL, started_at INTEGER, ended_at INTEGER, deferred INTEGER NOT NULL,
  PRIMARY KEY (run_id, stage));
CREATE TABLE IF NOT EXISTS items (
  run_id TEXT NOT NULL, stage TEXT NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL,
  job_id TEXT NOT NULL, reason TEXT NOT NULL, exit_code INTEGER,
  PRIMARY KEY (run_id, stage, idx));
CREATE TABLE IF NOT EXISTS waits (
  run_id TEXT NOT NULL, stage TEXT NOT NULL, token TEXT, result TEXT,
  PRIMARY KEY (run_id, stage));
CREATE TABLE IF NOT EXISTS claims (
  run_id TEXT NOT NULL, key TEXT NOT NULL, expires_at INTEGER NOT NULL,
  PRIMARY KEY (run_id, key));
"""

# Items per run, stage and status, kept by put_item_results in the same transaction as the items:
# the live progress of a 30,000-item run reads a few rows per refresh instead of every item.
ITEM_COUNTS_SCHEMA = """
CREATE TABLE item_counts (
  run_id TEXT NOT NULL, stage TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,
  PRIMARY KEY (run_id, stage, status))"""

_JOB_COLUMNS = (
    "run_id, key, stage, job_id, job_name, offset, size, is_array, is_barrier, status,"
    " status_reason, started_at, stopped_at"
)


class SqliteRunStore:
    """RunStore on one SQLite file (see ``ports.RunStore`` for the contract)."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.RLock()
        with self._lock:
            # executescript commits on its own, so it runs outside ``_write``.
            self._conn().executescript(SCHEMA)
            columns = {row["name"] for row in self._conn().execute("PRAGMA table_info(runs)")}
            if "failure_count" not in columns:  # a runs file written before failure counts existed
                self._conn().execute("ALTER TABLE runs ADD COLUMN failure_count INTEGER NOT NULL DEFAULT 0")
            self._add_item_counts()

    def _add_item_counts(self) -> None:
        """Creates ``item_counts`` (counted from ``items``) in a runs file written before it existed.

        Checked inside the write transaction, so two processes opening one old file count once.
        """
        with self._write() as db:
            found = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='item_counts'").fetchone()
            if found is None:
                db.execute(ITEM_COUNTS_SCHEMA)
                db.execute("INSERT INTO item_counts SELECT run_id, stage, status, count(*) FROM items"
                           " GROUP BY run_id, stage, status")

    # -- plumbing -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- runs -----------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> bool:
        with self._write() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO runs (run_id, pipeline, status, created_at, ended_at, prefix, items,"
                " spec, source, failures, parent_run_id, failure_count) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run.run_id, run.pipeline, run.status.value, run.created_at, run.ended_at,
                    run.prefix, run.items, json.dumps(run.spec), run.source,
                    json.dumps(list(run.failures)), run.parent_run_id, run.failure_count,
                ),
            )
            return cur.rowcount == 1

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._conn().execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return _to_run(row) if row else None

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        rows = self._conn().execute(
            "SELECT * FROM runs ORDER BY created_at DESC, run_id LIMIT ?", (limit,)
        ).fetchall()
        return [_to_run(r) for r in rows]

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        ended_at: int | None = None,
        failures: Sequence[dict[str, Any]] | None = None,
        failure_count: int | None = None,
    ) -> None:
        with self._write() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
            new = updated_run(
                _to_run(row), status=status, ended_at=ended_at, failures=failures, failure_count=failure_count,
            ) if row else None
            if new is None:
                return
            db.execute(
                "UPDATE runs SET status=?, ended_at=?, failures=?, failure_count=? WHERE run_id=?",
                (new.status.value, new.ended_at, json.dumps(list(new.failures)), new.failure_count, run_id),
            )

    # -- jobs -----------------------------------------------------------------------------

    def put_job(self, job: JobRecord) -> None:
        with self._write() as db:
            db.execute(
                # An upsert, not REPLACE, keeps the row (and so submission order) in place.
                f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(run_id, key) DO UPDATE SET stage=excluded.stage, job_id=excluded.job_id,"
                " job_name=excluded.job_name, offset=excluded.offset, size=excluded.size,"
                " is_array=excluded.is_array, is_barrier=excluded.is_barrier, status=excluded.status,"
                " status_reason=excluded.status_reason, started_at=excluded.started_at,"
                " stopped_at=excluded.stopped_at",
                (
                    job.run_id, job.key, job.stage, job.job_id, job.job_name, job.offset,
                    job.size, int(job.is_array), int(job.is_barrier), job.status,
                    job.status_reason, job.started_at, job.stopped_at,
                ),
            )

    def get_job(self, run_id: str, key: str) -> JobRecord | None:
        row = self._conn().execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id=? AND key=?", (run_id, key)
        ).fetchone()
        return _to_job(row) if row else None

    def find_job(self, job_id: str) -> JobRecord | None:
        row = self._conn().execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id=?", (job_id,)
        ).fetchone()
        return _to_job(row) if row else None

    def list_jobs(self, run_id: str) -> list[JobRecord]:
        rows = self._conn().execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id=? ORDER BY rowid", (run_id,)
        ).fetchall()
        return [_to_job(r) for r in rows]

    def advance_job(
        self,
        job_id: str,
        status: str,
        *,
        reason: str = "",
        started_at: int | None = None,
        stopped_at: int | None = None,
    ) -> bool:
        with self._write() as db:
            row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            moved = advanced_job(
                _to_job(row), status, reason=reason, started_at=started_at, stopped_at=stopped_at,
            ) if row else None
            if moved is None:
                return False
            db.execute(
                "UPDATE jobs SET status=?, status_reason=?, started_at=?, stopped_at=? WHERE job_id=?",
                (moved.status, moved.status_reason, moved.started_at, moved.stopped_at, job_id),
            )
            return True

    def claim_submission(self, run_id: str, key: str, *, now_ms: int, lease_ms: int) -> bool:
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO claims VALUES (?,?,?) ON CONFLICT(run_id, key) DO UPDATE SET"
                " expires_at=excluded.expires_at WHERE claims.expires_at <= ?",
                (run_id, key, now_ms + lease_ms, now_ms),
            )
            return cur.rowcount == 1

    # -- stages and items -----------------------------------------------------------------

    def put_stage(self, stage: StageRecord) -> None:
        with self._write() as db:
            db.execute(
                # An upsert keeps the stage's row, so stages list in the order they were planned.
                "INSERT INTO stages VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(run_id, stage) DO UPDATE SET"
                " status=excluded.status, items=excluded.items, counts=excluded.counts,"
                " started_at=excluded.started_at, ended_at=excluded.ended_at, deferred=excluded.deferred",
                (
                    stage.run_id, stage.stage, stage.status.value, stage.items,
                    json.dumps(stage.counts), stage.started_at, stage.ended_at,
                    int(stage.deferred),
                ),
            )

    def get_stage(self, run_id: str, stage: str) -> StageRecord | None:
        row = self._conn().execute(
            "SELECT * FROM stages WHERE run_id=? AND stage=?", (run_id, stage)
        ).fetchone()
        return _to_stage(row) if row else None

    def list_stages(self, run_id: str) -> list[StageRecord]:
        rows = self._conn().execute(
            "SELECT * FROM stages WHERE run_id=? ORDER BY rowid", (run_id,)
        ).fetchall()
        return [_to_stage(r) for r in rows]

    def put_item_results(self, results: Sequence[ItemResult]) -> None:
        with self._write() as db:
            moves: Counter[tuple[str, str, str]] = Counter()  # (run, stage, status) -> change in count
            for res in results:
                row = db.execute(
                    "SELECT status FROM items WHERE run_id=? AND stage=? AND idx=?",
                    (res.run_id, res.stage, res.index),
                ).fetchone()
                if row is not None and not is_forward(row["status"], res.status):
                    continue
                db.execute(
                    "INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?)",
                    (
                        res.run_id, res.stage, res.index, res.status, res.job_id, res.reason,
                        res.exit_code,
                    ),
                )
                if row is not None:
                    moves[(res.run_id, res.stage, row["status"])] -= 1
                moves[(res.run_id, res.stage, res.status)] += 1
            db.executemany(
                "INSERT INTO item_counts VALUES (?,?,?,?) ON CONFLICT(run_id, stage, status)"
                " DO UPDATE SET n = n + excluded.n",
                [(*key, change) for key, change in moves.items() if change],
            )

    def item_counts(self, run_id: str) -> dict[str, dict[str, int]]:
        """Item results of a run per stage and status (``{stage: {status: n}}``), without reading the items."""
        counts: dict[str, dict[str, int]] = {}
        rows = self._conn().execute("SELECT stage, status, n FROM item_counts WHERE run_id=? AND n > 0", (run_id,))
        for row in rows:
            counts.setdefault(row["stage"], {})[row["status"]] = row["n"]
        return counts

    def list_item_results(self, run_id: str, stage: str | None = None, status: str | None = None) -> list[ItemResult]:
        sql = "SELECT * FROM items WHERE run_id=?"
        params: tuple[Any, ...] = (run_id,)
        if stage is not None:
            sql += " AND stage=?"
            params += (stage,)
        if status is not None:  # e.g. the console's failures of a 10,000-item run, not every row
            sql += " AND status=?"
            params += (status,)
        rows = self._conn().execute(sql + " ORDER BY stage, idx", params).fetchall()
        return [
            ItemResult(
                run_id=r["run_id"], stage=r["stage"], index=r["idx"], status=r["status"],
                job_id=r["job_id"], reason=r["reason"], exit_code=r["exit_code"],
            )
            for r in rows
        ]

    # -- wait pattern ---------------------------------------------------------------------

    def put_task_token(self, run_id: str, stage: str, token: str) -> WaitOutcome:
        return self._put_wait_half(run_id, stage, token=token)

    def put_stage_result(self, run_id: str, stage: str, result: dict[str, Any]) -> WaitOutcome:
        return self._put_wait_half(run_id, stage, result=json.dumps(result))

    def _put_wait_half(
        self, run_id: str, stage: str, *, token: str | None = None, result: str | None = None
    ) -> WaitOutcome:
        with self._write() as db:
            db.execute(
                "INSERT INTO waits VALUES (?,?,?,?) ON CONFLICT(run_id, stage) DO UPDATE SET"
                " token=COALESCE(excluded.token, token), result=COALESCE(excluded.result, result)",
                (run_id, stage, token, result),
            )
            row = db.execute(
                "SELECT token, result FROM waits WHERE run_id=? AND stage=?", (run_id, stage)
            ).fetchone()
        if row["token"] is None or row["result"] is None:
            return WaitOutcome(completed=False)
        return WaitOutcome(completed=True, token=row["token"], result=json.loads(row["result"]))


def _to_run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"], pipeline=row["pipeline"], status=RunStatus(row["status"]),
        created_at=row["created_at"], ended_at=row["ended_at"], prefix=row["prefix"],
        items=row["items"], spec=json.loads(row["spec"]), source=row["source"],
        failures=tuple(json.loads(row["failures"])), parent_run_id=row["parent_run_id"],
        failure_count=row["failure_count"],
    )


def _to_job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        run_id=row["run_id"], key=row["key"], stage=row["stage"], job_id=row["job_id"],
        job_name=row["job_name"], offset=row["offset"], size=row["size"],
        is_array=bool(row["is_array"]), is_barrier=bool(row["is_barrier"]),
        status=row["status"], status_reason=row["status_reason"],
        started_at=row["started_at"], stopped_at=row["stopped_at"],
    )


def _to_stage(row: sqlite3.Row) -> StageRecord:
    return StageRecord(
        run_id=row["run_id"], stage=row["stage"], status=StageStatus(row["status"]),
        items=row["items"], counts=json.loads(row["counts"]), started_at=row["started_at"],
        ended_at=row["ended_at"], deferred=bool(row["deferred"]),
    )
