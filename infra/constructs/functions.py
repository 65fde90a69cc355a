"""Lambda functions from app.py through Chalice's CDK construct, with IAM roles defined here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from chalice.cdk import Chalice
from constructs import Construct

# Chalice function names (app.py / chalicelib/handlers) -> their CloudFormation logical ids.
FUNCTIONS = {
    "tasks": "Tasks",
    "tracker": "Tracker",
    "trigger": "Trigger",
    "execution_ended": "ExecutionEnded",
    "release": "Release",
    "api": "APIHandler",
}


class ChaliceFunctions(Construct):
    """Packages ``app.py`` with ``chalice package`` at synth and includes its SAM template.

    Chalice's own IAM management is off (``manage_iam_role: false``): its generated
    policies are broad and invisible to cdk-nag, and its event decorators cannot name
    resources CDK creates. Every function gets ``runtime_role`` except ``release``
    (the custom resource guarding versions), which gets ``release_role``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source_dir: Path,
        runtime_role: iam.IRole,
        release_role: iam.IRole,
        environment: Mapping[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        stage_config = {
            "manage_iam_role": False,
            "iam_role_arn": runtime_role.role_arn,
            "environment_variables": dict(environment),
            "lambda_memory_size": 512,
            "lambda_timeout": 300,
            "xray": True,
            "automatic_layer": False,
            "api_gateway_endpoint_type": "REGIONAL",
        }
        self.app = Chalice(self, "App", source_dir=str(source_dir), stage_config=stage_config)
        self.app.get_resource(FUNCTIONS["release"]).add_property_override("Role", release_role.role_arn)
        stack = Stack.of(self)
        self.functions: dict[str, lambda_.IFunction] = {
            name: lambda_.Function.from_function_attributes(
                self,
                f"{logical}Ref",
                function_arn=self.app.get_resource(logical).get_att("Arn").to_string(),
                same_environment=True,
            )
            for name, logical in FUNCTIONS.items()
        }
        self.function_names = {
            name: self.app.get_resource(logical).ref for name, logical in FUNCTIONS.items()
        }
        del stack
        Validations.of(self).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason="Chalice packages for the Python the project runs on (3.11), so the runtime matches the tested one.",
            )
        )

    def set_environment(self, function: str, name: str, value: str) -> None:
        """Adds one environment variable to one function (values that would form cycles if global)."""
        self.app.add_environment_variable(name, value, FUNCTIONS[function])


def json_env(value: Mapping[str, str]) -> str:
    """A compact JSON object for an environment variable."""
    return json.dumps(dict(value), separators=(",", ":"), sort_keys=True)
