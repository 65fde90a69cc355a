"""The run table's TTL attribute (infra) is the one the DynamoDB run store writes, on every record."""

from __future__ import annotations

import time

import boto3
from moto import mock_aws

from chalicelib.aws.runstore import TTL_ATTRIBUTE, DynamoRunStore
from chalicelib.pipeline.records import RunStatus
from infra.constructs.storage import TTL_ATTRIBUTE as TABLE_TTL_ATTRIBUTE
from tests.integration.handlers.aws_fixtures import create_run_table
from tests.unit.pipeline.test_runstore_sqlite import _job, _run


def test_every_record_the_store_writes_carries_the_tables_ttl_attribute() -> None:
    assert TTL_ATTRIBUTE == TABLE_TTL_ATTRIBUTE
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        table = create_run_table(client)
        store = DynamoRunStore(table, client=client, retention_days=30)
        store.create_run(_run("r1"))
        store.put_job(_job())
        store.put_task_token("r1", "qc", "token")
        store.put_stage_result("r1", "qc", {"stage": "qc", "status": "SUCCEEDED"})
        store.update_run("r1", status=RunStatus.SUCCEEDED, ended_at=2000)
        items = client.scan(TableName=table)["Items"]
    assert {item["sk"]["S"].split("#")[0] for item in items} == {"RUN", "JOB", "WAIT"}
    now = time.time()
    for item in items:
        expires = int(item[TTL_ATTRIBUTE]["N"])
        assert now + 29 * 86400 < expires <= now + 30 * 86400 + 5, item


def test_the_table_has_time_to_live_on_that_attribute(synth) -> None:
    from tests.integration.infra.conftest import PIPELINE_STACK

    synth.assertions[PIPELINE_STACK].has_resource_properties(
        "AWS::DynamoDB::Table", {"TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}}
    )
