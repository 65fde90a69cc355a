"""The release guard against ECR as `cdk bootstrap` creates it: one shared repository, immutable tags."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from chalicelib.aws.release import handle_release_event
from tests.unit.infra.ecr_standin import ImmutableEcr, Repository

BOOTSTRAP_REPO = "cdk-hnb659fds-container-assets-123456789012-us-east-1"


def _event(pipeline: str, images: list[dict[str, str]], request: str = "Create", old_version: str = "0.1.0",
           version: str = "0.1.0") -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": request, "StackId": f"arn:aws:cloudformation:us-east-1:123456789012:stack/{pipeline}/x",
        "ResourceProperties": {"Pipeline": pipeline, "Version": version, "Force": "false", "Images": images},
    }
    if request == "Update":
        event["OldResourceProperties"] = {**event["ResourceProperties"], "Version": old_version}
        event["PhysicalResourceId"] = f"conveyor-release-{pipeline}"
    return event


def _deploy(ecr: ImmutableEcr, pipeline: str, contents: dict[str, str], **kwargs: Any) -> dict[str, str]:
    """cdk-assets pushes each image under its content-hash tag, then the release resource runs."""
    images = []
    for name, content in contents.items():
        tag = hashlib.sha256(content.encode()).hexdigest()
        if tag not in ecr.repositories.get(BOOTSTRAP_REPO, Repository()).tags:  # cdk-assets skips pushed tags
            ecr.push(BOOTSTRAP_REPO, tag, content)
        images.append({"Name": name, "Repository": BOOTSTRAP_REPO, "Tag": tag})
    _, data = handle_release_event(_event(pipeline, images, **kwargs), ecr=ecr, stack_status=lambda _: "UPDATE_IN_PROGRESS")
    return data


def test_the_stand_in_raises_what_ecr_raises_on_an_immutable_tag() -> None:
    ecr = ImmutableEcr()
    ecr.push(BOOTSTRAP_REPO, "v0.1.0", "a")
    with pytest.raises(Exception, match="ImageTagAlreadyExistsException"):
        ecr.push(BOOTSTRAP_REPO, "v0.1.0", "b")


def test_two_pipelines_and_two_deploys_of_changed_images_in_one_immutable_repository() -> None:
    ecr = ImmutableEcr()
    first = _deploy(ecr, "genomics", {"Image0": "genomics tools", "Image1": "report tool"})
    other = _deploy(ecr, "imaging", {"Image0": "imaging tools"})
    # A redeploy after a change to the image context, same version: a new image, a new tag.
    changed = _deploy(ecr, "genomics", {"Image0": "genomics tools, edited", "Image1": "report tool"},
                      request="Update")
    again = _deploy(ecr, "genomics", {"Image0": "genomics tools, edited", "Image1": "report tool"},
                    request="Update")
    digests = {first["Image0Digest"], first["Image1Digest"], other["Image0Digest"], changed["Image0Digest"]}
    assert len(digests) == 4
    assert changed["Image1Digest"] == first["Image1Digest"] and again == changed
    version_tags = [t for t in ecr.repositories[BOOTSTRAP_REPO].tags if t.startswith("v0.1.0-")]
    assert len(version_tags) == 4  # one per distinct image, none overwritten


def test_a_version_tag_already_on_another_image_does_not_fail_the_deployment() -> None:
    ecr = ImmutableEcr()
    tag = f"{7:064d}"
    ecr.push(BOOTSTRAP_REPO, tag, "image")
    ecr.push(BOOTSTRAP_REPO, f"v0.1.0-{tag[:12]}", "someone else's image")
    images = [{"Name": "Image0", "Repository": BOOTSTRAP_REPO, "Tag": tag}]
    _, data = handle_release_event(_event("genomics", images), ecr=ecr, stack_status=lambda _: "")
    assert data["Image0Digest"] == ecr.repositories[BOOTSTRAP_REPO].tags[tag]
