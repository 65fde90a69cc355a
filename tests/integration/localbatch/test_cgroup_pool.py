"""Pooled v1 memory cgroups keep the limit of the attempt that holds them (real cgroupfs)."""

from __future__ import annotations

import secrets

import pytest

from chalicelib.localbatch.execution import cgroups as cgroups_mod

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
