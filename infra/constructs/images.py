"""Stage images as Docker image assets, plus the release resource that pins them by digest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import CustomResource
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from constructs import Construct

from chalicelib.pipeline.model import PipelineSpec

# Never sent to the Docker build context (the repository root): environments, caches,
# build outputs, local data. The stage's own build folder is re-included explicitly.
_EXCLUDE = [
    ".git", ".venv", "node_modules", "cdk.out", "chalice.out", ".chalice", "**/__pycache__", "**/*.pyc",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", "conveyor-data", "data", "bench", "docs", "tests",
    "examples/*/data", "examples/*/output", "*.egg-info", "tmp*",
]
_LOCAL_ONLY = ("data", "output", "**/__pycache__", "**/*.pyc")
RELEASE_RESOURCE_TYPE = "Custom::ConveyorRelease"


@dataclass(frozen=True)
class StageImages:
    """Image URI per stage: ``repo@sha256:...`` for built images, the spec's URI otherwise."""

    by_stage: Mapping[str, str]
    release: CustomResource | None


def _image_asset(
    scope: Construct, construct_id: str, build: Path, context_root: Path, version: str
) -> ecr_assets.DockerImageAsset:
    build = build.resolve()
    root = context_root.resolve()
    if not build.is_relative_to(root):
        return ecr_assets.DockerImageAsset(
            scope, construct_id, directory=str(build), build_args={"CONVEYOR_VERSION": version}
        )
    folder = build.relative_to(root).as_posix()
    return ecr_assets.DockerImageAsset(
        scope,
        construct_id,
        directory=str(root),
        file=f"{folder}/Dockerfile",
        # Later patterns win: the build folder comes back even when under an excluded one,
        # minus its local data and outputs (the genomics example keeps ~100 MB there).
        exclude=[*_EXCLUDE, f"!{folder}", f"!{folder}/**", *(f"{folder}/{p}" for p in _LOCAL_ONLY)],
        build_args={"CONVEYOR_VERSION": version},
    )


def build_stage_images(
    scope: Construct,
    *,
    spec: PipelineSpec,
    version: str,
    force: bool,
    release_function_arn: str,
    release_role: iam.IRole,
    context_root: Path,
) -> StageImages:
    """One DockerImageAsset per distinct ``build:`` folder; the release resource resolves digests.

    Every job command starts with Conveyor's runner (``python -m chalicelib.runner``), so an
    image needs ``chalicelib``: the build context is ``context_root`` (the repository) and
    the Dockerfile is ``<build folder>/Dockerfile``, as in ``docker build -f
    <folder>/Dockerfile .``. A build folder outside the repository is its own context.

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
            assets[stage.build] = _image_asset(scope, f"Image{len(assets)}", Path(stage.build), context_root, version)
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


# The stream stack builds its images the same way (infra/stacks/stream.py).
image_asset = _image_asset
