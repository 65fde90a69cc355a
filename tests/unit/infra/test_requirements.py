"""requirements.txt (what `chalice package` bundles for Lambda) and pyproject.toml's runtime deps agree."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[3]
# Runtime dependencies the Lambda bundle leaves out on purpose, each with why.
NOT_BUNDLED = {
    "boto3": "the Lambda Python runtime provides boto3/botocore",
    "rich": "the CLI's tables and progress bars only",
    "orjson": "the embedded engine only (chalicelib/localbatch)",
}


def _by_name(lines: list[str]) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in lines]
    return {r.name.lower(): r for r in reqs}


def _lambda_requirements() -> dict[str, Requirement]:
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    return _by_name([line for line in lines if line])


def _runtime_dependencies() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return _by_name(project["dependencies"])


def test_every_runtime_dependency_is_bundled_or_named_as_left_out() -> None:
    runtime, bundled = _runtime_dependencies(), _lambda_requirements()
    assert set(runtime) == set(bundled) | set(NOT_BUNDLED), (sorted(runtime), sorted(bundled))
    assert not set(bundled) & set(NOT_BUNDLED)


def test_bundled_requirements_have_the_same_extras_and_floor_as_pyproject() -> None:
    runtime = _runtime_dependencies()
    for name, requirement in _lambda_requirements().items():
        assert requirement.extras == runtime[name].extras, (name, requirement, runtime[name])
        assert requirement.specifier == runtime[name].specifier, (name, requirement, runtime[name])


def test_powertools_is_bundled_with_the_tracer_extra_observability_needs() -> None:
    source = (ROOT / "chalicelib" / "observability.py").read_text()
    assert "Tracer(" in source
    assert "tracer" in _lambda_requirements()["aws-lambda-powertools"].extras
