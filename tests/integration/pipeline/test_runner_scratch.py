"""Runner scratch: the job's empty working folder is used (and emptied) in place, else a private subfolder;
only the files the command names are staged."""

from __future__ import annotations

import json
import os
from pathlib import Path

from chalicelib.runner.scratch import CLAIM, make_scratch
from tests.integration.pipeline import test_runner_file as base
from tests.integration.pipeline.test_runner_file import PY, run_runner, stage_argv

run = base.run  # the fixture: a manifest of three items and an empty working folder

# Prints its working folder and what it holds, then writes one output.
SHOW = (
    "import json, os, sys\n"
    "print(json.dumps({'cwd': os.getcwd(), 'entries': sorted(os.listdir('.'))}), flush=True)\n"
    "open(os.path.join(sys.argv[1], 'done.txt'), 'w').write('ok')\n"
)


def _shown(stdout: str) -> dict[str, object]:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("{")))


def test_an_empty_working_folder_is_the_scratch_and_is_left_empty(run: dict[str, object]) -> None:
    work = Path(run["work"])  # type: ignore[arg-type]
    result = run_runner(run, stage_argv(run, "show", [PY, "-c", SHOW, "{out}", "{item}"]), index=0)
    assert result.returncode == 0, result.stderr
    shown = _shown(result.stdout)
    assert shown["cwd"] == str(work) and shown["entries"] == [CLAIM, "in", "out"]
    assert list(work.iterdir()) == []  # emptied, so the engine can hand the folder out again


def test_a_folder_holding_anything_gets_a_private_subfolder_and_keeps_its_files(run: dict[str, object]) -> None:
    work = Path(run["work"])  # type: ignore[arg-type]
    (work / "mine.txt").write_text("not the runner's")
    result = run_runner(run, stage_argv(run, "show", [PY, "-c", SHOW, "{out}", "{item}"]), index=0)
    assert result.returncode == 0, result.stderr
    cwd = Path(str(_shown(result.stdout)["cwd"]))
    assert cwd.parent == work and cwd.name.startswith("conveyor-")
    assert sorted(p.name for p in work.iterdir()) == ["mine.txt"]


def test_two_claims_on_one_folder_one_wins(tmp_path: Path) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        first, second = make_scratch(None), make_scratch(None)
    finally:
        os.chdir(cwd)
    assert first.claimed and first.path == str(tmp_path)
    assert not second.claimed and Path(second.path).parent == tmp_path
    second.remove()
    assert sorted(p.name for p in tmp_path.iterdir()) == [CLAIM]  # the winner's claim is untouched
    first.remove()
    assert list(tmp_path.iterdir()) == []


def test_keep_scratch_in_the_working_folder_keeps_the_files_and_drops_the_claim(run: dict[str, object]) -> None:
    work = Path(run["work"])  # type: ignore[arg-type]
    argv = stage_argv(run, "show", [PY, "-c", SHOW, "{out}", "{item}"])
    result = run_runner(run, [*argv[:3], "--keep-scratch", *argv[3:]], index=0)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in work.iterdir()) == ["in", "out"]


def test_a_join_that_does_not_name_item_stages_no_item_files(run: dict[str, object]) -> None:
    for index in range(3):
        result = run_runner(run, stage_argv(run, "a", [PY, "-c", SHOW, "{out}", "{item}"]), index=index)
        assert result.returncode == 0, result.stderr
    argv = stage_argv(run, "c", [PY, "-c", SHOW, "{out}", "{a}"], join=True, upstream={"a": "foreach"})
    result = run_runner(run, argv)
    assert result.returncode == 0, result.stderr
    assert _shown(result.stdout)["entries"] == [CLAIM, "out", "up"]  # no in/: {item} is not in the command
