"""EventBridge rules feeding the Lambdas (uploads, schedules, Batch events, execution ends), each target with a DLQ."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

FAILED_EXECUTION_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")


class PipelineRules(Construct):
    """Every rule of one pipeline; ``dead_letters`` receives events a target could not take.

    * uploads under the inbox prefix (S3 ``Object Created`` via EventBridge) -> trigger;
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
        bucket_name: str,
        inbox_prefix: str,
        job_definition_prefix: str,
        job_queue_arns: Sequence[str],
        state_machine_arn: str,
        schedule: str | None,
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
        self.rules: dict[str, events.Rule] = {}
        self._add(
            "Uploads",
            functions["trigger"],
            events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={"bucket": {"name": [bucket_name]}, "object": {"key": [{"prefix": inbox_prefix}]}},
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
