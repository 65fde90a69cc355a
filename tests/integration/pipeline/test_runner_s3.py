"""Runner over s3:// (moto, in-process) with the tool as a real subprocess: inputs in, outputs out."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.objectstores import open_store
from chalicelib.pipeline.invocation import build_runner_argv
from chalicelib.pipeline.manifest import write_manifest
from chalicelib.pipeline.model import Item
from chalicelib.pipeline.objectstore import ObjectStore, is_published
from chalicelib.runner.main import main

PREFIX = "s3://bucket/runs/r1"
COPY = "import shutil, sys; shutil.copy(sys.argv[2], sys.argv[1] + '/copy.txt'); sys.exit(int(sys.argv[3]))"


@pytest.fixture()
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bucket")
        client.put_object(Bucket="bucket", Key="reads/s1.fq", Body=b"ACGT\n")
        yield client


def factory(client: Any) -> Any:
    def make(root: str) -> ObjectStore:
        return open_store(root, s3_client=client)

    return make


@pytest.mark.parametrize(("exit_code", "published"), [(0, True), (4, False)])
def test_runner_stages_from_and_publishes_to_s3(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exit_code: int, published: bool
) -> None:
    monkeypatch.chdir(tmp_path)  # the scratch folder goes under the current folder
    store = open_store("s3://bucket", s3_client=s3)
    write_manifest(store, PREFIX, [Item("s1", ("s3://bucket/reads/s1.fq",))])
    argv = build_runner_argv(
        run_prefix=PREFIX, stage="copy", tool_argv=[sys.executable, "-c", COPY, "{out}", "{item}", str(exit_code)]
    )
    code = main(argv[3:], environ={"AWS_BATCH_JOB_ATTEMPT": "1"}, store_factory=factory(s3))
    assert code == exit_code
    assert is_published(store, f"{PREFIX}/copy/s1") is published
    if published:
        assert store.get_bytes(f"{PREFIX}/copy/s1/copy.txt") == b"ACGT\n"
    else:
        assert store.list(f"{PREFIX}/copy") == []
    assert list(tmp_path.iterdir()) == []  # scratch cleaned up
