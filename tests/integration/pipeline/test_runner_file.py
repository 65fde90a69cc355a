"""Runner end to end on file://: real subprocesses, outputs published only when the tool succeeds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.objectstores import open_store
from chalicelib.pipeline.invocation import build_runner_argv
from chalicelib.pipeline.manifest import write_join_items, write_manifest
from chalicelib.pipeline.model import Item

PY = sys.executable
# A tool that upper-cases each input file into {out}/<name>.up; exits with $FAIL_CODE after
# writing a partial file when FAIL_CODE is set.
UPPER = (
    "import os, sys, pathlib\n"
    "out = pathlib.Path(sys.argv[1])\n"
    "assert not any(out.iterdir()), 'out must start empty'\n"
    "for name in sys.argv[2:]:\n"
    "    p = pathlib.Path(name)\n"
    "    (out / (p.name + '.up')).write_text(p.read_text().upper())\n"
    "code = int(os.environ.get('FAIL_CODE', '0'))\n"
    "if code:\n"
    "    (out / 'partial.tmp').write_text('half')\n"
    "print('tool ran', flush=True)\n"
    "sys.exit(code)\n"
)


@pytest.fixture()
def run(tmp_path: Path) -> dict[str, object]:
    data = tmp_path / "data"
    data.mkdir()
    items = []
    for key in ("s1", "s2", "s3"):
        for mate in (1, 2):
            (data / f"{key}_R{mate}.fq").write_text(f"{key} read {mate}\n")
        items.append(Item(key, tuple((data / f"{key}_R{m}.fq").as_uri() for m in (1, 2))))
    prefix = (tmp_path / "runs" / "r1").as_uri()
    store = open_store(tmp_path / "runs" / "r1")
    write_manifest(store, prefix, items)
    work = tmp_path / "work"
    work.mkdir()
    return {"prefix": prefix, "root": tmp_path / "runs" / "r1", "work": work, "items": items, "store": store}


def run_runner(run: dict[str, object], argv: list[str], index: int | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "AWS_BATCH_JOB_ARRAY_INDEX"}
    environ.update(env)
    if index is not None:
        environ["AWS_BATCH_JOB_ARRAY_INDEX"] = str(index)
    return subprocess.run(
        [PY, *argv[1:]] if argv[0] == "python" else argv,
        cwd=run["work"], env=environ, capture_output=True, text=True, timeout=60,
    )


def stage_argv(run: dict[str, object], stage: str, tool: list[str], **kwargs: object) -> list[str]:
    return build_runner_argv(run_prefix=str(run["prefix"]), stage=stage, tool_argv=tool, **kwargs)  # type: ignore[arg-type]


def test_success_publishes_the_items_outputs(run: dict[str, object]) -> None:
    argv = stage_argv(run, "upper", [PY, "-c", UPPER, "{out}", "{item}"], offset=1)
    result = run_runner(run, argv, index=1)  # offset 1 + index 1 -> item s3
    assert result.returncode == 0, result.stderr
    assert "tool ran" in result.stdout  # tool output streams through
    published = Path(run["root"]) / "upper" / "s3"  # type: ignore[arg-type]
    assert sorted(p.name for p in published.iterdir()) == ["_SUCCESS", "s3_R1.fq.up", "s3_R2.fq.up"]
    assert (published / "s3_R2.fq.up").read_text() == "S3 READ 2\n"
    assert list(Path(run["work"]).iterdir()) == []  # type: ignore[arg-type]  # scratch removed
    assert "conveyor-runner: published 2 file(s)" in result.stderr


def test_failure_publishes_nothing_and_keeps_the_tools_exit_code(run: dict[str, object]) -> None:
    argv = stage_argv(run, "upper", [PY, "-c", UPPER, "{out}", "{item}"])
    result = run_runner(run, argv, index=0, FAIL_CODE="3")
    assert result.returncode == 3
    assert not (Path(run["root"]) / "upper").exists()  # type: ignore[arg-type]
    assert "tool exited 3; nothing published" in result.stderr


def test_retry_after_a_failed_attempt_sees_no_partial_output(run: dict[str, object]) -> None:
    argv = stage_argv(run, "upper", [PY, "-c", UPPER, "{out}", "{item}"])
    assert run_runner(run, argv, index=0, FAIL_CODE="1", AWS_BATCH_JOB_ATTEMPT="1").returncode == 1
    second = run_runner(run, argv, index=0, AWS_BATCH_JOB_ATTEMPT="2")
    assert second.returncode == 0, second.stderr  # the tool asserts {out} starts empty
    assert "attempt 2" in second.stderr
    published = Path(run["root"]) / "upper" / "s1"  # type: ignore[arg-type]
    assert sorted(p.name for p in published.iterdir()) == ["_SUCCESS", "s1_R1.fq.up", "s1_R2.fq.up"]


def test_republish_replaces_old_outputs_wholesale(run: dict[str, object]) -> None:
    write = "import sys, pathlib; pathlib.Path(sys.argv[1], sys.argv[2]).write_text('x')"
    assert run_runner(run, stage_argv(run, "w", [PY, "-c", write, "{out}", "old.txt"]), index=0).returncode == 0
    assert run_runner(run, stage_argv(run, "w", [PY, "-c", write, "{out}", "new.txt"]), index=0).returncode == 0
    published = Path(run["root"]) / "w" / "s1"  # type: ignore[arg-type]
    assert sorted(p.name for p in published.iterdir()) == ["_SUCCESS", "new.txt"]
    assert not [p for p in published.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_foreach_then_join_over_published_upstream(run: dict[str, object]) -> None:
    upper = stage_argv(run, "upper", [PY, "-c", UPPER, "{out}", "{item}"])
    for index in range(3):
        assert run_runner(run, upper, index=index).returncode == 0
    concat = (
        "import sys, pathlib\n"
        "out = pathlib.Path(sys.argv[1])\n"
        "lines = [f'{pathlib.Path(d).name}:{sorted(p.name for p in pathlib.Path(d).iterdir())}' for d in sys.argv[2:]]\n"
        "(out / 'joined.txt').write_text('\\n'.join(lines))\n"
    )
    store = run["store"]
    subset = [run["items"][0], run["items"][2]]  # type: ignore[index]
    items_uri = write_join_items(store, str(run["prefix"]), "join", subset)  # type: ignore[arg-type]
    argv = stage_argv(run, "join", [PY, "-c", concat, "{out}", "{upper}"], join=True, items=items_uri,
                      upstream={"upper": "foreach"})
    result = run_runner(run, argv)
    assert result.returncode == 0, result.stderr
    joined = (Path(run["root"]) / "join" / "joined.txt").read_text()  # type: ignore[arg-type]
    assert joined.splitlines() == [
        "s1:['s1_R1.fq.up', 's1_R2.fq.up']",
        "s3:['s3_R1.fq.up', 's3_R2.fq.up']",
    ]
    assert "join over 2 item(s)" in result.stderr


def test_unpublished_upstream_is_a_runner_error(run: dict[str, object]) -> None:
    argv = stage_argv(run, "b", [PY, "-c", "pass", "{a}"], upstream={"a": "foreach"})
    result = run_runner(run, argv, index=0)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"conveyor-runner: error: output of upstream stage 'a' for item 's1' is not published ({run['prefix']}/a/s1)"
    )


def test_missing_input_index_and_tool_are_clear_errors(run: dict[str, object], tmp_path: Path) -> None:
    (tmp_path / "data" / "s2_R1.fq").unlink()
    argv = stage_argv(run, "upper", [PY, "-c", UPPER, "{out}", "{item}"])
    missing = run_runner(run, argv, index=1)
    assert missing.returncode == 2 and "cannot stage input" in missing.stderr and "'s2'" in missing.stderr
    outside = run_runner(run, argv, index=7)
    assert outside.returncode == 2 and "item index 7 is outside manifest" in outside.stderr
    no_tool = run_runner(run, stage_argv(run, "t", ["no-such-tool-xyz", "{out}"]), index=0)
    assert no_tool.returncode == 127 and "tool not found" in no_tool.stderr
    bad = run_runner(run, ["python", "-m", "chalicelib.runner", "--stage", "x", "--", "true"])
    assert bad.returncode == 2 and "bad arguments" in bad.stderr and "Traceback" not in bad.stderr


def test_item_key_escaping_the_run_prefix_is_refused(run: dict[str, object], tmp_path: Path) -> None:
    store = run["store"]
    evil = Item("../../escaped", (str(run["items"][0].files[0]),))  # type: ignore[index]
    write_manifest(store, str(run["prefix"]), [evil])  # type: ignore[arg-type]
    result = run_runner(run, stage_argv(run, "upper", [PY, "-c", UPPER, "{out}", "{item}"]), index=0)
    assert result.returncode == 2  # refused before the tool ran
    assert "'..'" in result.stderr and "tool ran" not in result.stdout
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "runs" / "escaped").exists()


def test_symlink_in_outputs_pointing_outside_is_refused(run: dict[str, object]) -> None:
    link = "import os, sys; os.symlink('/etc/hostname', os.path.join(sys.argv[1], 'leak'))"
    result = run_runner(run, stage_argv(run, "l", [PY, "-c", link, "{out}"]), index=0)
    assert result.returncode == 3 and "links outside the output folder" in result.stderr
    assert not (Path(run["root"]) / "l").exists()  # type: ignore[arg-type]


def test_sigterm_is_forwarded_to_the_tool_and_nothing_is_published(run: dict[str, object]) -> None:
    import signal

    sleeper = "import sys, time, pathlib; pathlib.Path(sys.argv[1], 'x').write_text('1'); print('started', flush=True); time.sleep(60)"
    argv = stage_argv(run, "slow", [PY, "-c", sleeper, "{out}"])
    environ = {k: v for k, v in os.environ.items() if k != "AWS_BATCH_JOB_ARRAY_INDEX"}
    process = subprocess.Popen([PY, *argv[1:]], cwd=run["work"], env=environ,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM
    assert "nothing published" in stderr
    assert not (Path(run["root"]) / "slow").exists()  # type: ignore[arg-type]
