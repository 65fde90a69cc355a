"""What an image needs for Conveyor's runner, and the synth-time refusal of images it cannot run in."""

from __future__ import annotations

import re

# The runner's files (python -m chalicelib.runner): its package, the core it reads specs and
# manifests with, the object stores, and the client factory the S3 store uses. Image
# contexts hold these and nothing else of the repository (tests/unit/infra check that the
# runner imports from exactly these).
RUNNER_FILES = [
    "chalicelib/__init__.py",
    "chalicelib/settings.py",
    "chalicelib/aws_clients.py",
    "chalicelib/runner",
    "chalicelib/pipeline",
    "chalicelib/objectstores",
]
RUNNER_DOCKERFILE = "infra/images/runner.Dockerfile"
MIN_PYTHON = (3, 11)

# Images known to have no Python at all (repository names, registry and tag aside).
_NO_PYTHON = re.compile(
    r"^(scratch|busybox|alpine|hello-world|distroless/(static|base|cc|java\d*|nodejs\d*)(-debian\d+)?)$"
)
_PYTHON_TAG = re.compile(r"^(\d+)\.(\d+)")


class ImageNotRunnableError(ValueError):
    """A stage's ``image:`` cannot run Conveyor's runner; the message names the stage and the fix."""


def _repository_and_tag(image: str) -> tuple[str, str]:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    repository = name[: len(name) - len(tag) - 1] if ":" in last else name
    parts = repository.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]  # a registry host
    if parts[:2] == ["docker", "library"] or parts[:1] == ["library"]:
        parts = parts[2:] if parts[0] == "docker" else parts[1:]
    return "/".join(parts), tag


def check_runnable(stage: str, image: str) -> None:
    """Refuses, at synth, an image the runner cannot run in: one without Python >= 3.11.

    Only what the name shows is judged here (no registry is reached at synth): images
    without Python, and ``python`` images older than 3.11. Any other image is built into a
    derived image whose build checks ``python`` itself and fails naming the same fix.

    Raises:
        ImageNotRunnableError: the image has no Python, or too old a ``python`` tag.
    """
    repository, tag = _repository_and_tag(image)
    fix = (f"use `build:` with a Dockerfile `FROM {image}` that installs Python "
           f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}+, or an image that has it")
    if _NO_PYTHON.match(repository):
        raise ImageNotRunnableError(
            f"stages.{stage}.image: {image} has no Python, so Conveyor's runner (python -m chalicelib.runner, "
            f"which every job command starts with) cannot run in it; {fix}"
        )
    version = _PYTHON_TAG.match(tag)
    if repository.rsplit("/", 1)[-1] == "python" and version:
        found = (int(version.group(1)), int(version.group(2)))
        if found < MIN_PYTHON:
            raise ImageNotRunnableError(
                f"stages.{stage}.image: {image} has Python {found[0]}.{found[1]}; Conveyor's runner needs "
                f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}+; {fix}"
            )
