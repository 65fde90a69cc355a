"""A stage's resources -> a valid Fargate task size (CPU units and MiB), the smallest that covers them.

Fargate accepts only certain CPU/memory pairs (AWS's task size table): 256 CPU units with
512, 1024 or 2048 MiB; 512 with 1-4 GiB; 1024 with 2-8 GiB; 2048 with 4-16 GiB; 4096 with
8-30 GiB (1 GiB steps); 8192 with 16-60 GiB (4 GiB steps); 16384 with 32-120 GiB (8 GiB steps).
"""

from __future__ import annotations

from dataclasses import dataclass

# cpu units -> (min MiB, max MiB, step MiB)
_TABLE: tuple[tuple[int, int, int, int], ...] = (
    (256, 512, 2048, 512),
    (512, 1024, 4096, 1024),
    (1024, 2048, 8192, 1024),
    (2048, 4096, 16384, 1024),
    (4096, 8192, 30720, 1024),
    (8192, 16384, 61440, 4096),
    (16384, 32768, 122880, 8192),
)


class FargateSizeError(ValueError):
    """No Fargate task size covers the stage's resources."""


@dataclass(frozen=True)
class FargateSize:
    cpu: int  # CPU units (1024 = 1 vCPU)
    memory: int  # MiB


def fargate_size(vcpus: float, memory_mib: int) -> FargateSize:
    """The smallest task size with at least ``vcpus`` and ``memory_mib``.

    Raises:
        FargateSizeError: more than 16 vCPUs or 120 GiB, which Fargate does not offer.
    """
    for cpu, low, high, step in _TABLE:
        if cpu < vcpus * 1024 or memory_mib > high:
            continue
        memory = max(low, -(-memory_mib // step) * step)
        if memory <= high:
            return FargateSize(cpu, memory)
    raise FargateSizeError(f"no Fargate task size has {vcpus} vCPUs and {memory_mib} MiB "
                           "(at most 16 vCPUs and 120 GiB); lower the stage's resources")
