"""The CLI's small promises: tables that never cut ids, checked options, clear item errors, logs by run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.cli import build_parser, main
from tests.e2e.pipeline_harness import STAGE, make_items

LONG_ID = "a-rather-long-run-identifier-that-would-not-fit-in-eighty-columns-0123456789"
SPEC = f"""name: details
stages:
  - name: a
{STAGE}    command: [python, -m, tool, copy, --key, "{{key}}", --fail-key, s1, --out, "{{out}}", "{{item}}"]
    foreach: item
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("details")
    spec = tmp / "details.yaml"
    spec.write_text(SPEC)
    items = make_items(tmp / "items", ["s0.txt", "s1.txt"])
    data = tmp / "data"
    assert main(["run", str(spec), "--items", str(items), "--data-dir", str(data), "--run-id", LONG_ID,
                 "--no-progress"]) == 1
    return spec, data


def test_runs_shows_whole_ids_items_and_time_when_piped(finished: tuple[Path, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, data = finished
    capsys.readouterr()
    assert main(["runs", "--data-dir", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith(LONG_ID))
    cells = row.split()
    assert cells[1:4] == ["details", "FAILED", "2"] and cells[6].endswith("s")
    assert main(["runs", "--data-dir", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["runId"] == LONG_ID


def test_jobs_checks_status_and_keeps_whole_names(finished: tuple[Path, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, data = finished
    with pytest.raises(SystemExit) as exited:
        main(["jobs", "--data-dir", str(data), "--status", "BOGUS"])
    assert exited.value.code == 2
    assert "expected one of SUBMITTED, PENDING" in capsys.readouterr().err
    assert main(["jobs", "--data-dir", str(data), "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert f"{LONG_ID}-a" in out  # the job name in full, not cut to 28 characters
    assert main(["jobs", "--data-dir", str(data), "--json"]) == 0
    parent = json.loads(capsys.readouterr().out)[0]["jobId"]
    assert main(["logs", parent, "--data-dir", str(data)]) == 1
    assert f"{parent} is an array job; its logs are its children's: {parent}:0 to {parent}:1" in \
        capsys.readouterr().err


def test_logs_by_run_stage_and_item_and_summary_names_the_job(finished: tuple[Path, Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    _, data = finished
    capsys.readouterr()
    assert main(["logs", "--run", LONG_ID, "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "==> stage a, item 's1': FAILED, job " in out and "failing on purpose for s1" in out
    assert "item 's0'" not in out  # --run alone: the failed items
    assert main(["logs", "--run", LONG_ID, "--stage", "a", "--item", "s0", "--data-dir", str(data)]) == 0
    assert "item 's0': SUCCEEDED" in capsys.readouterr().out
    assert main(["logs", "--run", LONG_ID, "--stage", "zz", "--data-dir", str(data)]) == 1
    assert "has no stage 'zz'; its stages: a" in capsys.readouterr().err
    assert main(["run-status", LONG_ID, "--data-dir", str(data)]) == 1
    assert "[job " in capsys.readouterr().out


def test_items_errors_say_what_is_wrong(tmp_path: Path, finished: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec, _ = finished
    missing = tmp_path / "nope"
    assert main(["run", str(spec), "--items", str(missing), "--data-dir", str(tmp_path / "d")]) == 1
    assert f"--items {missing}: no such file or folder" in capsys.readouterr().err
    assert main(["validate", str(spec), "--items", str(missing)]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    other = make_items(tmp_path / "csv", ["x.csv"])
    spec_txt = tmp_path / "txt.yaml"
    spec_txt.write_text(SPEC.replace("name: details", "name: details\nitems: {pattern: '*.txt'}"))
    assert main(["validate", str(spec_txt), "--items", str(other)]) == 1
    assert "match '*.txt' (1 file(s) there, e.g. x.csv)" in capsys.readouterr().err
    assert main(["validate", str(spec), "--items", str(make_items(tmp_path / "ok", ["k.txt"]))]) == 0
    assert "items: 1 (k)" in capsys.readouterr().out
    assert main(["plan", str(spec), "--items", str(tmp_path / "ok")]) == 0
    assert "run id 'run'" not in capsys.readouterr().out


def test_every_command_has_a_description_and_limits_have_help() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("run", "serve", "runs", "run-status", "rerun", "cancel", "jobs", "logs"):
        assert commands[name].description, name
    for name in ("runs", "jobs"):
        limit = next(a for a in commands[name]._actions if a.dest == "limit")
        assert limit.help, name


@pytest.mark.parametrize(("flag", "named"), [("a b", "'a b'"), ("pkg:mod-x", "'mod-x'"), ("", "''")])
def test_a_bad_warm_module_is_refused_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str,
                                                named: str) -> None:
    code = main(["serve", "--data-dir", str(tmp_path / "d"), "--port", "0", "--warm-python-module", flag])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: --warm-python-module: ") and named in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()  # refused before anything was made
