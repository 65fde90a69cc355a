"""The runner's command line: one builder (for job definitions) and one parser (for the runner).

Keeping both in one module means the submitter and the runner can never
disagree on the argument format::

    python -m chalicelib.runner --run-prefix URI --stage NAME
        [--manifest URI] [--offset K]
        [--join [--items URI]]
        [--upstream NAME=foreach|join ...]
        [--scratch DIR] [--keep-scratch]
        -- TOOL ARGV...

``--manifest`` defaults to ``<run-prefix>/manifest.json``; ``--items`` (joins
only) to the manifest, i.e. every item. ``--upstream`` lists the stages whose
outputs the command may reference as ``{NAME}``, with their shape: a foreach
stage published one folder per item, a join one folder.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

RUNNER_MODULE = "chalicelib.runner"
UPSTREAM_SHAPES = ("foreach", "join")


@dataclass(frozen=True)
class RunnerArgs:
    """Parsed runner arguments."""

    run_prefix: str
    stage: str
    tool_argv: tuple[str, ...]
    manifest: str | None = None
    offset: int = 0
    join: bool = False
    items: str | None = None
    upstream: Mapping[str, str] = field(default_factory=dict)  # stage -> "foreach" | "join"
    scratch: str | None = None
    keep_scratch: bool = False

    @property
    def manifest_uri(self) -> str:
        return self.manifest or f"{self.run_prefix.rstrip('/')}/manifest.json"


def build_runner_argv(
    *,
    run_prefix: str,
    stage: str,
    tool_argv: Sequence[str],
    manifest: str | None = None,
    offset: int = 0,
    join: bool = False,
    items: str | None = None,
    upstream: Mapping[str, str] | None = None,
    python: str = "python",
) -> list[str]:
    """The full job command that runs ``tool_argv`` for one stage under the runner."""
    argv = [python, "-m", RUNNER_MODULE, "--run-prefix", run_prefix, "--stage", stage]
    if manifest:
        argv += ["--manifest", manifest]
    if offset:
        argv += ["--offset", str(offset)]
    if join:
        argv.append("--join")
        if items:
            argv += ["--items", items]
    for name, shape in sorted((upstream or {}).items()):
        if shape not in UPSTREAM_SHAPES:
            raise ValueError(f"upstream {name!r}: shape must be foreach or join, got {shape!r}")
        argv += ["--upstream", f"{name}={shape}"]
    return [*argv, "--", *tool_argv]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # Usage errors are runner errors: one line, exit code 2.
        raise ValueError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m chalicelib.runner", add_help=False)
    parser.add_argument("--run-prefix", required=True)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--manifest")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--join", action="store_true")
    parser.add_argument("--items")
    parser.add_argument("--upstream", action="append", default=[])
    parser.add_argument("--scratch")
    parser.add_argument("--keep-scratch", action="store_true")
    return parser


def parse_runner_argv(argv: Sequence[str]) -> RunnerArgs:
    """Parses the runner's arguments.

    Raises:
        ValueError: a missing or malformed argument, or no tool command after ``--``.
    """
    argv = list(argv)
    if "--" not in argv:
        raise ValueError("missing '--' followed by the tool command")
    split = argv.index("--")
    own, tool = argv[:split], argv[split + 1 :]
    if not tool:
        raise ValueError("empty tool command after '--'")
    ns = _parser().parse_args(own)
    upstream: dict[str, str] = {}
    for entry in ns.upstream:
        name, sep, shape = entry.partition("=")
        if not sep or not name or shape not in UPSTREAM_SHAPES:
            raise ValueError(f"--upstream {entry!r}: expected NAME=foreach or NAME=join")
        upstream[name] = shape
    if ns.offset < 0:
        raise ValueError(f"--offset must be >= 0, got {ns.offset}")
    if ns.items and not ns.join:
        raise ValueError("--items is only for a join (add --join)")
    return RunnerArgs(
        run_prefix=ns.run_prefix,
        stage=ns.stage,
        tool_argv=tuple(tool),
        manifest=ns.manifest,
        offset=ns.offset,
        join=ns.join,
        items=ns.items,
        upstream=upstream,
        scratch=ns.scratch,
        keep_scratch=ns.keep_scratch,
    )
