"""ASL file checks: every Next/Default target exists, every token is substituted, retries jitter, cost bound."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.constructs.state_machine import STATE_MACHINES, asl_tokens

ASL_PATH = STATE_MACHINES / "pipeline.asl.json"
THROTTLES = {"Lambda.ServiceException", "Lambda.TooManyRequestsException"}
# A Lambda task never raises Batch's own errors (`Batch.*` names exist only for the
# Batch service integration); our tasks raise BatchThrottledError when Batch throttles.
BATCH_THROTTLES = {"BatchThrottledError"}
ROUND_LIMIT_S = 15 * 60  # every wait reconciles through DescribeJobs at least this often


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
            assert not [e for e in errors if e.startswith("Batch.")], (name, "a Lambda task raises no Batch.* error")
    top = asl["States"]
    for name in ("Plan", "Submit", "WaitForStages"):
        assert top[name]["Catch"][0] == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Cleanup"}
    assert top["RunFailed"] == {**top["RunFailed"], "Type": "Fail", "ErrorPath": "$.failure.error",
                                "CausePath": "$.failure.cause"}


def _targets(state: dict[str, Any]) -> list[str]:
    nexts = [state.get("Next"), state.get("Default")]
    nexts += [c["Next"] for c in state.get("Choices", [])] + [c["Next"] for c in state.get("Catch", [])]
    return [n for n in nexts if n]


def _cost_of(state: dict[str, Any]) -> tuple[int, int]:
    return 1, 1 if str(state.get("Resource", "")).startswith("arn:aws:states:::lambda") else 0


def _longest_path(machine: dict[str, Any], stages: int) -> tuple[int, int]:
    """(state transitions, Lambda invocations) on the costliest path, ignoring retries and
    counting each loop (a wait's reconcile rounds) once."""

    def cost(name: str, on_path: frozenset[str]) -> tuple[int, int]:
        state = machine["States"][name]
        here = _cost_of(state)
        if state["Type"] == "Map":
            inner = _longest_path(state["ItemProcessor"], stages)
            here = (here[0] + stages * inner[0], here[1] + stages * inner[1])
        tails = [cost(n, on_path | {name}) for n in _targets(state) if n not in on_path | {name}] or [(0, 0)]
        best = max(tails)
        return here[0] + best[0], here[1] + best[1]

    return cost(machine["StartAt"], frozenset())


def _cycles_through(machine: dict[str, Any], start: str) -> list[list[str]]:
    """Every simple cycle from ``start`` back to it."""
    found: list[list[str]] = []

    def walk(name: str, path: list[str]) -> None:
        for target in _targets(machine["States"][name]):
            if target == start:
                found.append(path)
            elif target not in path:
                walk(target, [*path, target])

    walk(start, [start])
    return found
@pytest.mark.parametrize("stages", [1, 3, 12])
def test_cost_grows_with_stages_not_items(asl, stages):
    transitions, invocations = _longest_path(asl, stages)
    assert transitions <= 10 + 7 * stages
    assert invocations <= 3 + 2 * stages


def test_every_wait_reconciles_at_least_every_15_minutes_at_a_bounded_cost(asl):
    processor = asl["States"]["WaitForStages"]["ItemProcessor"]
    states = processor["States"]
    assert asl["States"]["WaitForStages"]["ItemSelector"]["roundSeconds"] <= ROUND_LIMIT_S
    wait = states["WaitForStage"]
    assert wait["TimeoutSecondsPath"] == "$.roundSeconds" and "TimeoutSeconds" not in wait
    timeout = next(c for c in wait["Catch"] if "States.Timeout" in c["ErrorEquals"])
    assert states[timeout["Next"]]["Parameters"]["Payload"]["action"] == "reconcile"
    # The reconcile task's input is what the `reconcile` handler takes.
    assert set(states["ReconcileStage"]["Parameters"]["Payload"]) == {"action", "pipeline", "runId.$", "stage.$"}
    rounds = _cycles_through(processor, "WaitForStage")
    assert rounds, "a wait that is still running starts another round"
    for cycle in rounds:
        costs = [_cost_of(states[name]) for name in cycle]
        assert sum(c[0] for c in costs) <= 4 and sum(c[1] for c in costs) <= 2, cycle
        # Every round passes the deadline check, so the stage's timeout still ends it.
        assert any(states[name]["Type"] == "Choice" and any(
            c.get("NumericGreaterThanEqualsPath") == "$.timeoutSeconds" for c in states[name]["Choices"])
            for name in cycle), cycle
