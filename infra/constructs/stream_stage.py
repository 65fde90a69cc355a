"""One stream stage on AWS: its SQS queue and dead-letter queue, an ECS service of workers on
Fargate (Spot first), scaling on backlog per task, and the alarms that say it is unwell."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from chalicelib.pipeline.stream.settings import StreamSettings
from infra.constructs.fargate_sizes import fargate_size

WORKER_COMMAND = ["python", "-m", "chalicelib.aws.stream_worker"]
CONFIG_VARIABLE = "CONVEYOR_STREAM_WORKER"  # chalicelib/aws/stream_worker.py reads it
STOP_TIMEOUT_S = 120  # Fargate's most; the worker finishes its item within it or returns the message
GRACE_MARGIN_S = 15  # returned well before ECS sends SIGKILL
SPOT_WEIGHT = 3  # of every 4 tasks above the base, 3 on FARGATE_SPOT
BELOW_DESIRED_MINUTES = 10
OLDEST_MESSAGE_ALARM_S = 900


@dataclass(frozen=True)
class StageQueues:
    queue: sqs.Queue
    dead_letter: sqs.Queue


def make_stage_queues(scope: Construct, construct_id: str, settings: StreamSettings) -> StageQueues:
    """The stage's queue, redriven to its dead-letter queue after ``max_receives`` receives."""
    dead_letter = sqs.Queue(scope, f"{construct_id}DeadLetters", retention_period=Duration.days(14),
                            enforce_ssl=True, encryption=sqs.QueueEncryption.SQS_MANAGED)
    queue = sqs.Queue(
        scope, f"{construct_id}Queue", visibility_timeout=Duration.seconds(settings.visibility_timeout),
        retention_period=Duration.days(4), enforce_ssl=True, encryption=sqs.QueueEncryption.SQS_MANAGED,
        dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letter, max_receive_count=settings.max_receives),
    )
    return StageQueues(queue, dead_letter)


@dataclass(frozen=True)
class StageWiring:
    """What a stage's workers reach: queues, the bucket and prefixes, item table and bus."""

    pipeline: str
    run_id: str
    bucket: s3.IBucket
    inbox_prefix: str
    run_prefix: str  # e.g. runs/<run id>/
    items_table: dynamodb.ITable
    bus: events.IEventBus
    cluster: ecs.ICluster
    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup


