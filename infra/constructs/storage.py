"""The pipeline's stateful resources: data bucket (+ access-log bucket), run table, event bus."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_s3 as s3
from constructs import Construct

# Run store key schema (chalicelib/aws/runstore.py is the other half).
TABLE_PK = "pk"
TABLE_SK = "sk"
RUNS_INDEX = "runs-by-created"
RUNS_INDEX_PK = "gsi1pk"
RUNS_INDEX_SK = "gsi1sk"
TTL_ATTRIBUTE = "expiresAt"


class PipelineStorage(Construct):
    """Bucket, table and bus of one pipeline.

    The bucket keeps inputs (``inbox/``) and run outputs (``runs/``): encrypted, SSL
    only, no public access, versioned, with lifecycle rules that expire old versions
    and abandoned uploads and move run outputs to Infrequent Access after 30 days.
    EventBridge notifications are on: uploads start runs through a rule, not S3
    notifications, so the trigger can be filtered and given a dead-letter queue.
    """

    def __init__(self, scope: Construct, construct_id: str, *, retain: bool = True) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # No ACLs: the logging service writes through a bucket policy (the app sets
            # @aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy), as S3 now recommends.
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(90))],
            removal_policy=removal,
        )
        Validations.of(self.access_logs).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="This is the access-log bucket itself; logging it into itself would loop.",
            )
        )
        self.bucket = s3.Bucket(
            self,
            "Data",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            versioned=True,
            event_bridge_enabled=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="data/",
            lifecycle_rules=[
                s3.LifecycleRule(id="abort-uploads", abort_incomplete_multipart_upload_after=Duration.days(7)),
                s3.LifecycleRule(id="expire-old-versions", noncurrent_version_expiration=Duration.days(30)),
                s3.LifecycleRule(
                    id="runs-to-ia",
                    prefix="runs/",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS, transition_after=Duration.days(30)
                        )
                    ],
                ),
            ],
            removal_policy=removal,
        )
        self.table = dynamodb.Table(
            self,
            "Runs",
            partition_key=dynamodb.Attribute(name=TABLE_PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=TABLE_SK, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=TTL_ATTRIBUTE,
            removal_policy=removal,
        )
        self.table.add_global_secondary_index(
            index_name=RUNS_INDEX,
            partition_key=dynamodb.Attribute(name=RUNS_INDEX_PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=RUNS_INDEX_SK, type=dynamodb.AttributeType.NUMBER),
        )
        self.bus = events.EventBus(self, "Bus")


def acknowledge_bucket_notifications(stack: Stack) -> None:
    """Acknowledges cdk-nag's findings on CDK's own bucket-notification handler in ``stack``."""
    # CDK's singleton Lambda that turns on the bucket's EventBridge notifications
    # (a CloudFormation gap); it runs at deploy time only.
    for child in stack.node.children:
        if child.node.id.startswith("BucketNotificationsHandler"):
            Validations.of(child).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AWSLambdaBasicExecutionRole]",
                    reason="CDK's own deploy-time handler that enables EventBridge on the bucket; it only logs.",
                ),
                Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason="s3:PutBucketNotification as CDK's bucket-notification handler defines it.",
                ),
            )
