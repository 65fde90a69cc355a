"""One per stream spec: bucket, item table, bus, and per stage an SQS queue pair and an ECS service of workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Acknowledgment, CfnOutput, CustomResource, Duration, RemovalPolicy, Stack, Tags, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from chalicelib.pipeline.stream.settings import StreamSpec
from infra.constructs.images import build_stage_images
from infra.constructs.roles import acknowledge_wildcards, logical_ref
from infra.constructs.storage import PipelineStorage, acknowledge_bucket_notifications
from infra.constructs.stream_stage import StageWiring, StreamStageService, make_stage_queues

INBOX_PREFIX = "inbox/"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds chalicelib/
RUNS_PREFIX = "runs/"


class StreamStack(Stack):
    """A stream pipeline on ECS: uploads under ``inbox/`` reach the entry stages' queues through an
    EventBridge rule; each stage's workers (the core's worker loop) pass items on by message."""

    def __init__(self, scope: Construct, construct_id: str, *, spec: StreamSpec, version: str, source_dir: Path,
                 vpc: ec2.IVpc, subnets: ec2.SubnetSelection, security_group: ec2.ISecurityGroup,
                 force: bool = False, smoke_sample: Path | None = None, retain_data: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("conveyor:pipeline", spec.name)
        storage = PipelineStorage(self, "Storage", retain=retain_data)
        items = dynamodb.Table(
            self, "Items", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST, time_to_live_attribute="expiresAt",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            removal_policy=RemovalPolicy.RETAIN if retain_data else RemovalPolicy.DESTROY,
        )
        cluster = ecs.Cluster(self, "Cluster", vpc=vpc, enable_fargate_capacity_providers=True,
                              container_insights_v2=ecs.ContainerInsights.ENABLED)
        run_id = f"{spec.name}-stream"
        wiring = StageWiring(pipeline=spec.name, run_id=run_id, bucket=storage.bucket, inbox_prefix=INBOX_PREFIX,
                             run_prefix=f"{RUNS_PREFIX}{run_id}/", items_table=items, bus=storage.bus,
                             cluster=cluster, subnets=subnets, security_group=security_group)
        names = spec.pipeline.stage_names
        queues = {name: make_stage_queues(self, f"Stage{i}", spec.settings[name]) for i, name in enumerate(names)}
        self.deploy_function = self._deploy_function()
        images = self._images(spec, version, source_dir, force)
        self.services: dict[str, StreamStageService] = {}
        for i, name in enumerate(names):
            stage = spec.stage(name)
            self.services[name] = StreamStageService(
                self, f"Stage{i}Workers", stage=name, command=list(stage.command),
                environment={k: str(v) for k, v in stage.env.items()}, vcpus=stage.resources.vcpus,
                memory=stage.resources.memory, settings=spec.settings[name], image=images[name],
                queues=queues[name], downstream={down: queues[down].queue for down in spec.downstream(name)},
                entry=name in spec.entry_stages, wiring=wiring,
            )
            # from_registry (a digest) grants nothing by itself: the task pulls from the asset repository.
            self._repositories[name].grant_pull(
                self.services[name].task_definition.obtain_execution_role())
        self._route_arrivals(spec, storage, queues)
        if smoke_sample is not None:
            self._smoke(spec, smoke_sample, storage, items, wiring)
        self._acknowledge(cluster, storage, wiring)
        acknowledge_bucket_notifications(self)
        self.queues = queues
        CfnOutput(self, "BucketName", value=storage.bucket.bucket_name)
        CfnOutput(self, "EventBusName", value=storage.bus.event_bus_name)
        CfnOutput(self, "ItemsTableName", value=items.table_name)
        for i, name in enumerate(names):
            CfnOutput(self, f"Stage{i}QueueUrl", value=queues[name].queue.queue_url, description=f"stage {name}")

    def _deploy_function(self) -> lambda_.Function:
        """The Lambda behind the release guard and the smoke item (chalicelib/aws/stream_deploy.py)."""
        role = iam.Role(self, "DeployRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        # The function names its log group (not the reverse), so the role's policy can name it too
        # without a dependency cycle.
        log_group = logs.LogGroup(self, "DeployLogs", retention=logs.RetentionDays.ONE_MONTH,
                                  removal_policy=RemovalPolicy.DESTROY)
        function = lambda_.Function(
            self, "DeployFunction", runtime=lambda_.Runtime.PYTHON_3_11, timeout=Duration.minutes(15),
            handler="chalicelib.aws.stream_deploy.handler", role=role, memory_size=256, log_group=log_group,
            # Only the bare package: the handler needs nothing beyond the Python runtime and boto3.
            code=lambda_.Code.from_asset(str(PACKAGE_ROOT), exclude=["*", ".*", "!chalicelib", "!chalicelib/**",
                                                                       "**/__pycache__", "**/*.pyc", "**/*.c"]),
            description="Conveyor stream deploys: release guard and smoke item",
        )
        self._deploy_logs_id = log_group.node.default_child.logical_id  # type: ignore[union-attr]
        role.add_to_policy(iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                               resources=[f"{log_group.log_group_arn}:*"]))
        role.add_to_policy(iam.PolicyStatement(actions=["cloudformation:DescribeStacks"], resources=[self.stack_id]))
        return function

    def _images(self, spec: StreamSpec, version: str, source_dir: Path, force: bool) -> dict[str, ecs.ContainerImage]:
        """The batch stacks' images and release guard (digest pins), answered by the deploy function.

        The worker loop runs inside the stage's image (python -m chalicelib.aws.stream_worker): a
        `build:` image holds chalicelib; a public `image:` gets it added, as batch stages do.
        """
        role = self.deploy_function.role
        assert role is not None
        images = build_stage_images(
            self, spec=spec.pipeline, version=version, force=force,
            release_function_arn=self.deploy_function.function_arn, release_role=role,
            release_dependencies=[self.deploy_function, role], context_root=source_dir,
            resource_type="Custom::ConveyorStreamRelease", properties={"Kind": "release"},
        )
        self._repositories = images.repositories
        return {name: ecs.ContainerImage.from_registry(uri) for name, uri in images.by_stage.items()}

    def _smoke(self, spec: StreamSpec, sample: Path, storage: PipelineStorage, items: dynamodb.Table,
               wiring: StageWiring) -> None:
        """After every change to the services, one sample item must come out of every last stage."""
        asset = s3_assets.Asset(self, "SmokeSample", path=str(sample))
        function_role = self.deploy_function.role
        assert function_role is not None
        sample_arn = asset.bucket.arn_for_objects(asset.s3_object_key)
        function_role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[sample_arn]))
        function_role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[storage.bucket.arn_for_objects(f"{INBOX_PREFIX}*")]))
        function_role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[storage.bucket.arn_for_objects(f"{wiring.run_prefix}*")]))
        function_role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[storage.bucket.bucket_arn]))  # so a missing marker reads 404
        function_role.add_to_principal_policy(iam.PolicyStatement(
            actions=["dynamodb:Query"], resources=[items.table_arn]))
        sinks = [name for name in spec.pipeline.stage_names if not spec.downstream(name)]
        smoke = CustomResource(
            self, "SmokeItem", service_token=self.deploy_function.function_arn,
            resource_type="Custom::ConveyorStreamSmoke",
            properties={"Kind": "smoke", "Pipeline": spec.name, "Bucket": storage.bucket.bucket_name,
                        "InboxPrefix": INBOX_PREFIX, "SampleBucket": asset.s3_bucket_name,
                        "SampleKey": asset.s3_object_key, "SampleName": sample.name, "SinkStages": sinks,
                        "RunPrefix": wiring.run_prefix, "RunId": wiring.run_id, "ItemsTable": items.table_name,
                        # A new task definition revision (image, command, settings) runs the smoke again.
                        "TaskDefinitions": [s.task_definition.task_definition_arn for s in self.services.values()]},
        )
        smoke.node.add_dependency(function_role)
        for service in self.services.values():
            smoke.node.add_dependency(service.service)

    def _route_arrivals(self, spec: StreamSpec, storage: PipelineStorage, queues: dict[str, Any]) -> None:
        undelivered = sqs.Queue(self, "ArrivalsUndelivered", retention_period=Duration.days(14), enforce_ssl=True,
                                encryption=sqs.QueueEncryption.SQS_MANAGED)
        rule = events.Rule(
            self, "Arrivals", description=f"uploads under {INBOX_PREFIX} -> the entry stages' queues",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [storage.bucket.bucket_name]},
                        "object": {"key": [{"prefix": INBOX_PREFIX}]}}),
        )
        for name in spec.entry_stages:
            rule.add_target(targets.SqsQueue(queues[name].queue, dead_letter_queue=undelivered,
                                             retry_attempts=8, max_event_age=Duration.hours(24)))

    def _acknowledge(self, cluster: ecs.Cluster, storage: PipelineStorage, wiring: StageWiring) -> None:
        bucket = logical_ref(storage.bucket)
        run_prefix = wiring.run_prefix.rstrip("/")
        for name, service in self.services.items():
            Validations.of(service.task_definition).acknowledge(Acknowledgment(
                id="AwsSolutions-ECS2",
                reason="The worker's configuration (queue URLs, table and bus names) and the stage's own variables "
                       "are not secrets; they are the task definition's to carry."))
            acknowledge_wildcards(
                service.task_definition.task_role,
                [f"{bucket}/{INBOX_PREFIX}*", f"{bucket}/{run_prefix}/*", f"{bucket}/{run_prefix}/{name}/*"],
                "Objects under the stage's own prefixes (uploads, the stream's run, the stage's outputs); "
                "every action is named.")
            execution_role = service.task_definition.execution_role
            if execution_role is not None:
                acknowledge_wildcards(execution_role, ["*"], "ecr:GetAuthorizationToken takes no resource ARN "
                                      "(the execution role CDK makes to pull the image).")
        Validations.of(cluster).acknowledge(Acknowledgment(
            id="AwsSolutions-ECS4", reason="Container Insights is enabled through containerInsightsV2."))
        acknowledge_wildcards(
            self.deploy_function.role, [f"<{self.resolve(self._deploy_logs_id)}.Arn>:*",
                                        f"{bucket}/{INBOX_PREFIX}*", f"{bucket}/{wiring.run_prefix}*"],
            "The deploy function's own log streams, the smoke upload under inbox/ and the stream's outputs.")
        Validations.of(self.deploy_function).acknowledge(Acknowledgment(
            id="AwsSolutions-L1", reason="Python 3.11, the version the project runs and tests on."))
        undelivered = self.node.find_child("ArrivalsUndelivered")
        Validations.of(undelivered).acknowledge(Acknowledgment(
            id="AwsSolutions-SQS3", reason="It is the dead-letter queue of the arrivals rule's targets."))
