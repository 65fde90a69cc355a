"""Stage images as Docker image assets (built ones and public ones with the runner added), pinned by digest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import CustomResource
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct

from chalicelib.pipeline.model import PipelineSpec, Stage
from infra.constructs.runner_images import RUNNER_DOCKERFILE, RUNNER_FILES, check_runnable

RELEASE_RESOURCE_TYPE = "Custom::ConveyorRelease"
# Batch instances are x86_64 (AL2023 ECS AMIs on optimal/g4dn/g5): an image built on an
# arm64 laptop would fail there with `exec format error`.
PLATFORM = ecr_assets.Platform.LINUX_AMD64
# Never sent to a build folder's context, even inside it: local data and caches.
_LOCAL_ONLY = ("data", "output", "**/__pycache__", "**/*.pyc")


@dataclass(frozen=True)
class StageImages:
    """Image URI per stage (``repo@sha256:...``) and the release resource that resolved the digests."""

    by_stage: Mapping[str, str]
    release: CustomResource | None
    repositories: Mapping[str, ecr.IRepository] = field(default_factory=dict)  # stage -> where its image is


def _only(paths: list[str]) -> list[str]:
    """Docker-ignore patterns that keep exactly ``paths`` (files or folders) of the context."""
    keep = [p for path in paths for p in (f"!{path}", f"!{path}/**")]
    return ["*", "**/*", *keep, "**/__pycache__", "**/*.pyc"]


def _built_asset(scope: Construct, construct_id: str, build: Path, root: Path,
                 version: str) -> ecr_assets.DockerImageAsset:
    """``build:`` folder: its Dockerfile over a context of the runner's files and the folder.

    Nothing else of the repository is sent, so an edit to docs, infra or tests does not
    change the image (nor its tag, nor the job definitions).
    """
    build = build.resolve()
    if not build.is_relative_to(root):
        return ecr_assets.DockerImageAsset(scope, construct_id, directory=str(build), platform=PLATFORM,
                                           build_args={"CONVEYOR_VERSION": version})
    folder = build.relative_to(root).as_posix()
    return ecr_assets.DockerImageAsset(
        scope,
        construct_id,
        directory=str(root),
        file=f"{folder}/Dockerfile",
        exclude=[*_only([*RUNNER_FILES, folder]), *(f"{folder}/{p}" for p in _LOCAL_ONLY)],
        build_args={"CONVEYOR_VERSION": version},
        platform=PLATFORM,
    )


def _derived_asset(scope: Construct, construct_id: str, image: str, root: Path,
                   version: str) -> ecr_assets.DockerImageAsset:
    """``image:`` stage: the public image with the runner added (infra/images/runner.Dockerfile)."""
    return ecr_assets.DockerImageAsset(
        scope,
        construct_id,
        directory=str(root),
        file=RUNNER_DOCKERFILE,
        exclude=_only([*RUNNER_FILES, RUNNER_DOCKERFILE]),
        build_args={"BASE_IMAGE": image, "CONVEYOR_VERSION": version},
        platform=PLATFORM,
    )


def _source(stage: Stage) -> tuple[str, str]:
    """What makes a stage's image: ``("build", folder)`` or ``("image", public image)``."""
    return ("image", stage.image) if stage.image else ("build", str(stage.build))


def build_stage_images(
    scope: Construct,
    *,
    spec: PipelineSpec,
    version: str,
    force: bool,
    release_function_arn: str,
    release_role: iam.IRole,
    release_dependencies: list[IConstruct],
    context_root: Path,
    resource_type: str = RELEASE_RESOURCE_TYPE,
    properties: Mapping[str, str] | None = None,
) -> StageImages:
    """One image asset per distinct source; the release resource tags them and resolves digests.

    Every job command starts with Conveyor's runner (``python -m chalicelib.runner``), so
    every image needs it: a ``build:`` folder's Dockerfile copies ``chalicelib`` from the
    context (the repository root, reduced to the runner's files and the folder), and an
    ``image:`` stage gets an image derived from the public one that adds the runner. An
    image the runner cannot run in (no Python 3.11) is refused here, at synth
    (``check_runnable``), or by the derived build itself, naming the fix.

    ``cdk synth`` only stages contexts into cdk.out (no Docker); ``cdk deploy`` builds them
    for linux/amd64 and pushes them to the bootstrap ECR repository under their
    content-hash tags. The release custom resource then refuses a downgrade, adds a
    version tag and returns each image's digest, so job definitions pin
    ``repo@sha256:...``. It depends on its function and that function's role policy
    (``release_dependencies``): CloudFormation must not invoke it before it may act.
    """
    root = context_root.resolve()
    assets: dict[tuple[str, str], ecr_assets.DockerImageAsset] = {}
    for stage in spec.stages:
        source = _source(stage)
        if source in assets:
            continue
        construct_id = f"Image{len(assets)}"
        if source[0] == "image":
            check_runnable(stage.name, source[1])
            assets[source] = _derived_asset(scope, construct_id, source[1], root, version)
        else:
            assets[source] = _built_asset(scope, construct_id, Path(source[1]), root, version)
    if not assets:
        return StageImages(by_stage={}, release=None)
    for asset in assets.values():
        asset.repository.grant(release_role, "ecr:DescribeImages", "ecr:BatchGetImage", "ecr:PutImage")
    release = CustomResource(
        scope,
        "ReleaseGuard",
        service_token=release_function_arn,
        resource_type=resource_type,
        properties={
            **(properties or {}),
            "Pipeline": spec.name,
            "Version": version,
            "Force": "true" if force else "false",
            "Images": [
                {"Name": f"Image{i}", "Repository": asset.repository.repository_name, "Tag": asset.image_tag}
                for i, asset in enumerate(assets.values())
            ],
        },
    )
    for dependency in release_dependencies:
        release.node.add_dependency(dependency)
    names = {source: f"Image{i}" for i, source in enumerate(assets)}
    by_stage = {
        stage.name: f"{assets[_source(stage)].repository.repository_uri}@"
                    + release.get_att_string(names[_source(stage)] + "Digest")
        for stage in spec.stages
    }
    repositories = {stage.name: assets[_source(stage)].repository for stage in spec.stages}
    return StageImages(by_stage=by_stage, release=release, repositories=repositories)

