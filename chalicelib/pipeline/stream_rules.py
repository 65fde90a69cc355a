"""Stream spec rules, checked with the batch rules by load_spec: what a stream refuses and why, by path."""

from __future__ import annotations

from typing import Any

from chalicelib.pipeline.errors import SpecIssue

_JOIN = ("joins have no meaning in a stream: every stage runs once per item as it arrives "
         "(add foreach: item)")


def check_stream_rules(document: Any) -> list[SpecIssue]:
    """Issues for a `mode: stream` spec; for a batch spec, only stray `stream` settings."""
    if not isinstance(document, dict) or not isinstance(document.get("stages"), list):
        return []
    stream = document.get("mode") == "stream"
    issues: list[SpecIssue] = []
    defaults = document.get("defaults") if isinstance(document.get("defaults"), dict) else {}
    if not stream and "stream" in defaults:
        issues.append(SpecIssue("defaults.stream", "stream", "stream settings need mode: stream"))
    for index, stage in enumerate(document["stages"]):
        if not isinstance(stage, dict):
            continue
        path = f"stages[{index}]"
        if not stream:
            if "stream" in stage:
                issues.append(SpecIssue(f"{path}.stream", "stream", "stream settings need mode: stream"))
            continue
        issues.extend(_stage_issues(stage, path, defaults.get("stream") or {}))
    return issues


def _stage_issues(stage: dict[str, Any], path: str, defaults: dict[str, Any]) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    if stage.get("foreach") != "item":
        issues.append(SpecIssue(f"{path}.foreach", "stream", _JOIN))
    if stage.get("sequential"):
        issues.append(SpecIssue(f"{path}.sequential", "stream", "a stream has no item order: remove sequential"))
    if stage.get("allow_failed_items"):
        issues.append(SpecIssue(f"{path}.allow_failed_items", "stream", _JOIN))
    after = stage.get("after") or []
    if isinstance(after, list) and len(after) > 1:
        issues.append(SpecIssue(f"{path}.after", "stream",
                                "a stream stage takes one upstream stage (an item's message comes from one stage)"))
    settings = {**defaults, **(stage.get("stream") or {})}
    low, high = settings.get("min_workers", 0), settings.get("max_workers", 4)
    if isinstance(low, int) and isinstance(high, int) and low > high:
        issues.append(SpecIssue(f"{path}.stream.min_workers", "stream",
                                f"min_workers ({low}) is more than max_workers ({high})"))
    return issues
