"""Item as a value, SpecIssue's order, and the runner's hand-written argument parser."""

from __future__ import annotations

import copy
import pickle

import pytest

from chalicelib.pipeline.errors import SpecIssue, SpecValidationError
from chalicelib.pipeline.invocation import parse_runner_argv
from chalicelib.pipeline.item import Item
from chalicelib.pipeline.model import Item as ModelItem


def test_item_is_an_immutable_value() -> None:
    item = Item(key="s1", files=("file:///a", "file:///b"))
    assert ModelItem is Item  # model.py re-exports the one class
    assert item == Item("s1", ("file:///a", "file:///b")) and hash(item) == hash(Item("s1", ("file:///a", "file:///b")))
    assert item != Item("s1", ("file:///a",)) and item != ("s1", ("file:///a", "file:///b"))
    assert repr(item) == "Item(key='s1', files=('file:///a', 'file:///b'))"
    with pytest.raises(AttributeError):
        item.key = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del item.files
    assert copy.deepcopy(item) == item and pickle.loads(pickle.dumps(item)) == item
    assert Item.from_dict(item.to_dict()) == item and item.to_dict() == {"key": "s1", "files": ["file:///a", "file:///b"]}
    assert len({item, Item("s1", ("file:///a", "file:///b"))}) == 1


def test_spec_issues_sort_and_print_as_before() -> None:
    issues = [SpecIssue("$.stages[10].name", "unique", "b"), SpecIssue("$.stages[2].name", "unique", "a")]
    assert sorted(issues)[0].path == "$.stages[10].name"  # plain order: by path text, then rule, then message
    error = SpecValidationError(issues)
    assert [issue.path for issue in error.issues] == ["$.stages[2].name", "$.stages[10].name"]  # numeric order
    assert str(issues[1]) == "$.stages[2].name: a"
    with pytest.raises(AttributeError):
        issues[0].path = "x"  # type: ignore[misc]


BASE = ["--run-prefix", "file:///r", "--stage", "a"]


def test_options_take_the_equals_form_and_the_last_value_wins() -> None:
    args = parse_runner_argv(["--run-prefix=file:///r", "--stage", "a", "--stage=b", "--offset=7", "--scratch", "/s",
                              "--keep-scratch", "--upstream", "x=foreach", "--upstream=y=join", "--", "t", "--stage"])
    assert (args.run_prefix, args.stage, args.offset, args.scratch, args.keep_scratch) == ("file:///r", "b", 7, "/s", True)
    assert dict(args.upstream) == {"x": "foreach", "y": "join"}
    assert args.tool_argv == ("t", "--stage") and args.manifest is None and not args.join
    assert dict(parse_runner_argv([*BASE, "--", "t"]).upstream) == {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*BASE, "--bogus", "--", "t"], "unrecognized argument: '--bogus'"),
        ([*BASE, "stray", "--", "t"], "unrecognized argument: 'stray'"),
        ([*BASE, "--manifest", "--", "t"], "--manifest: expected one argument"),
        (["--run-prefix", "--stage", "a", "--", "t"], "--run-prefix: expected one argument"),
        ([*BASE, "--offset", "ten", "--", "t"], "invalid int value: 'ten'"),
        ([*BASE, "--join=yes", "--", "t"], "unrecognized argument"),
        (["--run-prefix", "x", "--", "t"], "required: --stage"),
        (["--", "t"], "required: --run-prefix, --stage"),
    ],
)
def test_bad_arguments_name_the_option(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_runner_argv(argv)
