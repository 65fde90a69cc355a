"""Reading one counter out of a flat-keyed cgroup file (memory.oom_control, memory.events)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.localbatch.execution.cgroups import _counter


@pytest.mark.parametrize("text, name, expected", [
    ("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill", 3),  # v1 memory.oom_control
    ("low 0\nhigh 0\nmax 4\noom 2\noom_kill 7\noom_group_kill 0\n", "oom_kill", 7),  # v2 memory.events
    ("low 0\nhigh 0\nmax 4\noom 2\noom_kill 7\noom_group_kill 0\n", "oom", 2),  # not oom_kill's prefix
    ("oom_kill 5", "oom_kill", 5),  # no trailing newline
    ("oom_kill_disable 0\n", "oom_kill", 0),  # a longer name is not the counter
    ("", "oom_kill", 0),
    ("oom_kill x\n", "oom_kill", 0),
])
def test_counter_finds_the_named_line(tmp_path: Path, text: str, name: str, expected: int) -> None:
    path = tmp_path / "memory.events"
    path.write_text(text)
    assert _counter(str(path), name) == expected


def test_counter_of_a_missing_file_is_zero(tmp_path: Path) -> None:
    assert _counter(str(tmp_path / "gone"), "oom_kill") == 0