class StreamStageService(Construct):
    """The ECS service that runs one stage's workers, with its scaling and alarms."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: str, command: list[str],
                 environment: Mapping[str, str], vcpus: float, memory: int, settings: StreamSettings,
                 image: ecs.ContainerImage, queues: StageQueues, downstream: Mapping[str, sqs.IQueue],
                 entry: bool, wiring: StageWiring) -> None:
        super().__init__(scope, construct_id)
        size = fargate_size(vcpus, memory)
        self.task_definition = ecs.FargateTaskDefinition(
            self, "Task", cpu=size.cpu, memory_limit_mib=size.memory,
            runtime_platform=ecs.RuntimePlatform(cpu_architecture=ecs.CpuArchitecture.X86_64,
                                                 operating_system_family=ecs.OperatingSystemFamily.LINUX),
        )
        log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH,
                                  removal_policy=RemovalPolicy.DESTROY)
        config = {
            "pipeline": wiring.pipeline, "runId": wiring.run_id, "stage": stage,
            "prefix": f"s3://{wiring.bucket.bucket_name}/{wiring.run_prefix.rstrip('/')}",
            "queueUrl": queues.queue.queue_url, "deadLetterUrl": queues.dead_letter.queue_url,
            "downstream": {name: queue.queue_url for name, queue in downstream.items()}, "entry": entry,
            "settings": settings.__dict__, "command": command, "itemsTable": wiring.items_table.table_name,
            "eventBus": wiring.bus.event_bus_name, "graceSeconds": STOP_TIMEOUT_S - GRACE_MARGIN_S,
        }
        self.task_definition.add_container(
            "Worker", image=image, command=WORKER_COMMAND, essential=True,
            environment={**environment, CONFIG_VARIABLE: Stack.of(self).to_json_string(config)},
            logging=ecs.LogDrivers.aws_logs(stream_prefix=stage, log_group=log_group),
            stop_timeout=Duration.seconds(STOP_TIMEOUT_S),
        )
        self._grant(self.task_definition.task_role, stage, queues, downstream, wiring)
        self.service = ecs.FargateService(
            self, "Service", cluster=wiring.cluster, task_definition=self.task_definition,
            desired_count=settings.min_workers, min_healthy_percent=100, max_healthy_percent=200,
            vpc_subnets=wiring.subnets, security_groups=[wiring.security_group], assign_public_ip=True,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            # ECS splits tasks by base and weight and does not fall back to FARGATE when Spot has
            # no capacity: the below-desired alarm says so. `min_workers` run on FARGATE (the base).
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(capacity_provider="FARGATE", base=settings.min_workers, weight=1),
                ecs.CapacityProviderStrategy(capacity_provider="FARGATE_SPOT", weight=SPOT_WEIGHT),
            ],
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        self.scaling = self._scaling(settings, queues.queue, wiring.cluster)
        self.alarms = self._alarms(queues, wiring.cluster)

    # -- permissions: the stage's own queues, prefixes, table and bus; named actions only -------
    def _grant(self, role: iam.IRole, stage: str, queues: StageQueues, downstream: Mapping[str, sqs.IQueue],
               wiring: StageWiring) -> None:
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                     "sqs:GetQueueAttributes"], resources=[queues.queue.queue_arn]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sqs:SendMessage"],
            resources=[queues.dead_letter.queue_arn, *(q.queue_arn for q in downstream.values())]))
        run_prefix = wiring.run_prefix.rstrip("/")
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:GetObject"],
            resources=[wiring.bucket.arn_for_objects(f"{wiring.inbox_prefix}*"),
                       wiring.bucket.arn_for_objects(f"{run_prefix}/*")]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:PutObject", "s3:DeleteObject"],
            resources=[wiring.bucket.arn_for_objects(f"{run_prefix}/{stage}/*")]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[wiring.bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{run_prefix}/*", f"{wiring.inbox_prefix}*"]}}))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
            resources=[wiring.items_table.table_arn]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["events:PutEvents"], resources=[wiring.bus.event_bus_arn]))

    # -- scaling: target tracking on backlog per task, plus a 0 -> 1 step -----------------------
    def _scaling(self, settings: StreamSettings, queue: sqs.IQueue, cluster: ecs.ICluster) -> appscaling.ScalableTarget:
        target = appscaling.ScalableTarget(
            self, "Scaling", service_namespace=appscaling.ServiceNamespace.ECS,
            resource_id=f"service/{cluster.cluster_name}/{self.service.service_name}",
            scalable_dimension="ecs:service:DesiredCount",
            min_capacity=settings.min_workers, max_capacity=max(settings.max_workers, settings.min_workers),
        )
        target.node.add_dependency(self.service)
        visible = _metric_query("visible", "AWS/SQS", "ApproximateNumberOfMessagesVisible",
                                {"QueueName": queue.queue_name}, "Sum")
        running = _metric_query("running", "ECS/ContainerInsights", "RunningTaskCount",
                                {"ClusterName": cluster.cluster_name, "ServiceName": self.service.service_name},
                                "Average")
        # AWS's documented pattern: backlog per task = visible messages / running tasks, tracked at
        # the stage's target. It scales in to `min_workers` as the queue drains.
        appscaling.CfnScalingPolicy(
            self, "BacklogPerTask", policy_name=f"{self.node.path.replace('/', '-')}-backlog"[-256:],
            policy_type="TargetTrackingScaling", scaling_target_id=target.scalable_target_id,
            target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                target_value=float(settings.backlog_per_worker), scale_in_cooldown=60, scale_out_cooldown=30,
                customized_metric_specification=appscaling.CfnScalingPolicy.CustomizedMetricSpecificationProperty(
                    metrics=[visible, running, appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                        id="backlogPerTask", expression="visible / running", label="messages per task",
                        return_data=True)])),
        )
        # Target tracking cannot leave zero (backlog per task divides by zero): any visible
        # message while no task runs adds one.
        start = cw.MathExpression(
            expression="IF(visible >= 1 AND FILL(running, 0) < 1, 1, 0)", period=Duration.minutes(1),
            label="messages waiting with no worker",
            using_metrics={
                "visible": cw.Metric(namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
                                     dimensions_map={"QueueName": queue.queue_name}, statistic="Sum"),
                "running": cw.Metric(namespace="ECS/ContainerInsights", metric_name="RunningTaskCount",
                                     dimensions_map={"ClusterName": cluster.cluster_name,
                                                     "ServiceName": self.service.service_name},
                                     statistic="Average"),
            },
        )
        target.scale_on_metric(
            "StartFromZero", metric=start, adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            scaling_steps=[appscaling.ScalingInterval(upper=0, change=0), appscaling.ScalingInterval(lower=1, change=1)],
            cooldown=Duration.seconds(60), evaluation_periods=1,
        )
        return target

    def _alarms(self, queues: StageQueues, cluster: ecs.ICluster) -> list[cw.Alarm]:
        dimensions = {"ClusterName": cluster.cluster_name, "ServiceName": self.service.service_name}
        below = cw.MathExpression(
            expression="FILL(desired, 0) - FILL(running, 0)", period=Duration.minutes(1),
            label="tasks below desired",
            using_metrics={
                "desired": cw.Metric(namespace="ECS/ContainerInsights", metric_name="DesiredTaskCount",
                                     dimensions_map=dimensions, statistic="Average"),
                "running": cw.Metric(namespace="ECS/ContainerInsights", metric_name="RunningTaskCount",
                                     dimensions_map=dimensions, statistic="Average"),
            },
        )
        return [
            cw.Alarm(self, "DeadLetters", metric=queues.dead_letter.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"), threshold=1, evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                alarm_description="Items of this stage reached its dead-letter queue (their reason is a message attribute).",
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING),
            cw.Alarm(self, "OldestMessage", metric=queues.queue.metric_approximate_age_of_oldest_message(
                period=Duration.minutes(1), statistic="Maximum"), threshold=OLDEST_MESSAGE_ALARM_S,
                evaluation_periods=5, comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                alarm_description="An item has waited more than 15 minutes for this stage's workers.",
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING),
            cw.Alarm(self, "BelowDesired", metric=below, threshold=1, evaluation_periods=BELOW_DESIRED_MINUTES,
                     comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                     alarm_description="Running tasks stayed below desired for 10 minutes (no Fargate Spot "
                     "capacity? ECS does not fall back to FARGATE on its own).",
                     treat_missing_data=cw.TreatMissingData.NOT_BREACHING),
        ]


def _metric_query(query_id: str, namespace: str, name: str, dimensions: Mapping[str, str],
                  stat: str) -> appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty:
    policy = appscaling.CfnScalingPolicy
    return policy.TargetTrackingMetricDataQueryProperty(
        id=query_id, return_data=False,
        metric_stat=policy.TargetTrackingMetricStatProperty(
            stat=stat, metric=policy.TargetTrackingMetricProperty(
                namespace=namespace, metric_name=name,
                dimensions=[policy.TargetTrackingMetricDimensionProperty(name=k, value=v)
                            for k, v in dimensions.items()])))

