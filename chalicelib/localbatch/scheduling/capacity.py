"""Host capacity and placement: vCPU, memory and GPU accounting against compute environments and the host."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from chalicelib.localbatch.model import (
    BLOCKED_CPU,
    BLOCKED_GPU,
    BLOCKED_MEMORY,
    BLOCKED_NO_CE,
    ComputeEnvironment,
    JobQueue,
    Resources,
)


@dataclass(frozen=True)
class HostCapacity:
    """What this machine offers to jobs. GPUs may be declared on a machine without any."""

    vcpus: float
    memory_mib: int
    gpus: int = 0

    @classmethod
    def detect(cls) -> HostCapacity:
        return cls(vcpus=float(os.cpu_count() or 1), memory_mib=_total_memory_mib(), gpus=_count_gpus())


def _total_memory_mib() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 4096


def _count_gpus() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


@dataclass
class HostLedger:
    """Free capacity on the host, shared by every compute environment."""

    host: HostCapacity
    used_vcpus: float = 0.0
    used_memory: int = 0
    free_gpus: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.free_gpus = list(range(self.host.gpus))

    def fits_now(self, res: Resources) -> bool:
        return (self.used_vcpus + res.vcpus <= self.host.vcpus + 1e-9
                and self.used_memory + res.memory_mib <= self.host.memory_mib
                and len(self.free_gpus) >= res.gpus)

    def take(self, res: Resources) -> tuple[int, ...]:
        self.used_vcpus += res.vcpus
        self.used_memory += res.memory_mib
        gpus = tuple(self.free_gpus[: res.gpus])
        del self.free_gpus[: res.gpus]
        return gpus

    def give_back(self, res: Resources, gpus: tuple[int, ...]) -> None:
        self.used_vcpus = max(0.0, self.used_vcpus - res.vcpus)
        self.used_memory = max(0, self.used_memory - res.memory_mib)
        self.free_gpus = sorted(set(self.free_gpus) | set(gpus))


def ce_vcpu_limit(ce: ComputeEnvironment, host: HostCapacity) -> float:
    return host.vcpus if ce.max_vcpus is None else min(ce.max_vcpus, host.vcpus)


def never_fits(queue: JobQueue, ces: dict[str, ComputeEnvironment], host: HostCapacity,
               res: Resources) -> str | None:
    """The AWS blocked reason when no enabled environment of the queue could ever hold the job."""
    enabled = [ces[name] for _, name in queue.ce_order if name in ces and ces[name].state == "ENABLED"]
    if not enabled:
        return BLOCKED_NO_CE
    if all(res.vcpus > ce_vcpu_limit(ce, host) + 1e-9 for ce in enabled):
        return BLOCKED_CPU
    if res.memory_mib > host.memory_mib:
        return BLOCKED_MEMORY
    if res.gpus > host.gpus:
        return BLOCKED_GPU
    return None


def choose_environment(queue: JobQueue, ces: dict[str, ComputeEnvironment], ledger: HostLedger,
                       res: Resources) -> ComputeEnvironment | None:
    """The first environment, in the queue's order, with room for the job now."""
    if not ledger.fits_now(res):
        return None
    for _, name in queue.ce_order:
        ce = ces.get(name)
        if ce is None or ce.state != "ENABLED":
            continue
        if ce.used_vcpus + res.vcpus <= ce_vcpu_limit(ce, ledger.host) + 1e-9:
            return ce
    return None
