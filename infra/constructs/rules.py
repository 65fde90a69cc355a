"""EventBridge rules feeding the Lambdas (uploads, schedules, Batch events, execution ends) and their failure paths.

EventBridge invokes a Lambda asynchronously: a delivery EventBridge cannot make goes to the
rule target's dead-letter queue, and an invocation whose function fails (after Lambda's own
two retries) goes to the function's on-failure destination. Both queues have an alarm; a
message on either is redriven by invoking the function again with the event
(docs/aws.md, "Redriving parked events").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

FAILED_EXECUTION_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
# A manifest is JSON: in per_manifest mode only `<inbox>...*.json` uploads start runs (the
# items uploaded next to it must not each start a run of their own).
MANIFEST_SUFFIX = ".json"
# Functions EventBridge invokes (asynchronously), by their ChaliceFunctions name.
ASYNC_FUNCTIONS = ("trigger", "tracker", "execution_ended")
LAMBDA_ASYNC_RETRIES = 2


class PipelineRules(Construct):
    """Every rule of one pipeline and where its events park when they cannot be handled.

    ``dead_letters`` receives events EventBridge could not deliver; ``failed_invocations``
    (the functions' on-failure destination) receives events whose function failed. Each has
    an alarm on its first visible message.

    * uploads under the inbox prefix (manifests only, ``*.json``, in per_manifest mode) (S3 ``Object Created`` via EventBridge) -> trigger;
    * the spec's schedule, if any -> trigger with a constant ``schedule`` input;
    * ``Batch Job State Change`` of this pipeline's job definitions, parents and plain
      jobs only (array children carry ``arrayProperties.index``) and ``Batch Job Queue
      Blocked`` -> tracker;
    * failed, timed-out and aborted executions of the state machine -> execution_ended,
      because StopExecution and execution timeouts skip the machine's own Catch.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Mapping[str, lambda_.IFunction],
        function_names: Mapping[str, str],
        runtime_role: iam.IRole,
        bucket_name: str,
        inbox_prefix: str,
        job_definition_prefix: str,
        job_queue_arns: Sequence[str],
        state_machine_arn: str,
        schedule: str | None,
        trigger_mode: str = "per_manifest",
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        Validations.of(self.dead_letters).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is the dead-letter queue of the rule targets; a DLQ of a DLQ has nothing to add.",
            )
        )
        self.failed_invocations = self._failure_destinations(function_names, runtime_role)
        self.alarms = {
            "DeadLetters": self._alarm("DeadLettersAlarm", self.dead_letters, "EventBridge could not deliver"),
            "FailedInvocations": self._alarm("FailedInvocationsAlarm", self.failed_invocations,
                                             "a function failed on an event after Lambda's retries"),
        }
        self.rules: dict[str, events.Rule] = {}
        key_filter = ({"wildcard": f"{inbox_prefix}*{MANIFEST_SUFFIX}"} if trigger_mode == "per_manifest"
                      else {"prefix": inbox_prefix})
        self._add(
            "Uploads",
            functions["trigger"],
            events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={"bucket": {"name": [bucket_name]}, "object": {"key": [key_filter]}},
            ),
        )
        if schedule:
            self._add(
                "Schedule",
                functions["trigger"],
                schedule=events.Schedule.expression(schedule),
                event_input={"source": "schedule", "schedule": schedule},
            )
        self._add(
            "BatchJobs",
            functions["tracker"],
            events.EventPattern(
                source=["aws.batch"],
                detail_type=["Batch Job State Change"],
                detail={
                    "jobDefinition": [{"prefix": job_definition_prefix}],
                    "arrayProperties": {"index": [{"exists": False}]},
                },
            ),
        )
        self._add(
            "QueueBlocked",
            functions["tracker"],
            events.EventPattern(
                source=["aws.batch"],
                detail_type=["Batch Job Queue Blocked"],
                # The blocked event lists the job and the queue ARNs in `resources`.
                resources=list(job_queue_arns),
            ),
        )
        self._add(
            "ExecutionEnded",
            functions["execution_ended"],
            events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={"status": list(FAILED_EXECUTION_STATUSES), "stateMachineArn": [state_machine_arn]},
            ),
        )

    def _failure_destinations(self, function_names: Mapping[str, str], role: iam.IRole) -> sqs.Queue:
        """An on-failure destination (SQS) for every function EventBridge invokes."""
        queue = sqs.Queue(
            self,
            "FailedInvocations",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        Validations.of(queue).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is the on-failure destination of the functions; a DLQ of it has nothing to add.",
            )
        )
        # Lambda sends to a destination with the function's own execution role.
        queue.grant_send_messages(role)
        for name in ASYNC_FUNCTIONS:
            config = lambda_.CfnEventInvokeConfig(
                self,
                f"{name.title().replace('_', '')}OnFailure",
                function_name=function_names[name],
                qualifier="$LATEST",
                maximum_retry_attempts=LAMBDA_ASYNC_RETRIES,
                maximum_event_age_in_seconds=6 * 3600,
                destination_config=lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
                    on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(destination=queue.queue_arn)
                ),
            )
            # Lambda checks it may send to the destination when the config is created.
            config.node.add_dependency(role)
        return queue

    def _alarm(self, construct_id: str, queue: sqs.Queue, what: str) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            construct_id,
            metric=queue.metric_approximate_number_of_messages_visible(period=Duration.minutes(5),
                                                                        statistic="Maximum"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"Events are parked in {queue.node.id}: {what}. Redrive them (docs/aws.md).",
        )

    def _add(
        self,
        name: str,
        function: lambda_.IFunction,
        pattern: events.EventPattern | None = None,
        *,
        schedule: events.Schedule | None = None,
        event_input: dict[str, Any] | None = None,
    ) -> None:
        rule = events.Rule(self, name, event_pattern=pattern, schedule=schedule)
        rule.add_target(
            targets.LambdaFunction(
                function,
                event=events.RuleTargetInput.from_object(event_input) if event_input else None,
                dead_letter_queue=self.dead_letters,
                max_event_age=Duration.hours(6),
                retry_attempts=8,
            )
        )
        self.rules[name] = rule
