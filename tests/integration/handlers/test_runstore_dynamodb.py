"""DynamoDB run store under moto, held to the same contract tests as the SQLite store."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from chalicelib.aws.runstore import DynamoRunStore
from tests.integration.handlers.aws_fixtures import create_run_table
from tests.unit.pipeline import test_runstore_sqlite as contract


@pytest.fixture()
def store() -> Iterator[DynamoRunStore]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        yield DynamoRunStore(create_run_table(client), client=client)


# The contract: the SQLite store's tests, run here against DynamoDB.
test_create_run_is_idempotent_and_round_trips = contract.test_create_run_is_idempotent_and_round_trips
test_list_runs_newest_first = contract.test_list_runs_newest_first
test_finished_run_never_regresses = contract.test_finished_run_never_regresses
test_jobs_are_found_by_key_and_by_batch_id = contract.test_jobs_are_found_by_key_and_by_batch_id
test_advance_job_ignores_duplicates_regressions_and_unknown_ids = (
    contract.test_advance_job_ignores_duplicates_regressions_and_unknown_ids
)
test_stages_round_trip_and_replace = contract.test_stages_round_trip_and_replace
test_item_results_keep_first_terminal_state = contract.test_item_results_keep_first_terminal_state
test_wait_completes_whichever_half_arrives_second = contract.test_wait_completes_whichever_half_arrives_second
test_concurrent_advances_from_threads_apply_once = contract.test_concurrent_advances_from_threads_apply_once
test_a_move_without_a_reason_keeps_the_earlier_reason = contract.test_a_move_without_a_reason_keeps_the_earlier_reason
test_run_failure_count_round_trips_and_an_update_without_failures_keeps_them = (
    contract.test_run_failure_count_round_trips_and_an_update_without_failures_keeps_them
)
test_a_submission_claim_has_one_holder_until_its_lease_ends = (
    contract.test_a_submission_claim_has_one_holder_until_its_lease_ends
)
