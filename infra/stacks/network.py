"""VPC with zero idle cost: public subnets, no NAT gateway, a no-inbound security group for Batch."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

# Interface endpoints Batch instances need when they have no route to the internet:
# ECS agent registration, image pulls from ECR, and container logs.
_INTERFACE_ENDPOINTS = {
    "Ecs": ec2.InterfaceVpcEndpointAwsService.ECS,
    "EcsAgent": ec2.InterfaceVpcEndpointAwsService.ECS_AGENT,
    "EcsTelemetry": ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
}


class NetworkStack(Stack):
    """The network Batch instances live in.

    By default instances sit in public subnets with public IPs and a security group
    without inbound rules: nothing idles and nothing is billed hourly (a NAT gateway
    would be ~$32/month per AZ). With ``interface_endpoints=True`` instances move to
    isolated subnets reached through interface endpoints instead (billed hourly).
    S3 and DynamoDB gateway endpoints are free, so they are always there.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        max_azs: int = 2,
        interface_endpoints: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        subnet_type = ec2.SubnetType.PRIVATE_ISOLATED if interface_endpoints else ec2.SubnetType.PUBLIC
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=max_azs,
            nat_gateways=0,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="batch", subnet_type=subnet_type, cidr_mask=20),
                # Isolated subnets still need a public tier only for the internet gateway;
                # without endpoints the public tier is the batch tier itself.
                *(
                    [ec2.SubnetConfiguration(name="edge", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)]
                    if interface_endpoints
                    else []
                ),
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDb": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
            },
        )
        flow_log_group = logs.LogGroup(self, "FlowLogs", retention=logs.RetentionDays.ONE_MONTH)
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        self.batch_subnets = ec2.SubnetSelection(subnet_type=subnet_type)
        self.security_group = ec2.SecurityGroup(
            self,
            "BatchInstances",
            vpc=self.vpc,
            description="Batch instances: no inbound rules, outbound for ECS, ECR, S3 and logs",
            allow_all_outbound=True,
        )
        if interface_endpoints:
            endpoint_sg = ec2.SecurityGroup(
                self, "Endpoints", vpc=self.vpc, description="Interface endpoints: HTTPS from Batch instances"
            )
            endpoint_sg.add_ingress_rule(self.security_group, ec2.Port.tcp(443), "HTTPS from Batch instances")
            for name, service in _INTERFACE_ENDPOINTS.items():
                self.vpc.add_interface_endpoint(
                    name,
                    service=service,
                    subnets=self.batch_subnets,
                    security_groups=[endpoint_sg],
                    private_dns_enabled=True,
                )
