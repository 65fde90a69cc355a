"""`image:` stages: which public images the runner can run in, and the runner's files an image context carries."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.constructs.runner_images import RUNNER_DOCKERFILE, RUNNER_FILES, ImageNotRunnableError, check_runnable

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("image", [
    "public.ecr.aws/docker/library/python:3.11-slim", "python:3.12", "docker.io/library/python:3.13-alpine",
    "quay.io/biocontainers/samtools:1.19--h50ea8bc_0", "ubuntu:24.04", "123456789012.dkr.ecr.us-east-1.amazonaws.com/tool@sha256:" + "a" * 64,
])
def test_images_that_may_hold_python_are_accepted(image: str) -> None:
    check_runnable("joint", image)  # derived at deploy; its build checks python itself


@pytest.mark.parametrize(("image", "says"), [
    ("busybox:1.36", "has no Python"),
    ("public.ecr.aws/docker/library/alpine:3.20", "has no Python"),
    ("gcr.io/distroless/static-debian12", "has no Python"),
    ("scratch", "has no Python"),
    ("python:3.9-slim", "has Python 3.9"),
])
def test_images_the_runner_cannot_run_in_are_refused_naming_the_stage_and_the_fix(image: str, says: str) -> None:
    with pytest.raises(ImageNotRunnableError) as refused:
        check_runnable("joint", image)
    message = str(refused.value)
    assert message.startswith(f"stages.joint.image: {image}") and says in message
    assert f"use `build:` with a Dockerfile `FROM {image}`" in message


def test_the_derived_image_dockerfile_adds_the_runner_and_checks_python() -> None:
    text = (ROOT / RUNNER_DOCKERFILE).read_text()
    assert "FROM ${BASE_IMAGE}" in text and "COPY chalicelib /opt/conveyor/chalicelib" in text
    assert "sys.version_info < (3, 11)" in text and "import chalicelib.runner.main, boto3" in text


def test_the_runner_imports_from_the_files_an_image_context_carries_alone(tmp_path: Path) -> None:
    """What RUNNER_FILES names is all `python -m chalicelib.runner` and the S3 store import."""
    for name in RUNNER_FILES:
        source = ROOT / name
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    code = ("import sys, chalicelib.runner.main, chalicelib.objectstores.s3, chalicelib.aws_clients\n"
            "print([m.__file__ for n, m in sys.modules.items() if n.startswith('chalicelib')"
            " and not m.__file__.startswith(sys.argv[1])] or 'ok')")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, check=False,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
