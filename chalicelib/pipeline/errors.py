"""PipelineError hierarchy: spec, items, planning, object store and runner errors."""

from __future__ import annotations

from typing import NamedTuple


class PipelineError(Exception):
    """Base of every error the pipeline core raises on purpose (bad input, refused action)."""


class SpecIssue(NamedTuple):
    """One problem in a spec: where (``$.stages[2].after[0]``), which rule, and what was expected.

    Frozen and ordered by (path, rule, message). A NamedTuple rather than a dataclass: the
    runner imports this module at every job's start, and `dataclasses` (it imports `inspect`)
    would be a third of its import time.
    """

    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecValidationError(PipelineError):
    """A spec with one or more problems; ``issues`` holds all of them, sorted by path."""

    def __init__(self, issues: list[SpecIssue] | tuple[SpecIssue, ...]) -> None:
        self.issues: tuple[SpecIssue, ...] = tuple(sorted(issues, key=_issue_sort_key))
        count = len(self.issues)
        head = f"{count} problem{'s' if count != 1 else ''} in pipeline spec"
        super().__init__(head + "".join(f"\n  {issue}" for issue in self.issues))


def _issue_sort_key(issue: SpecIssue) -> tuple[list[tuple[int, str | int]], str, str]:
    # Sort `$.stages[10]` after `$.stages[2]`: compare list indexes as numbers.
    parts: list[tuple[int, str | int]] = []
    token = ""
    for char in issue.path:
        if char in ".[]":
            if token:
                parts.append((0, int(token)) if token.isdigit() else (1, token))
            token = ""
        else:
            token += char
    if token:
        parts.append((0, int(token)) if token.isdigit() else (1, token))
    return parts, issue.rule, issue.message


class ItemsError(PipelineError):
    """Items could not be found or read (missing folder, bad manifest, no match)."""


class PlanningError(PipelineError):
    """A spec and item count that cannot be turned into Batch jobs (e.g. no items)."""


class ObjectStoreError(PipelineError):
    """An object store operation failed (missing object, unsupported URI)."""


class PathEscapeError(ObjectStoreError):
    """A key or path that would leave the store's root prefix (``..``, absolute, symlink)."""


class RunnerError(PipelineError):
    """The runner could not stage inputs or publish outputs; exits with code 2."""
