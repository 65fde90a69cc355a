"""The poison-message rule: what a worker does with a message whose item failed.

A failure is retried by letting the message come back (visibility set to a short backoff)
until it has been received ``max_receives`` times; then the worker itself sends it to the
stage's dead-letter queue with the reason, and deletes it. A message that cannot be read is
dead-lettered at once (no retry can fix it). The queue's own RedrivePolicy, at the same
``max_receives``, catches an item whose worker died every time (it never reached this rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

MAX_BACKOFF_SECONDS = 30


class Verdict(str, Enum):
    RETRY = "RETRY"
    DEAD_LETTER = "DEAD_LETTER"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    retry_after: int = 0  # seconds until the message is visible again (RETRY)


def on_failure(receive_count: int, max_receives: int, reason: str, *, readable: bool = True) -> Decision:
    """Retry with a backoff while receives remain, else dead-letter with the reason."""
    if not readable:
        return Decision(Verdict.DEAD_LETTER, reason)
    if receive_count >= max_receives:
        return Decision(Verdict.DEAD_LETTER, f"failed {receive_count} time(s), the most allowed: {reason}")
    return Decision(Verdict.RETRY, reason, retry_after=min(MAX_BACKOFF_SECONDS, 2 ** (receive_count - 1)))
