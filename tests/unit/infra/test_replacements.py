"""The replacement check itself: create-only properties, Batch's compute environment rule, vanished ids."""

from __future__ import annotations

import copy
from typing import Any

from tests.integration.infra.replacements import protected, replacements


def _ce(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "Type": "managed", "State": "ENABLED", "ReplaceComputeEnvironment": True,
        "ComputeResources": {"Type": "EC2", "MinvCpus": 0, "MaxvCpus": 64, "InstanceTypes": ["optimal"],
                             "Ec2Configuration": [{"ImageType": "ECS_AL2023"}]},
    }
    props.update(overrides)
    return {"Resources": {"Env": {"Type": "AWS::Batch::ComputeEnvironment", "Properties": props}}}


def _changed(template: dict[str, Any], change) -> list[str]:
    new = copy.deepcopy(template)
    change(new["Resources"]["Env"]["Properties"])
    return [str(r) for r in replacements({"S": template}, {"S": new})]


def test_a_tag_change_on_a_compute_environment_replaces_it() -> None:
    found = _changed(_ce(Tags={"conveyor:version": "0.1.0"}), lambda p: p["Tags"].update({"conveyor:version": "0.2"}))
    assert found and "create-only Tags changed" in found[0]


def test_vcpu_counts_and_state_update_in_place_but_instance_types_replace() -> None:
    assert _changed(_ce(), lambda p: p["ComputeResources"].update(MaxvCpus=256)) == []
    assert _changed(_ce(), lambda p: p.update(State="DISABLED")) == []
    found = _changed(_ce(), lambda p: p["ComputeResources"].update(InstanceTypes=["c7i"]))
    assert found == ["S/Env (AWS::Batch::ComputeEnvironment): ReplaceComputeEnvironment is true and "
                     "ComputeResources/InstanceTypes changed"]
    assert _changed(_ce(ReplaceComputeEnvironment=False),
                    lambda p: p["ComputeResources"].update(InstanceTypes=["c7i"])) == []


def test_a_vanished_logical_id_counts_as_replaced_and_protected_types_are_picked_out() -> None:
    old = {"S": {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {}},
                               "Def": {"Type": "AWS::Batch::JobDefinition", "Properties": {"JobDefinitionName": "a"}}}}}
    new = {"S": {"Resources": {"Bucket2": {"Type": "AWS::S3::Bucket", "Properties": {}},
                               "Def": {"Type": "AWS::Batch::JobDefinition", "Properties": {"JobDefinitionName": "b"}}}}}
    found = replacements(old, new)
    assert {(r.logical_id, r.reason) for r in found} == {
        ("Bucket", "logical id vanished"), ("Def", "create-only JobDefinitionName changed")}
    assert [r.logical_id for r in protected(found)] == ["Bucket"]
