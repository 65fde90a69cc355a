"""Placeholder substitution rules and the runner's argument contract (builder and parser agree)."""

from __future__ import annotations

import pytest

from chalicelib.pipeline.invocation import build_runner_argv, parse_runner_argv
from chalicelib.pipeline.placeholders import find_placeholders, substitute

VALUES = {"item": ["in/r1.fq", "in/r2.fq"], "out": ["out"], "qc": ["up/qc"], "key": ["s1"]}


def test_whole_argument_placeholder_expands_to_separate_arguments() -> None:
    assert substitute(["align", "{item}", "-o", "{out}"], VALUES) == ["align", "in/r1.fq", "in/r2.fq", "-o", "out"]


def test_inline_placeholder_is_space_joined_and_braces_escape() -> None:
    assert substitute(["--in={item}", "{{x}}", "Ref::title", "{key}.bam"], VALUES) == [
        "--in=in/r1.fq in/r2.fq", "{x}", "Ref::title", "s1.bam",
    ]


def test_empty_list_expands_to_no_argument_and_unknown_raises() -> None:
    assert substitute(["tool", "{qc}"], {"qc": []}) == ["tool"]
    with pytest.raises(KeyError):
        substitute(["{nope}"], VALUES)


def test_find_placeholders_skips_escapes() -> None:
    assert find_placeholders("{{a}} {b}-{c_d} ${HOME} {1}") == ["b", "c_d"]


def test_runner_argv_builder_and_parser_agree() -> None:
    argv = build_runner_argv(
        run_prefix="s3://b/runs/r1", stage="joint", tool_argv=["tool", "--", "{align}"],
        offset=0, join=True, items="s3://b/runs/r1/_joins/joint.json",
        upstream={"align": "foreach", "ref": "join"},
    )
    assert argv[:3] == ["python", "-m", "chalicelib.runner"]
    args = parse_runner_argv(argv[3:])
    assert args.run_prefix == "s3://b/runs/r1" and args.stage == "joint" and args.join
    assert args.items == "s3://b/runs/r1/_joins/joint.json"
    assert dict(args.upstream) == {"align": "foreach", "ref": "join"}
    assert args.tool_argv == ("tool", "--", "{align}")  # a "--" inside the tool command survives
    assert args.manifest_uri == "s3://b/runs/r1/manifest.json"


def test_offset_and_manifest_are_passed_through() -> None:
    argv = build_runner_argv(run_prefix="file:///r", stage="a", tool_argv=["t"], offset=20, manifest="file:///m.json")
    args = parse_runner_argv(argv[3:])
    assert (args.offset, args.manifest_uri, args.join) == (20, "file:///m.json", False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stage", "a", "--", "t"], "--run-prefix"),
        (["--run-prefix", "x", "--stage", "a"], "missing '--'"),
        (["--run-prefix", "x", "--stage", "a", "--"], "empty tool command"),
        (["--run-prefix", "x", "--stage", "a", "--upstream", "b", "--", "t"], "NAME=foreach"),
        (["--run-prefix", "x", "--stage", "a", "--items", "u", "--", "t"], "only for a join"),
        (["--run-prefix", "x", "--stage", "a", "--offset", "-1", "--", "t"], ">= 0"),
    ],
)
def test_bad_runner_arguments(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_runner_argv(argv)
