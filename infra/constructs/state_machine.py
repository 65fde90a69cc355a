"""Loads an ASL file via DefinitionBody.from_string (inlined, so cfn-lint reads it) + substitutions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_MACHINES = REPO_ROOT / "statemachines"
_TOKEN = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")


def asl_tokens(text: str) -> set[str]:
    """The ``${Token}`` names an ASL text needs filled in."""
    return set(_TOKEN.findall(text))


class AslStateMachine(Construct):
    """A Standard state machine from ``statemachines/<name>.asl.json``.

    Every ``${Token}`` in the file must have a substitution, checked here at synth so
    a typo fails ``cdk synth`` instead of a deployment. Logs (ALL, with execution
    data off) and X-Ray tracing are on.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        asl_name: str,
        substitutions: Mapping[str, str],
        state_machine_name: str,
        role: iam.IRole | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        path = STATE_MACHINES / f"{asl_name}.asl.json"
        text = path.read_text(encoding="utf-8")
        missing = asl_tokens(text) - set(substitutions)
        if missing:
            raise ValueError(f"{path.name}: no substitution for {', '.join(sorted(missing))}")
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            # Vended logs (Step Functions delivering through CloudWatch Logs) belong under
            # /aws/vendedlogs/, which keeps the log group resource policy under its size limit.
            log_group_name=f"/aws/vendedlogs/states/{state_machine_name}",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "Machine",
            state_machine_name=state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(text),
            definition_substitutions=dict(substitutions),
            role=role,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
