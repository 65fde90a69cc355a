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
