"""Stage images as Docker image assets, plus the release resource that pins them by digest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import CustomResource
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from constructs import Construct

from chalicelib.pipeline.model import PipelineSpec

# Folders and files never sent to the Docker build context.
_EXCLUDE = ["**/__pycache__", "**/*.pyc", "data", "output", ".git", "cdk.out", "chalice.out"]
RELEASE_RESOURCE_TYPE = "Custom::ConveyorRelease"


@dataclass(frozen=True)
class StageImages:
    """Image URI per stage: ``repo@sha256:...`` for built images, the spec's URI otherwise."""

    by_stage: Mapping[str, str]
    release: CustomResource | None


def build_stage_images(
    scope: Construct,
    *,
    spec: PipelineSpec,
    version: str,
    force: bool,
    release_function_arn: str,
    release_role: iam.IRole,
) -> StageImages:
    """One DockerImageAsset per distinct ``build:`` folder; the release resource resolves digests.

    ``cdk synth`` only stages the build folder into cdk.out (no Docker needed);
    ``cdk deploy`` builds and pushes it to the bootstrap ECR repository under its
    content-hash tag. The release custom resource then refuses a downgrade, adds the
    project version as a second tag, and returns each image's digest so job
    definitions pin ``repo@sha256:...``: a re-pushed tag can never change what runs.
    """
    assets: dict[str, ecr_assets.DockerImageAsset] = {}
    stage_asset: dict[str, str] = {}
    for stage in spec.stages:
        if stage.image or not stage.build:
            continue
        if stage.build not in assets:
            assets[stage.build] = ecr_assets.DockerImageAsset(
                scope,
                f"Image{len(assets)}",
                directory=stage.build,
                exclude=_EXCLUDE,
                build_args={"CONVEYOR_VERSION": version},
            )
        stage_asset[stage.name] = stage.build
    images = [
        {"Name": f"Image{i}", "Repository": asset.repository.repository_name, "Tag": asset.image_tag}
        for i, asset in enumerate(assets.values())
    ]
    for asset in assets.values():
        asset.repository.grant(release_role, "ecr:DescribeImages", "ecr:BatchGetImage", "ecr:PutImage")
    release = CustomResource(
        scope,
        "ReleaseGuard",
        service_token=release_function_arn,
        resource_type=RELEASE_RESOURCE_TYPE,
        properties={
            "Pipeline": spec.name,
            "Version": version,
            "Force": "true" if force else "false",
            "Images": images,
        },
    )
    index = {build: f"Image{i}" for i, build in enumerate(assets)}
    by_stage: dict[str, str] = {}
    for stage in spec.stages:
        if stage.name in stage_asset:
            asset = assets[stage_asset[stage.name]]
            digest = release.get_att_string(index[stage_asset[stage.name]] + "Digest")
            by_stage[stage.name] = f"{asset.repository.repository_uri}@{digest}"
        else:
            by_stage[stage.name] = stage.image or ""
    return StageImages(by_stage=by_stage, release=release)
