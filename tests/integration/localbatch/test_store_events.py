"""The event log on real SQLite: reads by job through job_key, and stores written before job_key."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from chalicelib.localbatch.storage.store import Store
from tests.unit.localbatch.test_wire import submission

ROOT = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-2222-3333-4444-555555555555"

# The events table and index as stores had them before job_key.
LEGACY_SCHEMA = """
CREATE TABLE submissions (seq INTEGER PRIMARY KEY, job_id TEXT UNIQUE NOT NULL, body TEXT NOT NULL);
CREATE TABLE events (seq INTEGER PRIMARY KEY, job_id TEXT, time_ms INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX events_by_job ON events (job_id, seq);
"""


def submit(store: Store, seq: int, job_id: str) -> None:
    with store.transaction():
        store.insert_submission(replace(submission(), job_id=job_id, seq=seq))


def job_ids(store: Store, job_id: str, after: int = 0) -> list[str]:
    return [row[1] for row in store.read_events(after, 100, job_id)[0]]


def test_reads_by_job_return_that_job_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    submit(store, 1, ROOT)
    submit(store, 2, OTHER)
    with store.transaction():
        store.append_events([(ROOT, 1, "S{}"), (f"{ROOT}:0", 2, "S{}"), (OTHER, 3, "S{}"), (f"{ROOT}:1", 4, "S{}"),
                             (f"{ROOT}:0", 5, "S{}"), (OTHER, 6, "S{}")])
    assert job_ids(store, ROOT) == [ROOT]
    assert job_ids(store, f"{ROOT}:0") == [f"{ROOT}:0", f"{ROOT}:0"]
    assert job_ids(store, f"{ROOT}:0", after=2) == [f"{ROOT}:0"]
    assert job_ids(store, OTHER) == [OTHER, OTHER]
    # Ids no job has read nothing, even those whose packed key would reach another job's.
    for bogus in ("nope", f"{ROOT}:x", f"{ROOT}:-1", f"{ROOT}:16384", f"{ROOT}:16383", f"{ROOT}:2", ""):
        rows, next_seq = store.read_events(0, 100, bogus)
        assert rows == [] and next_seq == 6, bogus
    # A second store on the same file (a CLI next to a running engine) finds the jobs too.
    again = Store(tmp_path / "state.sqlite3")
    assert job_ids(again, f"{ROOT}:1") == [f"{ROOT}:1"]
    again.close()
    store.close()


def test_a_store_written_before_job_key_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(LEGACY_SCHEMA)
        db.execute("INSERT INTO submissions VALUES (7, ?, '{}')", (ROOT,))
        db.execute("INSERT INTO submissions VALUES (8, ?, '{}')", (OTHER,))
        db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)",
                       [(1, ROOT, 1, "S{}"), (2, f"{ROOT}:3", 2, "S{}"), (3, OTHER, 3, "S{}"),
                        (4, "gone", 4, "S{}"), (5, None, 5, "E{}")])
    store = Store(path)
    with sqlite3.connect(path) as db:
        keys = dict(db.execute("SELECT seq, job_key FROM events"))
        indexes = {row[1] for row in db.execute("PRAGMA index_list(events)")}
    assert keys == {1: 7 * 16384, 2: 7 * 16384 + 4, 3: 8 * 16384, 4: None, 5: None}
    assert indexes == {"events_by_job_key"}
    assert job_ids(store, ROOT) == [ROOT]
    assert job_ids(store, f"{ROOT}:3") == [f"{ROOT}:3"]
    with store.transaction():
        assert store.append_events([(f"{ROOT}:3", 6, "S{}")]) == 6
    assert job_ids(store, f"{ROOT}:3") == [f"{ROOT}:3", f"{ROOT}:3"]
    assert [row[0] for row in store.read_events(0, 100)[0]] == [1, 2, 3, 4, 5, 6]
    store.close()
    Store(path).close()  # opening a migrated store again changes nothing
