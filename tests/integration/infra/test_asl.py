"""ASL file checks: every Next/Default target exists, every token is substituted, retries jitter, cost bound."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.constructs.state_machine import STATE_MACHINES, asl_tokens

ASL_PATH = STATE_MACHINES / "pipeline.asl.json"
THROTTLES = {"Lambda.ServiceException", "Lambda.TooManyRequestsException"}
BATCH_THROTTLES = {"Batch.AWSBatchException", "Batch.TooManyRequestsException"}


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    return json.loads(ASL_PATH.read_text())


def _machines(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The machine and every nested Map/Parallel machine."""
    yield definition
    for state in definition["States"].values():
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _machines(processor)
        for branch in state.get("Branches", []):
            yield from _machines(branch)


def test_every_transition_target_exists_and_every_state_is_reachable(asl):
    for machine in _machines(asl):
        states = machine["States"]
        assert machine["StartAt"] in states
        reached = {machine["StartAt"]}
        for state in states.values():
            targets = [state.get("Next"), state.get("Default")]
            targets += [c["Next"] for c in state.get("Choices", [])]
            targets += [c["Next"] for c in state.get("Catch", [])]
            for target in filter(None, targets):
                assert target in states, target
                reached.add(target)
            if state["Type"] not in ("Succeed", "Fail", "Choice"):
                assert state.get("End") or state.get("Next"), state
        assert reached == set(states)


def test_every_token_has_a_substitution_in_the_stack(asl, synth):
    from tests.integration.infra.conftest import PIPELINE_STACK

    tokens = asl_tokens(ASL_PATH.read_text())
    assert tokens == {"TaskFunctionArn", "PipelineName"}
    machine = next(
        r["Properties"] for r in synth.templates[PIPELINE_STACK]["Resources"].values()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
    )
    assert tokens <= set(machine["DefinitionSubstitutions"])


def test_every_task_retries_throttling_with_full_jitter_and_catches(asl):
    for machine in _machines(asl):
        for name, state in machine["States"].items():
            if state["Type"] != "Task":
                continue
            errors = {e for r in state["Retry"] for e in r["ErrorEquals"]}
            assert THROTTLES <= errors, name
            assert all(r["JitterStrategy"] == "FULL" for r in state["Retry"]), name
            if state["Parameters"]["Payload"]["action"] in ("submit", "reconcile", "cleanup"):
                assert BATCH_THROTTLES <= errors, name
    top = asl["States"]
    for name in ("Plan", "Submit", "WaitForStages"):
        assert top[name]["Catch"][0] == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Cleanup"}
    assert top["RunFailed"] == {**top["RunFailed"], "Type": "Fail", "ErrorPath": "$.failure.error",
                                "CausePath": "$.failure.cause"}


def _longest_path(machine: dict[str, Any], stages: int) -> tuple[int, int]:
    """(state transitions, Lambda invocations) on the costliest path, ignoring retries."""
    memo: dict[str, tuple[int, int]] = {}

    def cost(name: str) -> tuple[int, int]:
        if name in memo:
            return memo[name]
        state = machine["States"][name]
        here = (1, 1 if str(state.get("Resource", "")).startswith("arn:aws:states:::lambda") else 0)
        if state["Type"] == "Map":
            inner = _longest_path(state["ItemProcessor"], stages)
            here = (here[0] + stages * inner[0], here[1] + stages * inner[1])
        nexts = [state.get("Next"), state.get("Default")] + [c["Next"] for c in state.get("Catch", [])]
        tails = [cost(n) for n in filter(None, nexts)] or [(0, 0)]
        best = max(tails)
        memo[name] = (here[0] + best[0], here[1] + best[1])
        return memo[name]

    return cost(machine["StartAt"])


@pytest.mark.parametrize("stages", [1, 3, 12])
def test_cost_grows_with_stages_not_items(asl, stages):
    transitions, invocations = _longest_path(asl, stages)
    assert transitions <= 10 + 4 * stages
    assert invocations <= 3 + 2 * stages
