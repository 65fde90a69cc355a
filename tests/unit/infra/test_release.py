"""Release guard decisions: versions compare numerically, downgrades need force or a rollback."""

from __future__ import annotations

import pytest

from chalicelib.aws.release import ReleaseError, check_release, parse_version


def test_versions_compare_numerically_and_prereleases_sort_first() -> None:
    assert parse_version("0.10.0") > parse_version("0.9.9")
    assert parse_version("1.2.3") > parse_version("1.2.3rc1")
    with pytest.raises(ReleaseError, match="MAJOR.MINOR.PATCH"):
        parse_version("latest")


@pytest.mark.parametrize(
    ("new", "deployed", "kwargs", "verdict"),
    [
        ("0.1.0", None, {}, "first release 0.1.0"),
        ("0.2.0", "0.1.0", {}, "release 0.2.0 over 0.1.0"),
        ("0.1.0", "0.1.0", {}, "release 0.1.0 over 0.1.0"),
        ("0.1.0", "0.2.0", {"force": True}, "forced downgrade to 0.1.0 from 0.2.0"),
        ("0.1.0", "0.2.0", {"rollback": True}, "rollback to 0.1.0 from 0.2.0"),
    ],
)
def test_allowed_releases(new, deployed, kwargs, verdict) -> None:
    assert check_release(new, deployed, **kwargs) == verdict


def test_a_downgrade_is_refused_with_the_way_out() -> None:
    with pytest.raises(ReleaseError, match=r"refusing to deploy version 0\.1\.0 over the deployed 0\.2\.0.*force=true"):
        check_release("0.1.0", "0.2.0")
