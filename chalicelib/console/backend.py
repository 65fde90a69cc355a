"""What the console reads and calls: the engine, the run store, the pipeline runtime and the spec folder.

The run store is opened on the first console request and the pipeline runtime (which
subscribes a tracker to the engine's events) on the first run started or re-run from the
browser, so a `serve` whose console nobody opens does no extra work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.local.runstore import SqliteRunStore
from chalicelib.local.runtime import EVENTS_LOG, RUNS_DB, LocalRuntime


@dataclass
class ConsoleBackend:
    """``open_runtime`` builds the pipeline runtime over ``engine`` (called at most once)."""

    engine: Any
    open_runtime: Callable[[], LocalRuntime]
    specs_dir: Path | None = None
    data_dir: Path | None = None
    _runtime: LocalRuntime | None = None
    _store: SqliteRunStore | None = None
    _owns_runtime: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def root(self) -> Path:
        return Path(self.data_dir or self.engine.data_dir)

    @property
    def token(self) -> str:
        return str(self.engine.console_token)

    def store(self) -> SqliteRunStore:
        with self._lock:
            if self._runtime is not None:
                return self._runtime.store
            if self._store is None:
                self._store = SqliteRunStore(self.root / RUNS_DB)
            return self._store

    def runtime(self) -> LocalRuntime:
        with self._lock:
            if self._runtime is None:
                self._runtime = self.open_runtime()
            return self._runtime

    @property
    def events_log(self) -> Path:
        return self.root / EVENTS_LOG

    def read_log(self, job_id: str, attempt: int | None = None) -> str:
        return str(self.engine.read_log(job_id, attempt))

    def close(self) -> None:
        with self._lock:
            if self._runtime is not None and self._owns_runtime:
                self._runtime.close()
            self._runtime = None
            if self._store is not None:
                self._store.close()
                self._store = None


def adopt_runtime(engine: Any, runtime: LocalRuntime, specs_dir: Path | None = None) -> ConsoleBackend:
    """A backend over a runtime that already exists (`conveyor run --console`)."""
    return ConsoleBackend(engine=engine, open_runtime=lambda: runtime, specs_dir=specs_dir,
                          data_dir=runtime.data_dir, _runtime=runtime, _owns_runtime=False)
