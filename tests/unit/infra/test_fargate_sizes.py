"""A stage's resources -> the smallest Fargate task size that covers them."""

from __future__ import annotations

import pytest

from infra.constructs.fargate_sizes import FargateSize, FargateSizeError, fargate_size


@pytest.mark.parametrize(("vcpus", "memory", "expected"), [
    (0.25, 256, FargateSize(256, 512)),      # below the smallest size: the smallest
    (0.25, 2048, FargateSize(256, 2048)),
    (0.25, 2049, FargateSize(512, 3072)),    # over 256's 2 GiB: next CPU, rounded up to 1 GiB
    (1, 256, FargateSize(1024, 2048)),       # memory raised to the CPU's minimum
    (1, 1536, FargateSize(1024, 2048)),
    (1, 9000, FargateSize(2048, 9216)),      # over 1 vCPU's 8 GiB
    (4, 30720, FargateSize(4096, 30720)),
    (4, 30721, FargateSize(8192, 32768)),    # 8 vCPUs step by 4 GiB
    (16, 120 * 1024, FargateSize(16384, 122880)),
])
def test_smallest_size_covering_the_stage(vcpus: float, memory: int, expected: FargateSize) -> None:
    assert fargate_size(vcpus, memory) == expected


def test_more_than_fargate_offers_names_the_limits() -> None:
    with pytest.raises(FargateSizeError, match="at most 16 vCPUs and 120 GiB"):
        fargate_size(17, 1024)
    with pytest.raises(FargateSizeError, match="lower the stage's resources"):
        fargate_size(1, 121 * 1024)
