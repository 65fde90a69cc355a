"""One stream item through one stage: the runner's staging, tool run and atomic publish, cancellable.

Called in-process by a stream worker (no process per message). The stage's output folder is
published atomically with its ``_SUCCESS`` marker last, and an item whose output is already
published is not run again: a message delivered twice publishes once.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from chalicelib.objectstores import open_store
from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.manifest import stage_output_uri
from chalicelib.pipeline.model import Item
from chalicelib.pipeline.objectstore import ObjectStore, is_published
from chalicelib.pipeline.placeholders import BUILTIN, find_placeholders, substitute
from chalicelib.runner.staging import Stager

STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class ItemRun:
    """``code`` is the tool's exit code (0: published); ``reason`` says why not; ``cancelled``: stopped."""

    code: int
    reason: str = ""
    cancelled: bool = False
    skipped: bool = False  # the output was already published by an earlier delivery


def run_stream_item(run_prefix: str, stage: str, item: Item, tool_argv: Sequence[str], *,
                    cancel: threading.Event, env: Mapping[str, str] | None = None, scratch_parent: Path,
                    log: IO[bytes] | None = None,
                    store_factory: Callable[[str], ObjectStore] = open_store) -> ItemRun:
    target = stage_output_uri(run_prefix, stage, item.key)
    stager = Stager(run_prefix, Path(), store_factory=store_factory)
    if is_published(stager.run_store, target):
        return ItemRun(0, "already published", skipped=True)
    scratch_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-stream-", dir=scratch_parent))
    try:
        stager.scratch = scratch
        values = {"item": stager.stage_item(item, scratch / "in"), "key": [item.key], "out": [str(scratch / "out")]}
        (scratch / "out").mkdir()
        for name in _upstream_names(tool_argv):
            values[name] = stager.stage_upstream(name, "foreach", [item], join=False)
        code, cancelled, tail = _run_tool(substitute(list(tool_argv), values), scratch, cancel, env, log)
        if cancelled:
            return ItemRun(code, "cancelled by a stopping worker", cancelled=True)
        if code != 0:
            return ItemRun(code, f"tool exited {code}" + (f": {tail}" if tail else ""))
        stager.publish(scratch / "out", stage, item.key)
        return ItemRun(0)
    except (PipelineError, OSError, KeyError) as err:
        return ItemRun(2, f"{type(err).__name__}: {err}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _upstream_names(tool_argv: Sequence[str]) -> list[str]:
    names: list[str] = []
    for argument in tool_argv:
        names += [n for n in find_placeholders(argument) if n not in BUILTIN and n not in names]
    return names


def _run_tool(argv: list[str], cwd: Path, cancel: threading.Event, env: Mapping[str, str] | None,
              log: IO[bytes] | None) -> tuple[int, bool, str]:
    """Runs the tool, its output into the scratch log (copied to ``log``); SIGTERM then SIGKILL on cancel."""
    output = cwd / "tool.log"
    with output.open("wb") as sink:
        try:
            process = subprocess.Popen(argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
                                       env=dict(env) if env is not None else None)
        except FileNotFoundError:
            return 127, False, f"tool not found: {argv[0]!r}"
        except PermissionError:
            return 126, False, f"tool not executable: {argv[0]!r}"
        stopped = threading.Event()
        watcher = threading.Thread(target=_stop_on_cancel, args=(process, cancel, stopped), daemon=True)
        watcher.start()
        process.wait()  # returns the moment the tool exits (no polling delay on the hot path)
        cancelled = cancel.is_set() and stopped.is_set()
        stopped.set()
    text = output.read_bytes()
    if log is not None:
        log.write(text)
        log.flush()
    lines = text.decode("utf-8", "replace").strip().splitlines()
    code = process.returncode
    return (128 - code if code < 0 else code), cancelled, (lines[-1][:300] if lines else "")


def _stop_on_cancel(process: subprocess.Popen[bytes], cancel: threading.Event, stopped: threading.Event) -> None:
    while process.poll() is None:
        if cancel.wait(0.2):
            stopped.set()
            process.terminate()
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
            return
