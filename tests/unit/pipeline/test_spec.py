"""Spec loading: exact issue paths and messages, all issues at once, defaults applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.pipeline.errors import SpecIssue, SpecValidationError
from chalicelib.pipeline.model import ComputeClass, Resources, RetryRule
from chalicelib.pipeline.spec import SPOT_RETRY_RULES, load_spec


def issues_of(text: str) -> list[SpecIssue]:
    with pytest.raises(SpecValidationError) as caught:
        load_spec(text)
    return list(caught.value.issues)


def test_unknown_after_names_path_and_choices() -> None:
    issues = issues_of(
        "name: p\nstages:\n  - {name: a, command: [x]}\n  - {name: b, command: [x], after: [a, x]}\n"
    )
    assert issues == [
        SpecIssue("$.stages[1].after[1]", "known-stage", "unknown stage 'x' (expected one of: a, b)")
    ]
    assert str(issues[0]) == "$.stages[1].after[1]: unknown stage 'x' (expected one of: a, b)"


def test_schema_and_semantic_issues_are_reported_together_sorted_by_path() -> None:
    stages = "".join(f"  - {{name: s{i}, command: [x]}}\n" for i in range(10))
    text = (
        "name: p\nstages:\n"
        + stages
        + "  - {name: s10, command: [x], after: [ghost], timeout: 5}\n"
        + "  - {name: s2, command: [x]}\n"
    )
    paths = [issue.path for issue in issues_of(text)]
    # $.stages[10] sorts after $.stages[2]... numerically, not as text.
    assert paths == ["$.stages[10].after[0]", "$.stages[10].timeout", "$.stages[11].name"]


def test_self_dependency_is_a_cycle() -> None:
    issues = issues_of("name: p\nstages:\n  - {name: a, command: [x], after: [a]}\n")
    assert issues == [SpecIssue("$.stages[0].after", "acyclic", "stages form a cycle: a -> a")]


def test_bad_yaml_reports_its_line() -> None:
    issues = issues_of("name: p\nstages:\n  - name: a\n     command: [x]\n")
    assert len(issues) == 1 and issues[0].rule == "yaml"
    assert issues[0].message.startswith("line 4, column")


def test_top_level_must_be_a_mapping() -> None:
    assert issues_of("- a\n- b\n") == [SpecIssue("$", "type", "expected a mapping at the top, got list")]


def test_missing_file_is_one_issue() -> None:
    with pytest.raises(SpecValidationError) as caught:
        load_spec("/nonexistent/spec.yaml")
    assert caught.value.issues[0].rule == "file"


def test_messages_never_repeat_a_whole_document() -> None:
    big = "{" + ", ".join(f"k{i}: {'v' * 50}" for i in range(50)) + "}"
    issues = issues_of(f"name: p\nstages:\n  - {{name: a, command: {big}}}\n")
    assert issues == [SpecIssue("$.stages[0].command", "type", "expected array, got an object")]
    assert all(len(issue.message) < 200 for issue in issues)


def test_long_string_values_are_shortened() -> None:
    issues = issues_of(f"name: p\nstages:\n  - {{name: a, command: [x], compute: {'z' * 300}}}\n")
    assert issues[0].path == "$.stages[0].compute"
    assert "..." in issues[0].message and len(issues[0].message) < 120


def test_defaults_are_applied() -> None:
    spec = load_spec("name: p\nstages:\n  - {name: a, command: [run, '{item}'], foreach: item}\n")
    stage = spec.stage("a")
    assert stage.resources == Resources(vcpus=1, memory=2048, gpus=0)
    assert stage.compute is ComputeClass.SPOT
    assert stage.retry.attempts == 10
    assert stage.retry.evaluate_on_exit == SPOT_RETRY_RULES
    assert stage.retry.evaluate_on_exit[0] == RetryRule("RETRY", on_status_reason="Host EC2*")
    assert stage.retry.evaluate_on_exit[-1] == RetryRule("EXIT", on_reason="*")
    assert stage.timeout is None and stage.foreach and not stage.after


@pytest.mark.parametrize("compute", ["on-demand", "gpu"])
def test_on_demand_and_gpu_default_to_one_attempt(compute: str) -> None:
    spec = load_spec(f"name: p\nstages:\n  - {{name: a, command: [x], compute: {compute}}}\n")
    assert spec.stage("a").retry.attempts == 1
    assert spec.stage("a").retry.evaluate_on_exit == ()


def test_attempts_alone_keep_spot_rules_and_rules_replace_them() -> None:
    spec = load_spec(
        "name: p\nstages:\n"
        "  - {name: a, command: [x], retries: {attempts: 3}}\n"
        "  - {name: b, command: [x], retries: {evaluate_on_exit: [{action: exit, on_exit_code: '1'}]}}\n"
    )
    assert spec.stage("a").retry.attempts == 3
    assert spec.stage("a").retry.evaluate_on_exit == SPOT_RETRY_RULES
    assert spec.stage("b").retry.attempts == 10
    assert spec.stage("b").retry.evaluate_on_exit == (RetryRule("EXIT", on_exit_code="1"),)


def test_defaults_block_merges_per_key() -> None:
    spec = load_spec(
        "name: p\n"
        "defaults: {resources: {memory: 512, vcpus: 2}, compute: on-demand, timeout: 600,\n"
        "           environment: {A: 1, B: x}, image: repo/img:1}\n"
        "stages:\n"
        "  - {name: a, command: [x], resources: {vcpus: 4}, environment: {B: y, C: true}}\n"
        "  - {name: b, command: [x], image: other:2, compute: spot}\n"
    )
    a, b = spec.stage("a"), spec.stage("b")
    assert a.resources == Resources(vcpus=4, memory=512, gpus=0)
    assert a.compute is ComputeClass.ON_DEMAND and a.retry.attempts == 1
    assert a.timeout == 600 and a.image == "repo/img:1"
    assert a.env == {"A": "1", "B": "y", "C": "true"}
    assert b.image == "other:2" and b.compute is ComputeClass.SPOT and b.retry.attempts == 10


def test_build_folder_resolves_next_to_the_spec_file(tmp_path: Path) -> None:
    root = tmp_path
    (root / "tools").mkdir()
    spec_file = root / "p.yaml"
    spec_file.write_text(
        "name: p\nstages:\n  - {name: a, command: [x], build: tools}\n  - {name: b, command: [x], build: gone}\n"
    )
    with pytest.raises(SpecValidationError) as caught:
        load_spec(spec_file)
    assert [(i.path, i.rule) for i in caught.value.issues] == [("$.stages[1].build", "build-folder")]
    spec_file.write_text("name: p\nstages:\n  - {name: a, command: [x], build: tools}\n")
    assert load_spec(spec_file).stage("a").build == str((root / "tools").resolve())


def test_items_group_by_sample_alias_and_bad_group_regex() -> None:
    spec = load_spec("name: p\nitems: {source: 's3://b/reads', group_by: sample}\nstages:\n  - {name: a, command: [x]}\n")
    assert spec.items.source == "s3://b/reads"
    assert spec.items.group is not None and "(?P<key>" in spec.items.group
    issues = issues_of("name: p\nitems: {source: x, group: '(.+)_R1'}\nstages:\n  - {name: a, command: [x]}\n")
    assert [(i.path, i.rule) for i in issues] == [("$.items.group", "regex")]


def test_json_text_is_accepted() -> None:
    spec = load_spec('{"name": "p", "stages": [{"name": "a", "command": ["x"], "foreach": "item"}]}')
    assert spec.stage_names == ("a",)


def test_placeholder_may_name_an_indirect_upstream() -> None:
    spec = load_spec(
        "name: p\nstages:\n"
        "  - {name: a, command: [x], foreach: item}\n"
        "  - {name: b, command: [x, '{a}'], foreach: item, after: [a]}\n"
        "  - {name: c, command: [x, '{a}', '{b}', '{{literal}}'], after: [b]}\n"
    )
    assert spec.stage("c").after == ("b",)


def test_defaults_image_and_build_are_checked_too(tmp_path: Path) -> None:
    spec_file = tmp_path / "p.yaml"
    spec_file.write_text("name: p\ndefaults: {image: x, build: missing}\nstages:\n  - {name: a, command: [x]}\n")
    with pytest.raises(SpecValidationError) as caught:
        load_spec(spec_file)
    assert [(i.path, i.rule) for i in caught.value.issues] == [
        ("$.defaults.build", "build-folder"),
        ("$.defaults.build", "image-or-build"),
    ]
