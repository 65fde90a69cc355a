"""An ECR stand-in with the bootstrap repository's behaviour: immutable tags, ECR's error codes.

moto's ECR answers a re-used immutable tag with a different error than ECR does, so the
release guard is tested against this: ``put_image`` raises ``ImageTagAlreadyExistsException``
when an immutable repository's tag names another image, and ``ImageAlreadyExistsException``
when the same manifest gets the same tag again (both as botocore ClientErrors, as boto3 raises).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError


class ImageAlreadyExistsException(ClientError):
    """As boto3's modeled ``ecr.exceptions.ImageAlreadyExistsException``."""


class ImageTagAlreadyExistsException(ClientError):
    """As boto3's modeled ``ecr.exceptions.ImageTagAlreadyExistsException``."""


_MODELED = {cls.__name__: cls for cls in (ImageAlreadyExistsException, ImageTagAlreadyExistsException)}


def _error(code: str, message: str, operation: str) -> ClientError:
    cls = _MODELED.get(code, ClientError)
    return cls({"Error": {"Code": code, "Message": message}}, operation)


@dataclass
class Repository:
    immutable: bool = True
    manifests: dict[str, str] = field(default_factory=dict)  # digest -> manifest
    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest


class ImmutableEcr:
    """``batch_get_image``/``put_image`` over in-memory repositories, as a boto3 ECR client."""

    exceptions = type("Exceptions", (), dict(_MODELED))

    def __init__(self) -> None:
        self.repositories: dict[str, Repository] = {}

    def push(self, repository: str, tag: str, content: str) -> str:
        """What cdk-assets does on deploy: push an image under its asset tag; returns its digest."""
        manifest = '{"schemaVersion": 2, "config": "' + content + '"}'
        self.put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag)
        return "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()

    def batch_get_image(self, *, repositoryName: str, imageIds: list[dict[str, str]], **_: Any) -> dict[str, Any]:
        repo = self.repositories.get(repositoryName)
        if repo is None:
            raise _error("RepositoryNotFoundException", repositoryName, "BatchGetImage")
        images = []
        for image_id in imageIds:
            digest = repo.tags.get(image_id.get("imageTag", "")) or image_id.get("imageDigest")
            if digest in repo.manifests:
                images.append({"imageId": {"imageDigest": digest, "imageTag": image_id.get("imageTag")},
                               "imageManifest": repo.manifests[digest],
                               "imageManifestMediaType": "application/vnd.docker.distribution.manifest.v2+json"})
        return {"images": images, "failures": []}

    def put_image(self, *, repositoryName: str, imageManifest: str, imageTag: str, **_: Any) -> dict[str, Any]:
        repo = self.repositories.setdefault(repositoryName, Repository())
        digest = "sha256:" + hashlib.sha256(imageManifest.encode()).hexdigest()
        existing = repo.tags.get(imageTag)
        if existing == digest:
            raise _error("ImageAlreadyExistsException", f"Image with digest '{digest}' and tag '{imageTag}' "
                         "already exists", "PutImage")
        if existing is not None and repo.immutable:
            raise _error("ImageTagAlreadyExistsException", f"The image tag '{imageTag}' already exists in the "
                         f"'{repositoryName}' repository and cannot be overwritten because the repository is "
                         "immutable.", "PutImage")
        repo.manifests[digest] = imageManifest
        repo.tags[imageTag] = digest
        return {"image": {"imageId": {"imageDigest": digest, "imageTag": imageTag}}}
