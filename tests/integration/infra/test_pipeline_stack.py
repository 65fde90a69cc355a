"""Pipeline stack: bucket, table, bus, job definitions from the spec, release guard, rules, functions."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from chalicelib import __version__
from infra.constructs.runner_images import RUNNER_DOCKERFILE
from tests.integration.infra.conftest import PIPELINE_STACK


def _template(synth):
    return synth.assertions[PIPELINE_STACK]


def test_data_bucket_is_private_encrypted_versioned_with_lifecycle_and_eventbridge(synth):
    _template(synth).has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": Match.object_like({"ServerSideEncryptionConfiguration": Match.any_value()}),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LifecycleConfiguration": {"Rules": Match.array_with([Match.object_like({"Id": "abort-uploads"})])},
        },
    )
    # EventBridge notifications go through CDK's notification resource.
    _template(synth).has_resource_properties(
        "Custom::S3BucketNotifications", {"NotificationConfiguration": {"EventBridgeConfiguration": {}}}
    )
    policies = _template(synth).find_resources("AWS::S3::BucketPolicy")
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert any(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false" for s in statements)


def test_run_table_is_on_demand_with_point_in_time_recovery(synth):
    _template(synth).has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        },
    )
    _template(synth).resource_count_is("AWS::Events::EventBus", 1)


def test_job_definitions_come_from_the_spec_and_pin_built_images_by_digest(synth):
    template = _template(synth)
    template.resource_count_is("AWS::Batch::JobDefinition", 3)
    defs = {d["Properties"]["JobDefinitionName"]: d["Properties"]
            for d in template.find_resources("AWS::Batch::JobDefinition").values()}
    assert set(defs) == {"conveyor-infra-test-qc", "conveyor-infra-test-align", "conveyor-infra-test-joint"}
    qc, align, joint = (defs[f"conveyor-infra-test-{n}"] for n in ("qc", "align", "joint"))
    assert qc["RetryStrategy"]["Attempts"] == 10  # spot: retries reclaims, fails fast on tool errors
    assert qc["RetryStrategy"]["EvaluateOnExit"][-1] == {"Action": "EXIT", "OnReason": "*"}
    assert {"Type": "GPU", "Value": "1"} in align["ContainerProperties"]["ResourceRequirements"]
    assert align["Timeout"] == {"AttemptDurationSeconds": 3600}
    image = json.dumps(qc["ContainerProperties"]["Image"])
    assert "@" in image and "Image0Digest" in image  # repo@<digest from the release guard>
    # The public image of an `image:` stage runs as an image derived from it with the runner.
    assert "Image1Digest" in json.dumps(joint["ContainerProperties"]["Image"])
    for props in defs.values():
        assert props["Tags"]["conveyor:version"] == __version__
        assert props["ContainerProperties"]["Command"][:3] == ["python", "-m", "chalicelib.runner"]


def test_release_guard_carries_version_and_images(synth):
    _template(synth).has_resource_properties(
        "Custom::ConveyorRelease",
        {"Version": __version__, "Force": "false", "Pipeline": "infra-test",
         "Images": [Match.object_like({"Name": "Image0"}), Match.object_like({"Name": "Image1"})]},
    )
    tags = synth.templates[PIPELINE_STACK]["Resources"]
    tagged = next(r for r in tags.values() if r["Type"] == "AWS::DynamoDB::Table")["Properties"]["Tags"]
    assert {"Key": "conveyor:version", "Value": __version__} in tagged


def test_state_machine_inlines_the_asl_with_substitutions(synth):
    template = _template(synth)
    template.resource_count_is("AWS::StepFunctions::StateMachine", 1)
    machine = next(iter(template.find_resources("AWS::StepFunctions::StateMachine").values()))["Properties"]
    assert machine["StateMachineName"] == "conveyor-infra-test"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert "TaskFunctionArn" in machine["DefinitionSubstitutions"]
    assert machine["DefinitionSubstitutions"]["PipelineName"] == "infra-test"


def test_rules_feed_the_functions_with_a_dead_letter_queue(synth):
    template = _template(synth)
    rules = list(template.find_resources("AWS::Events::Rule").values())
    patterns = [r["Properties"].get("EventPattern", {}) for r in rules]
    detail_types = sorted(t for p in patterns for t in p.get("detail-type", []))
    assert detail_types == sorted([
        "Object Created", "Batch Job State Change", "Batch Job Queue Blocked",
        "Step Functions Execution Status Change",
    ])
    assert any(r["Properties"].get("ScheduleExpression") == "rate(1 day)" for r in rules)
    batch = next(p for p in patterns if p.get("detail-type") == ["Batch Job State Change"])
    assert batch["detail"]["arrayProperties"] == {"index": [{"exists": False}]}
    ended = next(p for p in patterns if p.get("source") == ["aws.states"])
    assert sorted(ended["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    for rule in rules:
        for target in rule["Properties"]["Targets"]:
            assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 8


def test_chalice_functions_use_cdk_roles(synth):
    functions = synth.assertions[PIPELINE_STACK].find_resources("AWS::Serverless::Function")
    names = {f["Properties"]["Handler"].rsplit(".", 1)[-1] for f in functions.values()}
    assert names == {"tasks", "tracker", "trigger", "execution_ended", "release", "app"}
    for function in functions.values():
        role = json.dumps(function["Properties"]["Role"])
        assert "RolesRuntime" in role or "RolesRelease" in role
        assert function["Properties"]["Tracing"] == "Active"


def test_no_policy_grants_a_wildcard_action(synth):
    for name, template in synth.templates.items():
        for resource in template["Resources"].values():
            if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::Role"):
                continue
            docs = [resource["Properties"].get("PolicyDocument")] + [
                p["PolicyDocument"] for p in resource["Properties"].get("Policies", [])
            ]
            for doc in filter(None, docs):
                for statement in doc["Statement"]:
                    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                    assert not [a for a in actions if "*" in a], (name, statement)


def test_stage_images_build_for_amd64_from_a_context_of_the_runner_and_the_build_folder(synth):
    assets = json.loads((synth.outdir / f"{PIPELINE_STACK}.assets.json").read_text())
    sources = {image["source"]["dockerFile"]: image["source"] for image in assets["dockerImages"].values()}
    assert set(sources) == {"tests/integration/infra/data/tool/Dockerfile", RUNNER_DOCKERFILE}  # qc+align share
    built, derived = sources["tests/integration/infra/data/tool/Dockerfile"], sources[RUNNER_DOCKERFILE]
    assert built["dockerBuildArgs"] == {"CONVEYOR_VERSION": __version__}
    assert derived["dockerBuildArgs"] == {"BASE_IMAGE": "public.ecr.aws/docker/library/python:3.11-slim",
                                          "CONVEYOR_VERSION": __version__}
    for source in sources.values():
        assert source["platform"] == "linux/amd64"
        staged = synth.outdir / source["directory"]
        assert (staged / "chalicelib" / "runner").is_dir()  # every job command starts with the runner
        assert (staged / source["dockerFile"]).is_file()
        top = {p.name for p in staged.iterdir()}
        # Only what the image needs: an edit to docs, infra, tests or README leaves it unchanged.
        assert top <= {"chalicelib", "infra", "tests"}, top
        assert not (staged / "chalicelib" / "localbatch").exists() and not (staged / "chalicelib" / "handlers").exists()
        assert not list(staged.rglob("__pycache__"))
    staged = synth.outdir / built["directory"]
    assert {p.name for p in (staged / "tests").rglob("*") if p.is_file()} == {"Dockerfile", "__init__.py"}
    assert not (staged / "tests" / "integration" / "infra" / "data" / "tool" / "data").exists()
    assert {p.relative_to(synth.outdir / derived["directory"]).as_posix()
            for p in (synth.outdir / derived["directory"] / "infra").rglob("*") if p.is_file()} == {RUNNER_DOCKERFILE}
