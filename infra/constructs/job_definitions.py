"""Batch job definitions made from the spec through the same builder the local submitter uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import CfnResource
from aws_cdk import aws_iam as iam
from constructs import Construct

from chalicelib.pipeline.model import PipelineSpec
from chalicelib.pipeline.payloads import definition_name, to_job_definition

# Keys whose values are user maps (names must not be re-cased).
_VERBATIM = frozenset({"parameters", "tags"})


def to_cfn_properties(request: Mapping[str, Any]) -> dict[str, Any]:
    """RegisterJobDefinition request (camelCase) -> AWS::Batch::JobDefinition properties (PascalCase)."""
    return {_pascal(key): (dict(value) if key in _VERBATIM else _convert(value)) for key, value in request.items()}


def _convert(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {_pascal(k): _convert(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(v) for v in value]
    return value


def _pascal(key: str) -> str:
    return key[:1].upper() + key[1:]


class JobDefinitions(Construct):
    """One ``AWS::Batch::JobDefinition`` per stage, named as the submitter expects.

    The request comes from ``payloads.to_job_definition`` (resources, retries, timeout,
    environment, runner command), so AWS and the local engine run the same definition;
    CDK only swaps in the pinned image, the job role and the version tag.
    ``names`` maps each stage to its definition name (submits use the latest ACTIVE
    revision of that name, which is the one this deployment registered).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: PipelineSpec,
        images: Mapping[str, str],
        job_role: iam.IRole,
        version: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.names: dict[str, str] = {}
        self.resources: dict[str, CfnResource] = {}
        for index, stage in enumerate(spec.stages):
            request = to_job_definition(spec, stage)
            request["containerProperties"]["image"] = images[stage.name]
            request["containerProperties"]["jobRoleArn"] = job_role.role_arn
            request["platformCapabilities"] = ["EC2"]
            request["propagateTags"] = True
            request["tags"] = {**request.get("tags", {}), "conveyor:version": version}
            name = definition_name(spec.name, stage.name)
            self.names[stage.name] = name
            self.resources[stage.name] = CfnResource(
                self, f"Stage{index}", type="AWS::Batch::JobDefinition", properties=to_cfn_properties(request)
            )
