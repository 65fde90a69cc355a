"""Batch compute environments and job queues per compute class (spot, on-demand, gpu)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Acknowledgment, CfnOutput, Stack, Validations
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.constructs.batch import (
    ComputeClass,
    make_compute_environment,
    make_job_queue,
)

DEFAULT_MAX_VCPUS = {"spot": 256, "on-demand": 64, "gpu": 16}
GPU_INSTANCE_CLASSES = (ec2.InstanceClass.G4DN, ec2.InstanceClass.G5)


class ComputeStack(Stack):
    """Three managed compute environments at 0 vCPUs when idle, and a queue per class.

    ``queues`` maps the spec's compute class (``spot``, ``on-demand``, ``gpu``) to its
    job queue; pipeline stacks take it as a constructor argument.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        max_vcpus: Mapping[str, int] | None = None,
        runnable_limit_s: int = 1800,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        limits = {**DEFAULT_MAX_VCPUS, **(max_vcpus or {})}
        classes = {
            "spot": ComputeClass("spot", limits["spot"], spot=True),
            "on-demand": ComputeClass("on-demand", limits["on-demand"]),
            "gpu": ComputeClass("gpu", limits["gpu"], gpu=True, instance_classes=GPU_INSTANCE_CLASSES),
        }
        self.environments: dict[str, batch.ManagedEc2EcsComputeEnvironment] = {
            name: make_compute_environment(
                self,
                _construct_name(name) + "Env",
                compute=compute,
                vpc=vpc,
                subnets=subnets,
                security_group=security_group,
            )
            for name, compute in classes.items()
        }
        for env in self.environments.values():
            Validations.of(env).acknowledge(Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                   "AmazonEC2ContainerServiceforEC2Role]",
                reason="The ECS agent on Batch instances needs exactly this AWS-managed policy; AWS maintains it "
                       "as ECS adds API calls.",
            ))
        envs = self.environments
        orders = {
            # On-Demand second: used only when Spot is at its maximum vCPUs.
            "spot": [envs["spot"], envs["on-demand"]],
            "on-demand": [envs["on-demand"]],
            "gpu": [envs["gpu"]],
        }
        self.queues: dict[str, batch.JobQueue] = {
            name: make_job_queue(
                self, _construct_name(name) + "Queue", environments=order, runnable_limit_s=runnable_limit_s
            )
            for name, order in orders.items()
        }
        for name, queue in self.queues.items():
            CfnOutput(self, _construct_name(name) + "QueueArn", value=queue.job_queue_arn)


def _construct_name(compute_class: str) -> str:
    return "".join(part.capitalize() for part in compute_class.split("-"))
