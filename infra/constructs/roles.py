"""IAM roles of a pipeline stack: Lambda runtime, release guard, state machine, Batch jobs; no `*` actions."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, ArnFormat, Stack, Token, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

OBJECT_READ_WRITE = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
BUCKET_LIST = ["s3:ListBucket", "s3:GetBucketLocation"]
# Publishing removes an earlier, interrupted attempt's leftovers under the output prefix
# (chalicelib/objectstores/s3.py, DeleteObjects). S3 reports a denied delete inside a 200
# answer (and Quiet mode hides it), so without this grant stale outputs mix in silently.
JOB_OBJECT_DELETE = ["s3:DeleteObject"]


def _ack(construct: Construct, rule: str, reason: str) -> None:
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))


def acknowledge_wildcards(construct: Construct, resources: Sequence[str], reason: str) -> None:
    """Acknowledges AwsSolutions-IAM5 for exactly these wildcard resources (cdk-nag's finding ids)."""
    for resource in resources:
        _ack(construct, f"AwsSolutions-IAM5[Resource::{resource}]", reason)


def logical_ref(construct: Construct) -> str:
    """``<LogicalId.Arn>``: how cdk-nag spells a GetAtt Arn in finding ids."""
    default_child = construct.node.default_child
    assert default_child is not None
    return "<" + Stack.of(construct).resolve(default_child.logical_id) + ".Arn>"  # type: ignore[attr-defined]


def arn_prefix(scope: Construct, service: str) -> str:
    """How cdk-nag spells ``arn:<partition>:<service>:<region>:<account>:`` in finding ids.

    Region and account appear literally when the stack's environment resolves them (the
    CDK CLI sets CDK_DEFAULT_REGION) and as ``<AWS::Region>``-style references otherwise.
    """
    stack = Stack.of(scope)
    region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
    account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
    return f"arn:<AWS::Partition>:{service}:{region}:{account}:"


def _lambda_basics(scope: Construct, role: iam.Role, name_prefix: str) -> None:
    stack = Stack.of(scope)
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=f"/aws/lambda/{name_prefix}*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                ),
            ],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"], resources=["*"])
    )


class PipelineRoles(Construct):
    """Roles created before the resources that use them, so ARNs can be passed to Chalice."""

    def __init__(self, scope: Construct, construct_id: str, *, function_prefix: str) -> None:
        super().__init__(scope, construct_id)
        lambda_principal = iam.ServicePrincipal("lambda.amazonaws.com")
        self.runtime = iam.Role(self, "Runtime", assumed_by=lambda_principal,
                                description="Conveyor Lambdas: tasks, tracker, trigger, cleanup, API")
        self.release = iam.Role(self, "Release", assumed_by=lambda_principal,
                                description="Conveyor release guard (custom resource)")
        self.job = iam.Role(self, "Job", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                            description="Conveyor Batch jobs: the runner reads inputs and writes outputs")
        for role in (self.runtime, self.release):
            _lambda_basics(self, role, function_prefix)
        self.function_prefix = function_prefix

    def grant_bucket(self, bucket: s3.Bucket) -> None:
        """Object read/write on the pipeline bucket for the Lambdas and the jobs."""
        for role in (self.runtime, self.job):
            role.add_to_policy(iam.PolicyStatement(actions=BUCKET_LIST, resources=[bucket.bucket_arn]))
            actions = OBJECT_READ_WRITE + (JOB_OBJECT_DELETE if role is self.job else [])
            role.add_to_policy(iam.PolicyStatement(actions=actions, resources=[bucket.arn_for_objects("*")]))
            acknowledge_wildcards(
                role, [logical_ref(bucket) + "/*"],
                "Objects of this stack's own pipeline bucket: runs read inputs and write outputs under any key.",
            )

    def grant_batch(self, *, job_definition_arns: Sequence[str], job_queue_arns: Sequence[str]) -> None:
        """Submit against this pipeline's definitions and queues; describe/list/terminate jobs."""
        self.runtime.add_to_policy(
            iam.PolicyStatement(actions=["batch:SubmitJob"], resources=[*job_definition_arns, *job_queue_arns])
        )
        # SubmitJob with tags also needs TagResource on the job being created.
        self.runtime.add_to_policy(
            iam.PolicyStatement(actions=["batch:TagResource"], resources=[self._jobs_arn()])
        )
        self.runtime.add_to_policy(
            iam.PolicyStatement(
                actions=["batch:DescribeJobs", "batch:ListJobs", "batch:TerminateJob", "batch:DescribeJobDefinitions"],
                resources=["*"],
            )
        )

    def _jobs_arn(self) -> str:
        return Stack.of(self).format_arn(service="batch", resource="job", resource_name="*")

    def acknowledge(self, *, pipeline: str, stack_name: str, state_machine: str,
                    definition_names: Sequence[str]) -> None:
        """Justifications for the wildcard findings these roles produce, made where they arise."""
        batch = arn_prefix(self, "batch")
        acknowledge_wildcards(
            self.runtime,
            [batch + f"job-definition/{name}:*" for name in definition_names],
            f"Every revision of pipeline {pipeline}'s own job definitions (submits use the latest ACTIVE one).",
        )
        acknowledge_wildcards(
            self.runtime,
            [batch + "job/*"],
            "Tag-on-create of the jobs this pipeline submits: their ids do not exist before SubmitJob.",
        )
        acknowledge_wildcards(
            self.runtime,
            [arn_prefix(self, "states") + f"execution:{state_machine}:*"],
            "Executions of this stack's own state machine (describe/stop by execution ARN).",
        )
        acknowledge_wildcards(
            self.runtime,
            ["*"],
            "batch:DescribeJobs, ListJobs, TerminateJob, DescribeJobDefinitions and xray:PutTraceSegments/"
            "PutTelemetryRecords support no resource-level permissions (AWS service authorization reference).",
        )
        acknowledge_wildcards(
            self.release, ["*"], "xray:PutTraceSegments/PutTelemetryRecords support no resource-level permissions."
        )
        for role in (self.runtime, self.release):
            acknowledge_wildcards(
                role,
                [arn_prefix(self, "logs") + f"log-group:/aws/lambda/{stack_name}*"],
                "Log groups of this stack's own Lambda functions (their names start with the stack name).",
            )
