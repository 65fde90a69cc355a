"""Fixture specs: every valid one loads; every invalid one reports exactly the issues its header lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.pipeline.errors import SpecValidationError
from chalicelib.pipeline.spec import load_spec

SPECS = Path(__file__).parents[2] / "fixtures" / "specs"
VALID = sorted((SPECS / "valid").glob("*.*"))
INVALID = sorted((SPECS / "invalid").glob("*.yaml"))


def expected_issues(path: Path) -> set[tuple[str, str]]:
    expected = set()
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            where, rule = line.removeprefix("# expect:").split()
            expected.add((where, rule))
    return expected


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_specs_load(path: Path) -> None:
    spec = load_spec(path)
    assert spec.stages
    assert spec.base_dir == str(path.parent.resolve())


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_specs_report_exactly_the_expected_issues(path: Path) -> None:
    expected = expected_issues(path)
    assert expected, f"{path.name} lists no '# expect:' lines"
    with pytest.raises(SpecValidationError) as caught:
        load_spec(path)
    found = {(issue.path, issue.rule) for issue in caught.value.issues}
    assert found == expected


def test_fixture_sets_are_not_empty() -> None:
    assert len(VALID) >= 3 and len(INVALID) >= 8
