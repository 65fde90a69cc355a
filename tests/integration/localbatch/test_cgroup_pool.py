"""Pooled cgroups on the real cgroupfs: v1 memory cgroups keep the limit of the attempt that holds
them; tracking cgroups go from one attempt to the next only once empty, each time carrying its
attempt's key for kill_orphans."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest

from chalicelib.localbatch.execution import cgroups as cgroups_mod
from chalicelib.localbatch.execution.attempt_setup import AttemptSetup
from chalicelib.localbatch.execution.cgroup_slots import attempt_of

MIB = 1024 * 1024


@pytest.fixture
def pooled() -> cgroups_mod.AttemptCgroups:
    found, why = cgroups_mod.detect(secrets.token_hex(8))
    if found is None or found.memory_base is None or found.memory_base == found.tracking_base:
        pytest.skip(f"no pooled v1 memory cgroups here: {why}")
    yield found
    found.close()


def _limit(paths: cgroups_mod.CgroupPaths) -> int:
    with open(f"{paths.memory}/memory.limit_in_bytes", encoding="ascii") as handle:
        return int(handle.read())


def test_a_reused_memory_cgroup_gets_each_attempts_limit(pooled: cgroups_mod.AttemptCgroups) -> None:
    first = pooled.create("job-a", 64 * MIB)
    assert _limit(first) == 64 * MIB
    assert pooled.remove(first)
    same = pooled.create("job-b", 64 * MIB)  # same limit: the pooled cgroup comes back as it was
    assert same.memory == first.memory
    assert _limit(same) == 64 * MIB
    assert pooled.remove(same)
    bigger = pooled.create("job-c", 128 * MIB)
    assert bigger.memory == first.memory
    assert _limit(bigger) == 128 * MIB
    assert pooled.remove(bigger)
    unlimited = pooled.create("job-d", 0)
    assert _limit(unlimited) > 1024 * 1024 * MIB  # "-1": the kernel's no-limit value
    assert pooled.remove(unlimited)


def test_a_memory_cgroup_oom_killed_in_leaves_the_pool(
        pooled: cgroups_mod.AttemptCgroups) -> None:
    first = pooled.create("job-a", 64 * MIB)
    assert pooled.remove(first, oom=True)  # OOM-killed in: removed, not pooled
    fresh = pooled.create("job-b", 64 * MIB)
    assert fresh.memory != first.memory
    assert _limit(fresh) == 64 * MIB
    assert pooled.remove(fresh)


def test_two_executors_of_one_token_never_share_or_lose_a_pooled_cgroup() -> None:
    token = secrets.token_hex(8)
    first, why = cgroups_mod.detect(token)
    second, _ = cgroups_mod.detect(token)
    if first is None or second is None or first.memory_base in (None, first.tracking_base):
        pytest.skip(f"no pooled v1 memory cgroups here: {why}")
    try:
        a = first.create("job-a", 64 * MIB)
        b = second.create("job-b", 64 * MIB)
        assert a.memory != b.memory  # each instance pools its own
        assert first.remove(a) and second.remove(b)
        first.close()  # drops its pool (and the folders, if empty)
        again = second.create("job-c", 64 * MIB)  # the limit is cached: the cgroup must still exist
        assert again.memory is not None
        assert _limit(again) == 64 * MIB
        assert second.remove(again)
        cgroups_mod.AttemptCgroups.drop_unused_memory_cgroups(second)  # as another engine's start would
        after_drop = second.create("job-d", 64 * MIB)
        assert _limit(after_drop) == 64 * MIB
        assert second.remove(after_drop)
    finally:
        first.close()
        second.close()


@pytest.fixture
def tracking() -> Iterator[cgroups_mod.AttemptCgroups]:
    found, why = cgroups_mod.detect(secrets.token_hex(8))
    if found is None or "pooled" not in why:
        pytest.skip(f"no pooled tracking cgroups here: {why}")
    yield found
    found.close()


def _join(paths: cgroups_mod.CgroupPaths) -> subprocess.Popen[bytes]:
    """A process in the attempt's cgroups, as the spawner's child puts itself before its exec."""
    proc = subprocess.Popen(["sleep", "60"])
    for procs in paths.procs_files():
        with open(procs, "w", encoding="ascii") as handle:
            handle.write(str(proc.pid))
    return proc


def test_an_empty_tracking_cgroup_goes_to_the_next_attempt_with_its_key(
        tracking: cgroups_mod.AttemptCgroups) -> None:
    first = tracking.create("job-a#1", 64 * MIB)
    assert attempt_of(first.tracking) == "job-a#1"
    proc = _join(first)
    proc.kill()
    proc.wait()
    assert tracking.remove(first, oom=tracking.oom_killed(first))
    second = tracking.create("job-b#1", 64 * MIB)
    assert second.tracking == first.tracking  # no mkdir: the same folder, now job-b's
    assert attempt_of(second.tracking) == "job-b#1"
    assert tracking.remove(second)


def test_a_tracking_cgroup_is_handed_out_again_only_once_its_processes_are_gone(
        tracking: cgroups_mod.AttemptCgroups) -> None:
    first = tracking.create("job-a#1", 0)
    proc = _join(first)  # e.g. a daemon the job left behind after its main process exited
    try:
        other = tracking.create("job-b#1", 0)
        assert other.tracking != first.tracking  # in use: a new folder for job-b
        assert tracking.remove(first, wait=5.0)  # what is left is killed, then it is given back
        assert proc.wait(timeout=5) == -9
        again = tracking.create("job-c#1", 0)
        assert again.tracking == first.tracking
        assert tracking.remove(again) and tracking.remove(other)
    finally:
        proc.kill()
        proc.wait()


def test_kill_orphans_names_the_attempt_in_a_pooled_cgroup_an_earlier_engine_left() -> None:
    token = secrets.token_hex(8)
    earlier = AttemptSetup(token)
    if earlier.cgroups is None or "pooled" not in earlier.tracking:
        earlier.close()
        pytest.skip(f"no pooled tracking cgroups here: {earlier.tracking}")
    used = earlier.cgroups.create("old#1", 0)
    assert earlier.cgroups.remove(used)  # free again, still carrying old#1's key: not an orphan
    live = earlier.cgroups.create("old#2", 0)
    proc = _join(live)  # the earlier engine dies (kill -9) with old#2 running
    later = AttemptSetup(token)
    try:
        assert later.kill_orphans(set, exclude=set()) == ["old#2"]
        assert proc.wait(timeout=10) == -9
        assert later.kill_orphans(set, exclude=set()) == []
    finally:
        proc.kill()
        proc.wait()
        later.close()
        earlier.close()
