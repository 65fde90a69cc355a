"""Batch compute environment + job queue bundle, one per compute class (spot, on-demand, gpu)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

# Reasons a RUNNABLE job can never start; after the limit Batch cancels it so a
# run fails with a reason instead of waiting forever (the queue is FIFO, so one
# stuck head job would otherwise block every job behind it).
_STUCK_REASONS = (
    batch.JobStateTimeLimitActionsReason.INSUFFICIENT_INSTANCE_CAPACITY,
    batch.JobStateTimeLimitActionsReason.COMPUTE_ENVIRONMENT_MAX_RESOURCE,
    batch.JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT,
)
MIN_RUNNABLE_LIMIT_S = 600  # the smallest value Batch accepts for maxTimeSeconds


@dataclass(frozen=True)
class ComputeClass:
    """How one compute class's managed EC2 compute environment is shaped."""

    name: str  # spot | on-demand | gpu (the spec's `compute:` values)
    max_vcpus: int
    spot: bool = False
    gpu: bool = False
    instance_classes: Sequence[ec2.InstanceClass] = ()


def make_compute_environment(
    scope: Construct,
    construct_id: str,
    *,
    compute: ComputeClass,
    vpc: ec2.IVpc,
    subnets: ec2.SubnetSelection,
    security_group: ec2.ISecurityGroup,
) -> batch.ManagedEc2EcsComputeEnvironment:
    """A managed EC2 compute environment that scales to zero when idle (minvCpus 0)."""
    # Amazon Linux 2023 everywhere (AL2's ECS AMIs are at end of support); stated explicitly,
    # since CDK's own default is still AL2 unless a feature flag says otherwise.
    image_type = batch.EcsMachineImageType.ECS_AL2023_NVIDIA if compute.gpu else batch.EcsMachineImageType.ECS_AL2023
    images = [batch.EcsMachineImage(image_type=image_type)]
    return batch.ManagedEc2EcsComputeEnvironment(
        scope,
        construct_id,
        vpc=vpc,
        vpc_subnets=subnets,
        security_groups=[security_group],
        minv_cpus=0,
        maxv_cpus=compute.max_vcpus,
        spot=compute.spot,
        # Price-capacity-optimized picks the pools least likely to be interrupted at
        # a low price; it is AWS's recommendation for Spot in Batch.
        allocation_strategy=(
            batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
            if compute.spot
            else batch.AllocationStrategy.BEST_FIT_PROGRESSIVE
        ),
        instance_classes=list(compute.instance_classes) or None,
        use_optimal_instance_classes=not compute.instance_classes,
        images=images,
        update_to_latest_image_version=True,
    )


def make_job_queue(
    scope: Construct,
    construct_id: str,
    *,
    environments: Sequence[batch.IComputeEnvironment],
    runnable_limit_s: int,
    priority: int = 1,
) -> batch.JobQueue:
    """A job queue over ``environments`` in order; stuck RUNNABLE jobs are cancelled.

    Batch tries the environments in ascending order and only moves to the next one
    when the first is at its maximum vCPUs, so a Spot queue with On-Demand second
    uses On-Demand only as overflow.
    """
    if runnable_limit_s < MIN_RUNNABLE_LIMIT_S:
        raise ValueError(f"runnable_limit_s: Batch needs at least {MIN_RUNNABLE_LIMIT_S} s, got {runnable_limit_s}")
    return batch.JobQueue(
        scope,
        construct_id,
        priority=priority,
        compute_environments=[
            batch.OrderedComputeEnvironment(compute_environment=env, order=i + 1)
            for i, env in enumerate(environments)
        ],
        job_state_time_limit_actions=[
            batch.JobStateTimeLimitAction(
                max_time=Duration.seconds(runnable_limit_s),
                reason=reason,
                action=batch.JobStateTimeLimitActionsAction.CANCEL,
            )
            for reason in _STUCK_REASONS
        ],
    )
