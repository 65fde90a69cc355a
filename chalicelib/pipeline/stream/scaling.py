"""The scaling decision: how many workers a stage should run for its queue's backlog.

Target tracking on backlog per worker: the fleet aims at ``backlog_per_worker`` messages
(waiting + in flight) per worker, so the wanted count is ``ceil(backlog / target)`` within
``[min_workers, max_workers]``. At zero workers backlog per worker has no value (it divides
by zero), so a step rule covers 0 -> 1: any backlog starts at least one worker. Scale-in is
the fleet's business: it stops only idle workers, so a busy one is never interrupted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chalicelib.pipeline.stream.settings import StreamSettings


@dataclass(frozen=True)
class Backlog:
    visible: int  # ApproximateNumberOfMessages
    in_flight: int  # ApproximateNumberOfMessagesNotVisible

    @property
    def total(self) -> int:
        return self.visible + self.in_flight


def desired_workers(backlog: Backlog, current: int, settings: StreamSettings) -> int:
    """The worker count to run now (``current`` only matters for the 0 -> 1 rule)."""
    low, high = settings.min_workers, max(settings.max_workers, settings.min_workers)
    if backlog.total <= 0:
        return low
    wanted = math.ceil(backlog.total / settings.backlog_per_worker)
    if current == 0:
        wanted = max(wanted, 1)  # the 0 -> 1 step: backlog per worker is undefined at zero workers
    return max(low, min(high, max(wanted, 1)))
