"""A data dir whose state file is not an engine store: a clear error and exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.cli import main

SPECS = Path(__file__).resolve().parents[2] / "fixtures" / "specs" / "valid"


@pytest.fixture
def corrupt_dir(tmp_path: Path) -> Path:
    (tmp_path / "state.sqlite3").write_bytes(b"this is not a database" * 100)
    return tmp_path


@pytest.mark.parametrize("argv", [
    ["serve", "--port", "0"],
    ["run", str(SPECS / "minimal.yaml"), "--no-progress"],
])
def test_corrupt_state_file_is_named_not_traced(corrupt_dir: Path, argv: list[str], capsys) -> None:
    assert main([*argv, "--data-dir", str(corrupt_dir)]) == 2
    err = capsys.readouterr().err
    assert "state.sqlite3: not a usable engine state file" in err
    assert "Traceback" not in err
