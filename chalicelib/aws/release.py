"""Release guard: refuses to deploy a version older than the deployed one unless forced; pins images by digest.

Runs as the ``Custom::ConveyorRelease`` resource of each pipeline stack (the ``release``
Lambda). CloudFormation sends Create/Update/Delete with the new and old properties:

* Update with ``Version`` older than ``OldResourceProperties.Version`` fails the deployment
  (and CloudFormation rolls back) unless ``Force`` is ``"true"``. A rollback sends the same
  kind of Update (old version over new); it is recognised by the stack's status
  (``UPDATE_ROLLBACK_IN_PROGRESS``) and allowed, or the rollback itself would fail.
* Every built image gets ``v<version>-<asset tag>`` as a second ECR tag (unique per image, as
  the immutable bootstrap repository needs), and its digest is returned as ``<Name>Digest``
  so job definitions reference ``repo@sha256:...``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.pipeline.errors import PipelineError

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-.+]?([0-9A-Za-z.]+))?$")
ROLLBACK_STATUSES = frozenset({"UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"})


class ReleaseError(PipelineError):
    """A release the guard refuses (downgrade without force) or cannot read (bad version)."""


def parse_version(text: str) -> tuple[int, int, int, str]:
    """``"1.2.3"`` / ``"1.2.3rc1"`` -> comparable tuple; a pre-release sorts before its release.

    Raises:
        ReleaseError: not a ``MAJOR.MINOR.PATCH[suffix]`` version.
    """
    match = _VERSION.match(text.strip())
    if not match:
        raise ReleaseError(f"Version: expected MAJOR.MINOR.PATCH, got {text!r}")
    major, minor, patch, suffix = match.groups()
    # "~" sorts after every pre-release suffix, so 1.2.3 > 1.2.3rc1.
    return int(major), int(minor), int(patch), suffix or "~"


def check_release(new: str, deployed: str | None, *, force: bool = False, rollback: bool = False) -> str:
    """Decides whether ``new`` may replace ``deployed``; returns a one-line verdict.

    Raises:
        ReleaseError: ``new`` is older than ``deployed`` and neither forced nor a rollback.
    """
    if deployed is None:
        return f"first release {new}"
    if parse_version(new) >= parse_version(deployed):
        return f"release {new} over {deployed}"
    if rollback:
        return f"rollback to {new} from {deployed}"
    if force:
        return f"forced downgrade to {new} from {deployed}"
    raise ReleaseError(
        f"refusing to deploy version {new} over the deployed {deployed}; "
        "deploy with `-c conveyor:force=true` to downgrade on purpose"
    )


@dataclass(frozen=True)
class ImageRef:
    """An image the stack built: its ECR repository and the asset tag cdk-assets pushed."""

    name: str
    repository: str
    tag: str


def version_tag(version: str, asset_tag: str) -> str:
    """``v<version>-<first 12 of the asset tag>``: one tag per image content, never reused for another.

    The CDK bootstrap repository is shared by every pipeline and has immutable tags, so a
    bare ``v<version>`` would already name another pipeline's (or an earlier build's) image.
    """
    return f"v{version}-{asset_tag[:12]}"


def _error_code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


def tag_and_pin(ecr: Any, images: Sequence[ImageRef], version: str) -> dict[str, str]:
    """Adds a version tag on each image and returns ``{"<name>Digest": "sha256:..."}``.

    The tag is a label for people; job definitions pin digests. So a tag that exists
    already, on this image (ImageAlreadyExistsException) or on another one in an
    immutable repository (ImageTagAlreadyExistsException), never fails the deployment.
    """
    data: dict[str, str] = {}
    for image in images:
        found = ecr.batch_get_image(repositoryName=image.repository, imageIds=[{"imageTag": image.tag}])
        if not found.get("images"):
            raise ReleaseError(f"image {image.repository}:{image.tag} not found (was the asset published?)")
        entry = found["images"][0]
        digest = entry["imageId"]["imageDigest"]
        media_type = entry.get("imageManifestMediaType")
        try:
            ecr.put_image(
                repositoryName=image.repository,
                imageManifest=entry["imageManifest"],
                imageTag=version_tag(version, image.tag),
                **({"imageManifestMediaType": media_type} if media_type else {}),
            )
        except Exception as err:
            if _error_code(err) not in ("ImageAlreadyExistsException", "ImageTagAlreadyExistsException"):
                raise
        data[f"{image.name}Digest"] = digest
    return data


def handle_release_event(
    event: Mapping[str, Any],
    *,
    ecr: Any,
    stack_status: Callable[[str], str],
) -> tuple[str, dict[str, str]]:
    """Applies the guard to a CloudFormation custom-resource event.

    Returns ``(physical_id, data)``. ``stack_status(stack_id)`` reads the stack's status
    (DescribeStacks), used only to recognise a rollback.

    Raises:
        ReleaseError: refused downgrade, bad properties, missing image.
    """
    props = event.get("ResourceProperties", {})
    pipeline = str(props.get("Pipeline", ""))
    physical_id = event.get("PhysicalResourceId") or f"conveyor-release-{pipeline}"
    if event.get("RequestType") == "Delete":
        return physical_id, {}
    version = str(props.get("Version", ""))
    parse_version(version)
    force = str(props.get("Force", "false")).lower() == "true"
    deployed = None
    rollback = False
    if event.get("RequestType") == "Update":
        deployed = str(event.get("OldResourceProperties", {}).get("Version", "")) or None
        if deployed and parse_version(version) < parse_version(deployed):
            rollback = stack_status(str(event.get("StackId", ""))) in ROLLBACK_STATUSES
    check_release(version, deployed, force=force, rollback=rollback)
    images = [
        ImageRef(name=str(i["Name"]), repository=str(i["Repository"]), tag=str(i["Tag"]))
        for i in props.get("Images", [])
    ]
    data = tag_and_pin(ecr, images, version)
    data["Version"] = version
    return physical_id, data
