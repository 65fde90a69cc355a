"""Job semantics with real processes: arrays, environment, Ref::, N_TO_N, SEQUENTIAL, retries, logs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import wait_for_status
from tests.integration.localbatch.conftest import JOBS, PYTHON, LiveEngine, register


def test_array_children_see_their_index_and_batch_variables(live: LiveEngine) -> None:
    jd = register(live.batch, "envdump", ["python", str(JOBS / "print_env.py"), "Ref::greeting", "--to=Ref::who"],
                  parameters={"greeting": "hello", "who": "nobody"})
    parent = live.submit("arr", jd, arrayProperties={"size": 5}, parameters={"who": "world"},
                         containerOverrides={"environment": [{"name": "USER_VAR", "value": "set"}]})
    detail = wait_for_status(live.batch, parent, "SUCCEEDED")
    assert detail["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 5
    assert detail["parameters"] == {"greeting": "hello", "who": "world"}
    workdirs = set()
    for index in range(5):
        child_id = f"{parent}:{index}"
        child = live.batch.describe_jobs(jobs=[child_id])["jobs"][0]
        assert child["container"]["command"][2:] == ["hello", "--to=world"]
        report = json.loads(live.engine.read_log(child_id).strip().splitlines()[-1])
        assert report["argv"] == ["hello", "--to=world"]
        env = report["env"]
        assert env["AWS_BATCH_JOB_ARRAY_INDEX"] == str(index)
        assert env["AWS_BATCH_JOB_ID"] == child_id
        assert env["AWS_BATCH_JOB_ATTEMPT"] == "1"
        assert env["AWS_BATCH_JQ_NAME"] == "default"
        assert env["AWS_BATCH_CE_NAME"] == "local"
        assert env["USER_VAR"] == "set"
        assert report["cwd_entries"] == []  # every attempt starts in an empty scratch folder
        workdirs.add(report["cwd"])
    # Attempts never share a folder at the same time; an emptied one may be handed out again.
    assert 1 <= len(workdirs) <= 5
    assert all(Path(w).is_relative_to(live.data_dir) for w in workdirs)


def test_plain_job_has_no_array_index(live: LiveEngine) -> None:
    jd = register(live.batch, "envdump", ["python", str(JOBS / "print_env.py")])
    job = live.submit("one", jd)
    wait_for_status(live.batch, job, "SUCCEEDED")
    env = json.loads(live.engine.read_log(job).strip())["env"]
    assert env["AWS_BATCH_JOB_ARRAY_INDEX"] is None
    assert env["AWS_BATCH_JOB_ID"] == job


def test_n_to_n_hands_each_index_its_own_input(live: LiveEngine, tmp_path: Path) -> None:
    out = tmp_path / "handoff"
    out.mkdir()
    produce = register(live.batch, "produce", ["sh", "-c", f"echo value-$AWS_BATCH_JOB_ARRAY_INDEX > {out}/a-$AWS_BATCH_JOB_ARRAY_INDEX"])
    consume = register(live.batch, "consume", ["sh", "-c", f"cat {out}/a-$AWS_BATCH_JOB_ARRAY_INDEX > {out}/b-$AWS_BATCH_JOB_ARRAY_INDEX"])
    a = live.submit("a", produce, arrayProperties={"size": 3})
    b = live.submit("b", consume, arrayProperties={"size": 3}, dependsOn=[{"jobId": a, "type": "N_TO_N"}])
    wait_for_status(live.batch, b, "SUCCEEDED")
    assert [(out / f"b-{i}").read_text().strip() for i in range(3)] == [f"value-{i}" for i in range(3)]


def test_sequential_array_runs_children_in_index_order(live: LiveEngine, tmp_path: Path) -> None:
    order = tmp_path / "order.txt"
    jd = register(live.batch, "seq", ["sh", "-c", f"echo $AWS_BATCH_JOB_ARRAY_INDEX >> {order}"])
    parent = live.submit("seq", jd, arrayProperties={"size": 5}, dependsOn=[{"type": "SEQUENTIAL"}])
    wait_for_status(live.batch, parent, "SUCCEEDED")
    assert order.read_text().split() == ["0", "1", "2", "3", "4"]


def test_sequential_failure_fails_later_children(live: LiveEngine) -> None:
    jd = register(live.batch, "seqfail", ["sh", "-c", "test $AWS_BATCH_JOB_ARRAY_INDEX -ne 1"])
    parent = live.submit("seq", jd, arrayProperties={"size": 4}, dependsOn=[{"type": "SEQUENTIAL"}])
    assert wait_for_status(live.batch, parent, "FAILED")["arrayProperties"]["statusSummary"]["FAILED"] == 3
    later = live.batch.describe_jobs(jobs=[f"{parent}:2", f"{parent}:3"])["jobs"]
    assert [j["statusReason"] for j in later] == ["Dependent Job failed"] * 2
    assert all(j["attempts"] == [] for j in later)


def test_dependency_chain_and_failure_reason(live: LiveEngine) -> None:
    ok = register(live.batch, "ok", ["true"])
    bad = register(live.batch, "bad", ["sh", "-c", "exit 7"])
    a = live.submit("a", ok)
    b = live.submit("b", bad, dependsOn=[{"jobId": a}])
    c = live.submit("c", ok, dependsOn=[{"jobId": b}])
    assert wait_for_status(live.batch, b, "FAILED")["container"]["exitCode"] == 7
    detail = wait_for_status(live.batch, c, "FAILED")
    assert detail["statusReason"] == "Dependent Job failed"
    assert live.batch.describe_jobs(jobs=[a])["jobs"][0]["status"] == "SUCCEEDED"


def test_retry_on_exit_code_then_succeed(live: LiveEngine) -> None:
    jd = register(live.batch, "flaky", ["sh", "-c", ('echo "attempt $AWS_BATCH_JOB_ATTEMPT"; '
                                                     'test "$AWS_BATCH_JOB_ATTEMPT" -ge 2 || exit 3')])
    strategy = {"attempts": 3, "evaluateOnExit": [{"action": "RETRY", "onExitCode": "3"},
                                                   {"action": "EXIT", "onReason": "*"}]}
    job = live.submit("flaky", jd, retryStrategy=strategy)
    detail = wait_for_status(live.batch, job, "SUCCEEDED")
    assert [a["container"]["exitCode"] for a in detail["attempts"]] == [3, 0]
    assert live.engine.read_log(job, attempt=1).strip() == "attempt 1"
    assert live.engine.read_log(job).strip() == "attempt 2"
    streams = {a["container"]["logStreamName"] for a in detail["attempts"]}
    assert len(streams) == 2  # one log stream per attempt


def test_exit_rule_stops_retries(live: LiveEngine) -> None:
    jd = register(live.batch, "four", ["sh", "-c", "exit 4"])
    strategy = {"attempts": 3, "evaluateOnExit": [{"action": "RETRY", "onExitCode": "3"},
                                                   {"action": "exit", "onExitCode": "*"}]}
    detail = wait_for_status(live.batch, live.submit("four", jd, retryStrategy=strategy), "FAILED")
    assert len(detail["attempts"]) == 1
    assert detail["statusReason"] == "Essential container in task exited"


def test_missing_executable_fails_to_start(live: LiveEngine) -> None:
    jd = register(live.batch, "ghost", ["/no/such/program"])
    detail = wait_for_status(live.batch, live.submit("ghost", jd), "FAILED")
    assert detail["statusReason"] == "Task failed to start"
    assert detail["container"]["reason"].startswith("CannotStartContainerError")


def test_python_on_path_is_the_image_runtime_not_the_engine_venv(live: LiveEngine) -> None:
    jd = register(live.batch, "which", ["python", "-c", "import sys; print(sys.executable); print(sys.prefix)"])
    job = live.submit("which", jd)
    wait_for_status(live.batch, job, "SUCCEEDED")
    executable, prefix = live.engine.read_log(job).split()
    assert Path(executable).parent != Path(PYTHON).parent
    assert Path(prefix).is_relative_to(live.data_dir / "runtime")  # pip installs land there


def test_local_image_folder_is_on_path(live: LiveEngine, tmp_path: Path) -> None:
    image = tmp_path / "image"
    image.mkdir()
    tool = image / "hello-tool"
    tool.write_text("#!/bin/sh\necho tool-ran\n")
    tool.chmod(0o755)
    jd = register(live.batch, "imaged", ["hello-tool"], container={"image": f"file://{image}"})
    job = live.submit("imaged", jd)
    wait_for_status(live.batch, job, "SUCCEEDED")
    assert live.engine.read_log(job).strip() == "tool-ran"
    missing = register(live.batch, "noimage", ["true"], container={"image": f"file://{tmp_path}/absent"})
    detail = wait_for_status(live.batch, live.submit("noimage", missing), "FAILED")
    assert detail["statusReason"] == "Task failed to start"
    assert detail["container"]["reason"].startswith("CannotPullContainerError")


def test_ref_is_substituted_in_the_command_only(live: LiveEngine) -> None:
    jd = register(live.batch, "envref", ["sh", "-c", 'echo "$X" Ref::p'], parameters={"p": "val"},
                  container={"environment": [{"name": "X", "value": "Ref::p"}]})
    job = live.submit("envref", jd)
    wait_for_status(live.batch, job, "SUCCEEDED")
    # sh -c gets one string: an in-string placeholder is replaced there; the environment keeps it literally.
    assert live.engine.read_log(job).strip() == "Ref::p val"
