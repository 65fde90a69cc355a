"""Network and compute stacks: zero idle cost, Spot price-capacity-optimized, queues per class."""

from __future__ import annotations

from aws_cdk.assertions import Match


def test_vpc_has_no_nat_gateway_and_public_batch_subnets(synth):
    template = synth.assertions["Conveyor-Network"]
    template.resource_count_is("AWS::EC2::VPC", 1)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.has_resource_properties("AWS::EC2::Subnet", {"MapPublicIpOnLaunch": True})
    # Free gateway endpoints for S3 and DynamoDB; no interface endpoints (billed hourly) by default.
    template.resource_count_is("AWS::EC2::VPCEndpoint", 2)
    template.has_resource_properties("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway"})


def test_batch_security_group_has_no_inbound_rules(synth):
    template = synth.assertions["Conveyor-Network"]
    template.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {"GroupDescription": Match.string_like_regexp("Batch instances"), "SecurityGroupIngress": Match.absent()},
    )
    template.resource_count_is("AWS::EC2::SecurityGroupIngress", 0)


def test_three_managed_compute_environments_scale_to_zero(synth):
    template = synth.assertions["Conveyor-Compute"]
    template.resource_count_is("AWS::Batch::ComputeEnvironment", 3)
    envs = template.find_resources("AWS::Batch::ComputeEnvironment")
    resources = [env["Properties"]["ComputeResources"] for env in envs.values()]
    assert all(r["MinvCpus"] == 0 for r in resources)
    assert sorted(r["Type"] for r in resources) == ["EC2", "EC2", "SPOT"]
    spot = next(r for r in resources if r["Type"] == "SPOT")
    assert spot["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    gpu = [r for r in resources if any(str(t).startswith("g") for t in r.get("InstanceTypes", []))]
    assert len(gpu) == 1


def test_a_queue_per_class_with_on_demand_second_for_spot(synth):
    template = synth.assertions["Conveyor-Compute"]
    template.resource_count_is("AWS::Batch::JobQueue", 3)
    queues = template.find_resources("AWS::Batch::JobQueue").values()
    orders = sorted(len(q["Properties"]["ComputeEnvironmentOrder"]) for q in queues)
    assert orders == [1, 1, 2]
    spot_queue = next(q for q in queues if len(q["Properties"]["ComputeEnvironmentOrder"]) == 2)
    assert [e["Order"] for e in spot_queue["Properties"]["ComputeEnvironmentOrder"]] == [1, 2]
    for queue in queues:
        actions = queue["Properties"]["JobStateTimeLimitActions"]
        assert actions and all(a["Action"] == "CANCEL" and a["State"] == "RUNNABLE" for a in actions)
        assert all(a["MaxTimeSeconds"] >= 600 for a in actions)
