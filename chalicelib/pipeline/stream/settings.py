"""StreamSpec: a validated pipeline spec in `mode: stream`, with each stage's fleet settings and topology."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.pipeline.errors import SpecIssue, SpecValidationError
from chalicelib.pipeline.model import PipelineSpec, Stage

STREAM_MODE = "stream"
MAX_QUEUE_NAME = 80


@dataclass(frozen=True)
class StreamSettings:
    """One stage's fleet: worker bounds, scaling target, message visibility and poison threshold."""

    min_workers: int = 0
    max_workers: int = 4
    backlog_per_worker: int = 10
    visibility_timeout: int = 60
    max_receives: int = 3

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StreamSettings:
        base = cls()
        return cls(**{name: int(raw.get(name, getattr(base, name))) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class StreamSpec:
    """The pipeline (stages, resources, commands) plus per stage settings and downstream stages."""

    pipeline: PipelineSpec
    settings: dict[str, StreamSettings]

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def entry_stages(self) -> tuple[str, ...]:
        """Stages an arriving item goes to: those with no upstream."""
        return tuple(stage.name for stage in self.pipeline.stages if not stage.after)

    def downstream(self, stage: str) -> tuple[str, ...]:
        return tuple(s.name for s in self.pipeline.stages if stage in s.after)

    def stage(self, name: str) -> Stage:
        return self.pipeline.stage(name)

    def queue_name(self, stage: str) -> str:
        return queue_name(self.name, stage)

    def dead_letter_queue_name(self, stage: str) -> str:
        return queue_name(self.name, stage, "-dlq")


def queue_name(pipeline: str, stage: str, suffix: str = "") -> str:
    """``conveyor-<pipeline>-<stage>[-dlq]``; shortened with a hash when over SQS's 80 characters."""
    name = f"conveyor-{pipeline}-{stage}"
    if len(name) + len(suffix) > MAX_QUEUE_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{name[:MAX_QUEUE_NAME - len(suffix) - 11]}-{digest}"
    return name + suffix


def is_stream(document: Any) -> bool:
    return isinstance(document, dict) and document.get("mode") == STREAM_MODE


def load_stream_spec(source: str | os.PathLike[str]) -> StreamSpec:
    """Loads a spec (path or text) that must be a stream; the batch spec checks and the stream rules apply.

    Raises:
        SpecValidationError: every problem found, or the spec is not `mode: stream`.
    """
    from chalicelib.pipeline.spec import load_spec, parse_document  # see stream_spec_from

    pipeline = load_spec(source)
    is_text = isinstance(source, str) and ("\n" in source or source.lstrip().startswith("{"))
    text = str(source) if is_text else Path(source).read_text(encoding="utf-8")
    return stream_spec_from(parse_document(text), pipeline)


def stream_spec_from(document: dict[str, Any], pipeline: PipelineSpec | None = None) -> StreamSpec:
    if not is_stream(document):
        raise SpecValidationError([SpecIssue("mode", "stream", "expected mode: stream for a stream pipeline")])
    if pipeline is None:
        # Imported here: workers in containers import this module for StreamSettings alone, and
        # the spec machinery (YAML, JSON Schema) is not in a stage's image.
        from chalicelib.pipeline.spec import build_spec

        pipeline = build_spec(document, Path.cwd())
    defaults = (document.get("defaults") or {}).get("stream") or {}
    settings = {raw["name"]: StreamSettings.from_dict({**defaults, **(raw.get("stream") or {})})
                for raw in document["stages"]}
    return StreamSpec(pipeline=pipeline, settings=settings)
