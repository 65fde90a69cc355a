"""What the console changes: start a run from a spec in --specs, cancel a run, re-run a run's failed items.

Each action is the call the CLI makes (`conveyor run`, Ctrl-C / `cancel`, `rerun --failed`).
A start request is checked whole first: every problem of the input and of the spec comes
back with its path, and nothing is submitted while there is one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.console.backend import ConsoleBackend
from chalicelib.pipeline.errors import ItemsError, PipelineError, PlanningError, SpecValidationError
from chalicelib.pipeline.ports import RunRequest
from chalicelib.pipeline.run_end import cancel_run as end_run_cancelled
from chalicelib.pipeline.runs import epoch_ms, new_run_id, rerun_request
from chalicelib.pipeline.spec import parse_document, validate_document
from chalicelib.pipeline.submitter import SubmissionError

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
INPUT_KEYS = ("runId", "items")
CANCEL_REASON = "from the console"


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class Refused(Exception):
    """A console action refused with the problems that explain why (answered as 400)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems))
        self.problems = problems


def list_specs(specs_dir: Path | None) -> list[dict[str, str]]:
    """The spec files the console offers: file name and the pipeline's name (or why it cannot load)."""
    if specs_dir is None or not specs_dir.is_dir():
        return []
    rows = []
    for path in sorted(specs_dir.iterdir()):
        if path.suffix not in SPEC_SUFFIXES or not path.is_file():
            continue
        try:
            document = parse_document(path.read_text(encoding="utf-8"))
            name = str(document.get("name", path.stem)) if isinstance(document, dict) else path.stem
        except (SpecValidationError, OSError, UnicodeDecodeError) as err:
            name = f"(unreadable: {str(err).splitlines()[0]})"
        rows.append({"file": path.name, "pipeline": name})
    return rows


def _input_problems(run_input: Any) -> list[Problem]:
    if not isinstance(run_input, dict):
        return [Problem("$", "expected a JSON object like {\"items\": \"/path/to/items\"}")]
    problems = [Problem(f"$.{key}", f"unknown field; expected one of {', '.join(INPUT_KEYS)}")
                for key in run_input if key not in INPUT_KEYS]
    for key in INPUT_KEYS:
        value = run_input.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(Problem(f"$.{key}", f"expected a string, got {type(value).__name__}"))
    run_id = run_input.get("runId")
    if isinstance(run_id, str) and not RUN_ID.match(run_id):
        problems.append(Problem("$.runId", "expected 1-80 letters, digits, '-' or '_', starting with a letter or digit"))
    return problems


def _spec_path(backend: ConsoleBackend, name: Any) -> Path:
    offered = {row["file"] for row in list_specs(backend.specs_dir)}
    if not isinstance(name, str) or name not in offered:
        hint = ", ".join(sorted(offered)) or "none: start `conveyor serve` with --specs DIR"
        raise Refused([Problem("spec", f"expected one of the specs the engine offers ({hint})")])
    assert backend.specs_dir is not None
    return backend.specs_dir / name


def _items_source(raw: str | None, base: Path) -> str:
    if not raw:
        return ""
    if "://" in raw or Path(raw).is_absolute():
        return raw
    return str((base / raw).resolve())


def start_run(backend: ConsoleBackend, body: Any) -> str:
    """Starts a run of ``body["spec"]`` with ``body["input"]``; returns the run id.

    Raises:
        Refused: the input, the spec or its items have problems (nothing was submitted).
    """
    body = body if isinstance(body, dict) else {}
    path = _spec_path(backend, body.get("spec"))
    run_input = body.get("input", {})
    problems = _input_problems(run_input)
    document: Any = {}
    try:
        document = parse_document(path.read_text(encoding="utf-8"))
        validate_document(document, path.parent)
    except SpecValidationError as err:
        problems += [Problem(f"spec {issue.path}", issue.message) for issue in err.issues]
    items = run_input.get("items") if isinstance(run_input, dict) else None
    if isinstance(items, str) and items and "://" not in items and not Path(_items_source(items, path.parent)).exists():
        problems.append(Problem("$.items", f"no such file or folder: {_items_source(items, path.parent)}"))
    if problems:
        raise Refused(problems)
    runtime = backend.runtime()
    run_id = run_input.get("runId") or new_run_id(str(document.get("name", path.stem)), epoch_ms())
    request = RunRequest(
        run_id=run_id, spec=document, items_source=_items_source(run_input.get("items"), path.parent),
        prefix=runtime.run_prefix(run_id), source="console", base_dir=str(path.parent.resolve()),
    )
    try:
        return runtime.starter.start_run(request)
    except SpecValidationError as err:
        raise Refused([Problem(f"spec {issue.path}", issue.message) for issue in err.issues]) from None
    except (ItemsError, PlanningError) as err:
        raise Refused([Problem("$.items", str(err))]) from None
    except SubmissionError as err:
        raise Refused([Problem("run", f"Batch refused a submission ({err}); jobs submitted so far are kept, "
                                      f"start again with runId {run_id} to resume")]) from None


def cancel_run(backend: ConsoleBackend, run_id: str) -> list[str]:
    """Ends the run FAILED ("cancelled: ...") and terminates its unfinished jobs (the core's cancel); their ids."""
    runtime = backend.runtime()
    if runtime.store.get_run(run_id) is None:
        raise Refused([Problem("runId", f"no run {run_id!r}")])
    try:
        return list(end_run_cancelled(runtime.ports, run_id, CANCEL_REASON).terminated)
    except SubmissionError as err:
        raise Refused([Problem("run", str(err))]) from None


def rerun_failed(backend: ConsoleBackend, run_id: str) -> str:
    """Starts a new run over the failed items of ``run_id`` (as `conveyor rerun --failed`); returns its id."""
    runtime = backend.runtime()
    old = runtime.store.get_run(run_id)
    try:
        request = rerun_request(runtime.ports, run_id,
                                new_run_id=new_run_id(old.pipeline if old else "run", epoch_ms()))
        return runtime.starter.start_run(request)
    except PipelineError as err:
        raise Refused([Problem("runId", str(err))]) from None
