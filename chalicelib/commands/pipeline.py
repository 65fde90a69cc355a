"""Pipeline commands (run, validate, plan, runs, run-status, rerun).

``validate`` and ``plan`` (spec checking and planning, no engine) are
registered by ``_register_validate_plan``; the run family by
``_register_run_commands``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chalicelib.commands.items_check import missing_items_path
from chalicelib.commands.plan_render import render_issues, render_plan, render_valid
from chalicelib.objectstores import open_store
from chalicelib.pipeline.errors import PipelineError, SpecValidationError
from chalicelib.pipeline.items import discover
from chalicelib.pipeline.planner import DEFAULT_ARRAY_LIMIT, DEFAULT_DEPENDENCY_LIMIT, plan
from chalicelib.pipeline.spec import load_spec


def register(commands: Any) -> None:
    """Adds the pipeline sub-commands to the `conveyor` parser."""
    _register_validate_plan(commands)
    _register_run_commands(commands)


def _register_run_commands(commands: Any) -> None:
    from chalicelib.commands.runs import register_run_commands

    register_run_commands(commands)


# --- validate / plan -------------------------------------------------------


def _register_validate_plan(commands: Any) -> None:
    validate = commands.add_parser(
        "validate",
        help="check a pipeline spec and report every problem",
        description="Checks a pipeline spec (schema and semantic rules); prints every problem with its path.",
    )
    validate.add_argument("spec", help="pipeline spec file (YAML or JSON)")
    validate.add_argument("--items", help="also list these items (folder, file:// or s3:// prefix, or manifest)")
    validate.set_defaults(handler=handle_validate)

    plan_cmd = commands.add_parser(
        "plan",
        help="show the Batch jobs and dependencies a run would submit",
        description="Plans a run of SPEC over its items and prints the jobs and dependencies, submitting nothing.",
    )
    plan_cmd.add_argument("spec", help="pipeline spec file (YAML or JSON)")
    plan_cmd.add_argument("--items", help="items folder, file:// or s3:// prefix, or manifest (overrides the spec)")
    plan_cmd.add_argument("--run-id", help="run id used in job names (default: a placeholder, RUN_ID)")
    plan_cmd.add_argument("--array-limit", type=_positive, default=DEFAULT_ARRAY_LIMIT,
                          help=f"largest array job (default {DEFAULT_ARRAY_LIMIT}, AWS's limit)")
    plan_cmd.add_argument("--dependency-limit", type=_positive, default=DEFAULT_DEPENDENCY_LIMIT,
                          help=f"most dependencies per job (default {DEFAULT_DEPENDENCY_LIMIT}, AWS's limit)")
    plan_cmd.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan_cmd.set_defaults(handler=handle_plan)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def handle_validate(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.spec)
    except SpecValidationError as err:
        print(render_issues(err.issues))
        return 1
    print(render_valid(spec))
    if args.items is None:
        return 0
    problem = missing_items_path(args.items)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:
        items = discover(spec.items, args.items, store_factory=open_store)
    except PipelineError as err:
        print(f"error: items: {err}", file=sys.stderr)
        return 1
    print(f"items: {len(items)} ({', '.join(item.key for item in items[:5])}{', ...' if len(items) > 5 else ''})")
    return 0


def handle_plan(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.spec)
    except SpecValidationError as err:
        print(render_issues(err.issues))
        return 1
    problem = missing_items_path(args.items)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:
        items = discover(spec.items, args.items, store_factory=open_store)
        planned = plan(
            spec,
            len(items),
            run_id=args.run_id or "RUN_ID",
            array_limit=args.array_limit,
            dependency_limit=args.dependency_limit,
        )
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(planned.to_dict(), indent=2))
    else:
        print(render_plan(planned))
    return 0
