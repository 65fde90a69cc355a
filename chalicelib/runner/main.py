"""Runner flow: find the item, stage inputs, run the tool (no shell), publish ``{out}`` on exit 0.

Exit codes:

* the tool's own exit code when it ran (0 only after the outputs were published);
* 128 + N when the tool was killed by signal N;
* 2: runner error before the tool ran (bad arguments, unreadable manifest,
  missing input or unpublished upstream output, a key or path escaping the
  run prefix), with one ``conveyor-runner: error: ...`` line on stderr;
* 3: the tool exited 0 but publishing its outputs failed;
* 126 / 127: the tool is not executable / not found.

SIGTERM and SIGINT are forwarded to the tool (Batch sends SIGTERM on timeout
and termination), so the tool can stop cleanly; nothing is published then.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from chalicelib.objectstores import open_store
from chalicelib.pipeline.errors import PipelineError, RunnerError
from chalicelib.pipeline.invocation import parse_runner_argv
from chalicelib.pipeline.manifest import read_item, read_manifest, stage_output_uri
from chalicelib.pipeline.objectstore import read_reference
from chalicelib.pipeline.placeholders import BUILTIN, find_placeholders, substitute
from chalicelib.runner import tool_process
from chalicelib.runner.command_line import fits, relative_values, too_long
from chalicelib.runner.scratch import make_scratch
from chalicelib.runner.staging import Stager

if TYPE_CHECKING:  # names for annotations only: the runner starts once per job, so it imports little
    from types import FrameType

    from chalicelib.pipeline.invocation import RunnerArgs
    from chalicelib.pipeline.item import Item
    from chalicelib.pipeline.objectstore import ObjectStore

EXIT_RUNNER_ERROR = 2
EXIT_PUBLISH_FAILED = 3
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
PREFIX = "conveyor-runner"


def main(
    argv: Sequence[str],
    *,
    environ: Mapping[str, str] | None = None,
    store_factory: Callable[[str], ObjectStore] = open_store,
) -> int:
    """Runs one stage for one item (or one join); returns the process exit code."""
    env = os.environ if environ is None else environ
    try:
        args = parse_runner_argv(argv)
    except ValueError as err:
        return _fail(f"bad arguments: {err}")
    scratch = make_scratch(args.scratch)
    try:
        return _run(args, env, Path(scratch.path), store_factory)
    except PipelineError as err:
        return _fail(str(err))
    finally:
        if args.keep_scratch:
            scratch.release()
        else:
            scratch.remove()


def _run(
    args: RunnerArgs, env: Mapping[str, str], scratch: Path, store_factory: Callable[[str], ObjectStore]
) -> int:
    stager = Stager(args.run_prefix, scratch, store_factory=store_factory)
    items, label = _load_items(args, env, stager)
    # Refuse names that would publish outside the run prefix before the tool runs.
    own = stage_output_uri(args.run_prefix, args.stage, None if args.join else items[0].key)
    _log(f"stage {args.stage} {label} attempt {env.get('AWS_BATCH_JOB_ATTEMPT', '1')}")
    if read_reference(stager.run_store, own) is not None:
        origin = stager.reused_origin(own)
        if origin is not None:
            # A rerun reuses this output (see pipeline/resume.py): nothing to compute.
            _log(f"reused {origin} (published by an earlier run); the tool does not run")
            return 0
    names = _placeholder_names(args.tool_argv)
    values: dict[str, list[str]] = {}
    if "item" in names:  # a join's command without {item} would copy every item's files for nothing
        values["item"] = stager.stage_items(items, join=args.join)
    out_dir = scratch / "out"
    out_dir.mkdir()
    values["out"] = [str(out_dir)]
    if not args.join:
        values["key"] = [items[0].key]
    for name in _referenced_stages(args, names):
        values[name] = stager.stage_upstream(name, args.upstream[name], items, join=args.join)
    code = run_tool(_command(args, values, scratch, os.environ), cwd=scratch)  # the tool gets our environment
    if code != 0:
        _log(f"tool exited {code}; nothing published")
        return code
    key = None if args.join else items[0].key
    try:
        uri, count = stager.publish(out_dir, args.stage, key)
    except PipelineError as err:
        return _fail(f"tool succeeded but publishing failed: {err}", EXIT_PUBLISH_FAILED)
    except OSError as err:
        return _fail(f"tool succeeded but publishing failed: {err}", EXIT_PUBLISH_FAILED)
    _log(f"published {count} file(s) to {uri}")
    return 0


def _load_items(args: RunnerArgs, env: Mapping[str, str], stager: Stager) -> tuple[list[Item], str]:
    if args.join:
        uri = args.items or args.manifest_uri
        items = read_manifest(stager.reader(uri), uri)
        return items, f"join over {len(items)} item(s)"
    raw_index = env.get("AWS_BATCH_JOB_ARRAY_INDEX", "0") or "0"
    if not raw_index.isdigit():
        raise RunnerError(f"AWS_BATCH_JOB_ARRAY_INDEX is not a number: {raw_index[:20]!r}")
    index = args.offset + int(raw_index)
    item = read_item(stager.reader(args.manifest_uri), args.manifest_uri, index)
    return [item], f"item {item.key!r} (index {index})"


def _command(args: RunnerArgs, values: dict[str, list[str]], scratch: Path, env: Mapping[str, str]) -> list[str]:
    """The tool's command line; staged paths relative to its working folder if absolute ones are too long."""
    try:
        argv = substitute(args.tool_argv, values)
        if fits(argv, env):
            return argv
        argv = substitute(args.tool_argv, relative_values(values, str(scratch)))
    except KeyError as err:
        raise RunnerError(f"placeholder {{{err.args[0]}}} has no value in a join") from None
    if not fits(argv, env):
        raise RunnerError(too_long(argv, env))
    _log(f"{len(argv)} arguments: staged paths given relative to the working folder (absolute ones are too long)")
    return argv


def _placeholder_names(tool_argv: Sequence[str]) -> list[str]:
    """Every placeholder the command names, in order, once each."""
    names: list[str] = []
    for argument in tool_argv:
        for name in find_placeholders(argument):
            if name not in names:
                names.append(name)
    return names


def _referenced_stages(args: RunnerArgs, names: Sequence[str]) -> list[str]:
    """Upstream stages the command names; only those are downloaded."""
    for name in names:
        if name not in BUILTIN and name not in args.upstream:
            raise RunnerError(
                f"placeholder {{{name}}} names no upstream stage (expected --upstream {name}=foreach|join)"
            )
    return [name for name in names if name not in BUILTIN]


def run_tool(argv: Sequence[str], *, cwd: Path) -> int:
    """Runs the tool without a shell, output streaming to ours; returns its exit code."""
    try:
        pid = tool_process.start(argv, str(cwd))
    except FileNotFoundError:
        _log(f"error: tool not found: {argv[0]!r}")
        return EXIT_NOT_FOUND
    except PermissionError:
        _log(f"error: tool not executable: {argv[0]!r}")
        return EXIT_NOT_EXECUTABLE
    except OSError as err:
        if err.errno != errno.E2BIG:
            raise
        return _fail(f"the tool's command line is too long for this system ({len(argv)} arguments)")

    def forward(signum: int, frame: FrameType | None) -> None:
        del frame
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass  # it has just ended; wait() reads how

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = tool_process.wait(pid)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def _log(message: str) -> None:
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)


def _fail(message: str, code: int = EXIT_RUNNER_ERROR) -> int:
    _log(f"error: {message}")
    return code
