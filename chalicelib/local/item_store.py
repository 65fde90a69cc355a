"""SqliteItemStore: a stream run's per item and stage records, in the runs database (table stream_items).

Workers are separate processes that all write here; SQLite's WAL and busy timeout serialise
them. A record never moves back: a finished (SUCCEEDED/DEAD_LETTERED) record stays, and a
record from an older receive of the message (fewer receives) loses to a newer one.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from chalicelib.pipeline.stream.records import ItemRecord, ItemStatus, moves_forward

SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_items (
    run_id TEXT NOT NULL, stage TEXT NOT NULL, item_key TEXT NOT NULL, status TEXT NOT NULL,
    receives INTEGER NOT NULL, reason TEXT NOT NULL, arrived_at INTEGER, updated_at INTEGER, worker TEXT NOT NULL,
    PRIMARY KEY (run_id, stage, item_key));
CREATE INDEX IF NOT EXISTS stream_items_by_status ON stream_items (run_id, status);
"""
_COLUMNS = "run_id, stage, item_key, status, receives, reason, arrived_at, updated_at, worker"


class SqliteItemStore:
    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._local = threading.local()
        self._conn().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def put_item(self, record: ItemRecord) -> bool:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            raw = db.execute(f"SELECT {_COLUMNS} FROM stream_items WHERE run_id = ? AND stage = ? AND item_key = ?",
                             (record.run_id, record.stage, record.key)).fetchone()
            if raw is not None and not moves_forward(_record(raw), record):
                db.execute("ROLLBACK")
                return False
            arrived = record.arrived_at if raw is None or raw[6] is None else raw[6]
            db.execute(f"INSERT OR REPLACE INTO stream_items ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (record.run_id, record.stage, record.key, record.status.value, record.receives,
                        record.reason, arrived, record.updated_at, record.worker))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return True

    def list_items(self, run_id: str, stage: str | None = None, limit: int = 1000) -> list[ItemRecord]:
        query = f"SELECT {_COLUMNS} FROM stream_items WHERE run_id = ?"
        params: tuple[object, ...] = (run_id,)
        if stage is not None:
            query, params = query + " AND stage = ?", (run_id, stage)
        rows = self._conn().execute(query + " ORDER BY updated_at DESC LIMIT ?", (*params, limit))
        return [_record(raw) for raw in rows]

    def count_items(self, run_id: str) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for stage, status, count in self._conn().execute(
                "SELECT stage, status, COUNT(*) FROM stream_items WHERE run_id = ? GROUP BY stage, status", (run_id,)):
            counts.setdefault(stage, {})[status] = count
        return counts


def _record(raw: tuple[object, ...]) -> ItemRecord:
    return ItemRecord(run_id=str(raw[0]), stage=str(raw[1]), key=str(raw[2]), status=ItemStatus(raw[3]),
                      receives=int(raw[4]), reason=str(raw[5]), arrived_at=raw[6], updated_at=raw[7],  # type: ignore[arg-type]
                      worker=str(raw[8]))
