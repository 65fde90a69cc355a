"""SQLite rows of the engine's SQS: queues and messages, in their own file next to the Batch state.

A message is committed before SendMessage answers, in WAL mode with synchronous=NORMAL: an
accepted message survives a kill -9 of the engine (not a power cut), like the Batch side.
Callers serialise every call under the service's lock; one connection serves them all.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY, attributes TEXT NOT NULL, created_ms INTEGER NOT NULL, modified_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, queue TEXT NOT NULL, body TEXT NOT NULL,
    attributes TEXT NOT NULL, system TEXT NOT NULL, sent_ms INTEGER NOT NULL, visible_ms INTEGER NOT NULL,
    receives INTEGER NOT NULL DEFAULT 0, first_receive_ms INTEGER, receipt TEXT);
CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (queue, visible_ms, seq);
"""


@dataclass
class MessageRow:
    """One stored message; ``receipt`` is the token of its latest receive (None before the first)."""

    id: str
    queue: str
    body: str
    attributes: dict[str, Any]
    system: dict[str, str]
    sent_ms: int
    visible_ms: int
    receives: int = 0
    first_receive_ms: int | None = None
    receipt: str | None = None


_COLUMNS = "id, queue, body, attributes, system, sent_ms, visible_ms, receives, first_receive_ms, receipt"


def _row(raw: tuple[Any, ...]) -> MessageRow:
    return MessageRow(raw[0], raw[1], raw[2], json.loads(raw[3]), json.loads(raw[4]), *raw[5:])


class SqsStorage:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- queues -------------------------------------------------------------------------------
    def get_queue(self, name: str) -> dict[str, Any] | None:
        raw = self._db.execute("SELECT attributes, created_ms, modified_ms FROM queues WHERE name = ?",
                               (name,)).fetchone()
        if raw is None:
            return None
        return {"attributes": json.loads(raw[0]), "created_ms": raw[1], "modified_ms": raw[2]}

    def put_queue(self, name: str, attributes: dict[str, str], now_ms: int) -> None:
        self._db.execute(
            "INSERT INTO queues (name, attributes, created_ms, modified_ms) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET attributes = excluded.attributes, modified_ms = excluded.modified_ms",
            (name, json.dumps(attributes), now_ms, now_ms))

    def delete_queue(self, name: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM messages WHERE queue = ?", (name,))
            self._db.execute("DELETE FROM queues WHERE name = ?", (name,))

    def queue_names(self) -> list[str]:
        return [raw[0] for raw in self._db.execute("SELECT name FROM queues ORDER BY name")]

    # -- messages -----------------------------------------------------------------------------
    def insert(self, rows: Sequence[MessageRow]) -> None:
        with self.transaction():
            self._db.executemany(
                f"INSERT INTO messages ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.id, r.queue, r.body, json.dumps(r.attributes), json.dumps(r.system), r.sent_ms, r.visible_ms,
                  r.receives, r.first_receive_ms, r.receipt) for r in rows])

    def visible(self, queue: str, now_ms: int, limit: int) -> list[MessageRow]:
        cursor = self._db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE queue = ? AND visible_ms <= ? ORDER BY visible_ms, seq LIMIT ?",
            (queue, now_ms, limit))
        return [_row(raw) for raw in cursor]

    def get(self, message_id: str) -> MessageRow | None:
        raw = self._db.execute(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _row(raw) if raw else None

    def update(self, rows: Sequence[MessageRow]) -> None:
        """Writes back receive state and queue moves (redrive) of rows read in this transaction."""
        self._db.executemany(
            "UPDATE messages SET queue = ?, system = ?, visible_ms = ?, receives = ?, first_receive_ms = ?, "
            "receipt = ? WHERE id = ?",
            [(r.queue, json.dumps(r.system), r.visible_ms, r.receives, r.first_receive_ms, r.receipt, r.id)
             for r in rows])

    def delete(self, message_ids: Sequence[str]) -> None:
        self._db.executemany("DELETE FROM messages WHERE id = ?", [(m,) for m in message_ids])

    def purge(self, queue: str) -> None:
        self._db.execute("DELETE FROM messages WHERE queue = ?", (queue,))

    def expire(self, queue: str, sent_before_ms: int) -> None:
        self._db.execute("DELETE FROM messages WHERE queue = ? AND sent_ms < ?", (queue, sent_before_ms))

    def counts(self, queue: str, now_ms: int) -> dict[str, int]:
        """Visible, in flight (received, not yet visible again) and delayed (never received) messages."""
        raw = self._db.execute(
            "SELECT COALESCE(SUM(visible_ms <= :now), 0), COALESCE(SUM(visible_ms > :now AND receives > 0), 0), "
            "COALESCE(SUM(visible_ms > :now AND receives = 0), 0) FROM messages WHERE queue = :queue",
            {"now": now_ms, "queue": queue}).fetchone()
        return {"visible": raw[0], "in_flight": raw[1], "delayed": raw[2]}

    def next_visible_ms(self, queue: str) -> int | None:
        raw = self._db.execute("SELECT MIN(visible_ms) FROM messages WHERE queue = ?", (queue,)).fetchone()
        return raw[0]
