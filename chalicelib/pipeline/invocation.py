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

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

RUNNER_MODULE = "chalicelib.runner"
# What an engine's warm launcher imports ahead of the runner's jobs ("MODULE:PRELOAD"): the
# runner reads its environment when it runs, never at import, so it is safe to warm.
RUNNER_WARM_ENTRY = f"{RUNNER_MODULE}:{RUNNER_MODULE}.main"
UPSTREAM_SHAPES = ("foreach", "join")


class RunnerArgs(NamedTuple):
    """Parsed runner arguments (a NamedTuple, not a dataclass: see ``item.py`` on import cost)."""

    run_prefix: str
    stage: str
    tool_argv: tuple[str, ...]
    manifest: str | None = None
    offset: int = 0
    join: bool = False
    items: str | None = None
    upstream: Mapping[str, str] = MappingProxyType({})  # stage -> "foreach" | "join"
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


# The runner's options: those that take a value, and flags. Parsed by hand, not with argparse:
# the runner starts once per job and argparse (with gettext) is a noticeable part of its start.
_VALUE_OPTIONS = ("--run-prefix", "--stage", "--manifest", "--offset", "--items", "--upstream", "--scratch")
_FLAGS = ("--join", "--keep-scratch")


def _read_options(own: Sequence[str]) -> tuple[dict[str, str], list[str], set[str]]:
    """(last value of each value option, every --upstream value, flags given)."""
    values: dict[str, str] = {}
    upstream: list[str] = []
    flags: set[str] = set()
    position = 0
    while position < len(own):
        name, eq, inline = own[position].partition("=")
        position += 1
        if name in _FLAGS and not eq:
            flags.add(name)
            continue
        if name not in _VALUE_OPTIONS:
            raise ValueError(f"unrecognized argument: {own[position - 1]!r}")
        if not eq:
            if position >= len(own) or own[position].partition("=")[0] in (*_VALUE_OPTIONS, *_FLAGS):
                raise ValueError(f"argument {name}: expected one argument")
            inline = own[position]
            position += 1
        if name == "--upstream":
            upstream.append(inline)
        else:
            values[name] = inline
    missing = [name for name in ("--run-prefix", "--stage") if name not in values]
    if missing:
        raise ValueError(f"the following arguments are required: {', '.join(missing)}")
    return values, upstream, flags


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
    values, upstream_entries, flags = _read_options(own)
    upstream: dict[str, str] = {}
    for entry in upstream_entries:
        name, sep, shape = entry.partition("=")
        if not sep or not name or shape not in UPSTREAM_SHAPES:
            raise ValueError(f"--upstream {entry!r}: expected NAME=foreach or NAME=join")
        upstream[name] = shape
    raw_offset = values.get("--offset", "0")
    try:
        offset = int(raw_offset)
    except ValueError:
        raise ValueError(f"argument --offset: invalid int value: {raw_offset!r}") from None
    if offset < 0:
        raise ValueError(f"--offset must be >= 0, got {offset}")
    join = "--join" in flags
    if values.get("--items") and not join:
        raise ValueError("--items is only for a join (add --join)")
    return RunnerArgs(
        run_prefix=values["--run-prefix"],
        stage=values["--stage"],
        tool_argv=tuple(tool),
        manifest=values.get("--manifest"),
        offset=offset,
        join=join,
        items=values.get("--items"),
        upstream=upstream,
        scratch=values.get("--scratch"),
        keep_scratch="--keep-scratch" in flags,
    )
