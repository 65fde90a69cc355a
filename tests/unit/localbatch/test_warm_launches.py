"""Which launches go to a warm launcher, and what starts one (pure decisions, no processes)."""

from __future__ import annotations

import pytest

from chalicelib.localbatch.execution.spawn import ATTEMPT_VAR, TOKEN_VAR
from chalicelib.localbatch.execution.warm_launcher import Attempt
from chalicelib.localbatch.execution.warm_launches import (
    LAUNCHER_SCRIPT,
    MAX_LAUNCHERS,
    WarmLaunches,
    parse_warm_modules,
    startup_variables,
)

PY = "/opt/py/bin/python3"


def warm(*entries: str) -> WarmLaunches:
    return WarmLaunches(parse_warm_modules(entries), "token-1", "/rt/warm-home")


def test_entries_name_a_module_and_what_to_preload() -> None:
    assert parse_warm_modules(["chalicelib.runner:chalicelib.runner.main", "tool", "a.b:c,d.e"]) == {
        "chalicelib.runner": ("chalicelib.runner.main",), "tool": (), "a.b": ("c", "d.e")}


@pytest.mark.parametrize("entry", ["", "a b", "1abc", "pkg:", "pkg:x-y", "pkg..mod", "-m"])
def test_an_entry_that_is_not_module_names_is_refused_naming_it(entry: str) -> None:
    if entry == "pkg:":
        assert parse_warm_modules([entry]) == {"pkg": ()}  # an empty preload list is allowed
        return
    with pytest.raises(ValueError, match="warm module") as caught:
        parse_warm_modules([entry])
    assert repr(entry) in str(caught.value)


def test_only_python_dash_m_of_a_listed_module_goes_warm() -> None:
    launches = warm("tool")
    env = {"PATH": "/bin"}
    assert launches.launcher_for(1, PY, [PY, "-m", "other"], env) == (0, None)
    assert launches.launcher_for(1, PY, [PY, "script.py"], env) == (0, None)
    assert launches.launcher_for(1, PY, [PY, "-X", "dev", "-m", "tool"], env) == (0, None)
    assert launches.launcher_for(1, None, ["python", "-m", "tool"], env) == (0, None)  # not resolved
    assert launches.launcher_for(1, PY, [PY, "-m"], env) == (0, None)
    number, start = launches.launcher_for(1, PY, [PY, "-m", "tool", "--flag"], env)
    assert number == 1 and start is not None


def test_the_first_launch_starts_the_launcher_and_later_ones_reuse_it() -> None:
    launches = warm("tool:tool.main,tool.io")
    env = {"PYTHONPATH": "/img", "LANG": "C.UTF-8", "AWS_BATCH_JOB_ID": "j1", "HOME": "/scratch/1"}
    number, start = launches.launcher_for(7, PY, [PY, "-m", "tool", "a"], env)
    assert start == {
        "number": 1, "program": PY,
        "argv": [PY, str(LAUNCHER_SCRIPT), "tool", "tool.main", "tool.io"],
        # the start-up variables, no job's own: HOME leads to no user site-packages of anyone's
        "env": {"LANG": "C.UTF-8", "PYTHONPATH": "/img", "HOME": "/rt/warm-home", TOKEN_VAR: "token-1",
                ATTEMPT_VAR: launches.marker},
    }
    env2 = {**env, "AWS_BATCH_JOB_ID": "j2", "HOME": "/scratch/2"}
    assert launches.launcher_for(7, PY, [PY, "-m", "tool", "b"], env2) == (1, None)


def test_interpreter_and_start_up_variables_each_get_their_own_launcher() -> None:
    launches = warm("tool")
    base = {"PYTHONPATH": "/img", "LANG": "C.UTF-8"}
    assert launches.launcher_for(1, PY, [PY, "-m", "tool"], base)[0] == 1
    assert launches.launcher_for(1, "/usr/bin/python3", ["/usr/bin/python3", "-m", "tool"], base)[0] == 2
    assert launches.launcher_for(1, PY, [PY, "-m", "tool"], {**base, "PYTHONPATH": "/img2"})[0] == 3
    assert launches.launcher_for(1, PY, [PY, "-m", "tool"], {**base, "PYTHONHASHSEED": "0"})[0] == 4
    assert launches.launcher_for(1, PY, [PY, "-m", "tool"], {**base, "LC_ALL": "C"})[0] == 5
    # another spawner counts its own
    assert launches.launcher_for(2, PY, [PY, "-m", "tool"], base)[0] == 1


def test_past_the_limit_launches_are_plain() -> None:
    launches = warm("tool")
    for index in range(MAX_LAUNCHERS):
        assert launches.launcher_for(1, PY, [PY, "-m", "tool"], {"PYTHONPATH": f"/p{index}"})[0] == index + 1
    assert launches.launcher_for(1, PY, [PY, "-m", "tool"], {"PYTHONPATH": "/one-more"}) == (0, None)


def test_a_lost_spawner_forgets_its_launchers() -> None:
    launches = warm("tool")
    assert launches.launcher_for(1, PY, [PY, "-m", "tool"], {})[1] is not None
    launches.forget_link(1)
    number, start = launches.launcher_for(1, PY, [PY, "-m", "tool"], {})
    assert number == 1 and start is not None  # started again on the new spawner


def test_startup_variables_are_python_and_locale_ones_sorted() -> None:
    env = {"PYTHONPATH": "/a", "LC_CTYPE": "C", "PATH": "/bin", "HOME": "/h", "PYTHONDONTWRITEBYTECODE": "1"}
    assert startup_variables(env) == (("LC_CTYPE", "C"), ("PYTHONDONTWRITEBYTECODE", "1"), ("PYTHONPATH", "/a"))


def test_the_launcher_reads_the_attempt_the_spawner_sends() -> None:
    def text(value: bytes) -> bytes:
        return len(value).to_bytes(4, "little") + value

    def strings(values: list[bytes]) -> bytes:
        return len(values).to_bytes(4, "little") + b"".join(text(value) for value in values)

    body = ((42).to_bytes(8, "little") + text(b"/w/job") + text(b"/logs/job.log") + text(b"/cg/a/cgroup.procs\0/cg/b/cgroup.procs")
            + strings([b"python", b"-m", b"tool", b"x=1"]) + strings([b"A=1", b"B=x=y", b"EMPTY="]))
    attempt = Attempt(body)
    assert attempt.ident == 42
    assert (attempt.workdir, attempt.log) == (b"/w/job", b"/logs/job.log")
    assert attempt.cgroups == [b"/cg/a/cgroup.procs", b"/cg/b/cgroup.procs"]
    assert attempt.argv == [b"python", b"-m", b"tool", b"x=1"]
    assert attempt.env == {b"A": b"1", b"B": b"x=y", b"EMPTY": b""}
