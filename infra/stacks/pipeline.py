"""One per spec: bucket, table, bus, job definitions, state machine, rules, Chalice functions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Stack, Tags
from aws_cdk import aws_batch as batch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from chalicelib import settings as env
from chalicelib.pipeline.model import PipelineSpec
from infra.constructs.functions import ChaliceFunctions, json_env
from infra.constructs.images import build_stage_images
from infra.constructs.job_definitions import JobDefinitions
from infra.constructs.roles import PipelineRoles, acknowledge_wildcards
from infra.constructs.rules import PipelineRules
from infra.constructs.state_machine import AslStateMachine
from infra.constructs.storage import RUNS_INDEX, PipelineStorage, acknowledge_bucket_notifications

TABLE_ACTIONS = [
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
    "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem",
]
INBOX_PREFIX = "inbox/"
RUNS_PREFIX = "runs/"


def state_machine_name(pipeline: str) -> str:
    return f"conveyor-{pipeline}"[:80]


class PipelineStack(Stack):
    """Everything one pipeline needs on AWS, tagged with the project version.

    The state machine's ARN is built from its fixed name rather than referenced, so the
    Lambdas (which start executions) and the machine (which invokes them) do not form a
    dependency cycle; job definitions are submitted by name for the same reason.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: PipelineSpec,
        spec_path: Path,
        queues: Mapping[str, batch.IJobQueue],
        version: str,
        source_dir: Path,
        force: bool = False,
        retain_data: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("conveyor:version", version)
        Tags.of(self).add("conveyor:pipeline", spec.name)
        sm_name = state_machine_name(spec.name)
        sm_arn = self.format_arn(
            service="states", resource="stateMachine", resource_name=sm_name, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )

        storage = PipelineStorage(self, "Storage", retain=retain_data)
        self._acknowledge_bucket_notifications()
        roles = PipelineRoles(self, "Roles", function_prefix=self.stack_name)
        roles.grant_bucket(storage.bucket)
        roles.runtime.add_to_policy(iam.PolicyStatement(
            actions=TABLE_ACTIONS,
            resources=[storage.table.table_arn, f"{storage.table.table_arn}/index/{RUNS_INDEX}"],
        ))
        storage.bus.grant_put_events_to(roles.runtime)
        spec_asset = s3_assets.Asset(self, "Spec", path=str(spec_path))
        roles.runtime.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[spec_asset.bucket.arn_for_objects(spec_asset.s3_object_key)],
        ))
        self._grant_states(roles.runtime, sm_arn, sm_name)
        roles.release.add_to_policy(
            iam.PolicyStatement(actions=["cloudformation:DescribeStacks"], resources=[self.stack_id])
        )

        queue_arns = {name: queue.job_queue_arn for name, queue in queues.items()}
        functions = ChaliceFunctions(
            self,
            "Functions",
            source_dir=source_dir,
            runtime_role=roles.runtime,
            release_role=roles.release,
            environment={
                env.ENV_PIPELINE: spec.name,
                env.ENV_TABLE: storage.table.table_name,
                env.ENV_BUS: storage.bus.event_bus_name,
                env.ENV_BUCKET: storage.bucket.bucket_name,
                env.ENV_STATE_MACHINE_ARN: sm_arn,
                env.ENV_SPEC_URI: spec_asset.s3_object_url,
                env.ENV_INBOX_PREFIX: INBOX_PREFIX,
                env.ENV_RUNS_PREFIX: RUNS_PREFIX,
                env.ENV_JOB_QUEUES: json_env(queue_arns),
            },
        )
        images = build_stage_images(
            self,
            spec=spec,
            version=version,
            force=force,
            release_function_arn=functions.functions["release"].function_arn,
            release_role=roles.release,
            # The function and its role with the role's policy (ECR grants included).
            release_dependencies=[functions.app.get_resource("Release"), roles.release],
            context_root=source_dir,
        )
        job_defs = JobDefinitions(self, "JobDefinitions", spec=spec, images=images.by_stage, job_role=roles.job,
                                  version=version)
        functions.set_environment("tasks", env.ENV_JOB_DEFINITIONS, json_env(job_defs.names))
        functions.set_environment("tracker", env.ENV_JOB_DEFINITIONS, json_env(job_defs.names))
        definition_prefix = self.format_arn(
            service="batch", resource="job-definition", resource_name=f"conveyor-{spec.name}-",
        )
        roles.grant_batch(
            job_definition_arns=[self.format_arn(service="batch", resource="job-definition",
                                                 resource_name=f"{name}:*") for name in job_defs.names.values()],
            job_queue_arns=list(queue_arns.values()),
        )
        roles.acknowledge(pipeline=spec.name, stack_name=self.stack_name, state_machine=sm_name,
                          definition_names=list(job_defs.names.values()))

        machine_role = iam.Role(self, "StateMachineRole", assumed_by=iam.ServicePrincipal("states.amazonaws.com"))
        machine = AslStateMachine(
            self,
            "StateMachine",
            asl_name="pipeline",
            state_machine_name=sm_name,
            role=machine_role,
            substitutions={
                "TaskFunctionArn": functions.functions["tasks"].function_arn,
                "PipelineName": spec.name,
            },
        )
        # Only the function itself: grant_invoke would add every version (`:*`), which we never call.
        machine_role.add_to_policy(iam.PolicyStatement(
            actions=["lambda:InvokeFunction"], resources=[functions.functions["tasks"].function_arn],
        ))
        acknowledge_wildcards(machine_role, ["*"], "X-Ray and CloudWatch Logs delivery actions of Step Functions "
                              "(logs:CreateLogDelivery, ... and xray:PutTraceSegments) take no resource ARN.")
        PipelineRules(
            self,
            "Rules",
            functions=functions.functions,
            function_names=functions.function_names,
            runtime_role=roles.runtime,
            bucket_name=storage.bucket.bucket_name,
            inbox_prefix=INBOX_PREFIX,
            job_definition_prefix=definition_prefix,
            job_queue_arns=list(queue_arns.values()),
            state_machine_arn=sm_arn,
            schedule=spec.trigger.schedule,
            trigger_mode=spec.trigger.mode,
        )
        self.storage = storage
        self.state_machine = machine.state_machine
        self.job_definition_names = job_defs.names
        CfnOutput(self, "BucketName", value=storage.bucket.bucket_name)
        CfnOutput(self, "StateMachineArn", value=machine.state_machine.state_machine_arn)
        CfnOutput(self, "EventBusName", value=storage.bus.event_bus_name)
        CfnOutput(self, "TableName", value=storage.table.table_name)

    def _acknowledge_bucket_notifications(self) -> None:
        acknowledge_bucket_notifications(self)

    def _grant_states(self, role: iam.Role, sm_arn: str, sm_name: str) -> None:
        execution_arns = self.format_arn(
            service="states", resource="execution", resource_name=f"{sm_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_policy(iam.PolicyStatement(
            actions=["states:StartExecution", "states:SendTaskSuccess", "states:SendTaskFailure",
                     "states:SendTaskHeartbeat"],
            resources=[sm_arn],
        ))
        role.add_to_policy(iam.PolicyStatement(
            actions=["states:DescribeExecution", "states:StopExecution"], resources=[execution_arns],
        ))
