"""ECS task scale-in protection through the container agent endpoint (``$ECS_AGENT_URI``).

A stream worker on ECS marks its task protected while it holds a message, so neither a
service scale-in nor a deployment stops it mid-item, and clears the mark when idle. The
endpoint is ``PUT $ECS_AGENT_URI/task-protection/v1/state`` with ``ProtectionEnabled`` and
``ExpiresInMinutes`` (1 to 2,880; ECS drops the mark itself when it expires, so a worker that
dies never leaves its task protected for ever).
"""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.request
from collections.abc import Mapping

logger = logging.getLogger(__name__)

STATE_PATH = "/task-protection/v1/state"
MIN_MINUTES, MAX_MINUTES = 1, 2880


def expiry_minutes(visibility_timeout_s: int) -> int:
    """Minutes of protection for one held message: at least its visibility timeout, within ECS's bounds."""
    return max(MIN_MINUTES, min(MAX_MINUTES, math.ceil(visibility_timeout_s / 60) + 1))


class TaskProtection:
    """Sets and clears this task's scale-in protection; a no-op where no agent endpoint exists."""

    def __init__(self, agent_uri: str | None, *, expires_minutes: int, timeout_s: float = 2.0) -> None:
        self.agent_uri = (agent_uri or "").rstrip("/")
        self.expires_minutes = expires_minutes
        self.timeout_s = timeout_s
        self.protected = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], *, visibility_timeout_s: int) -> TaskProtection:
        return cls(environ.get("ECS_AGENT_URI"), expires_minutes=expiry_minutes(visibility_timeout_s))

    @property
    def enabled(self) -> bool:
        return bool(self.agent_uri)

    def on_state(self, state: str) -> None:
        """The worker loop's state hook: ``busy`` protects, ``idle``/``stopped`` release."""
        if state == "busy":
            self.set(True)
        elif state in ("idle", "stopped") and self.protected:
            self.set(False)

    def set(self, enabled: bool) -> bool:
        """PUTs the state; True when the agent accepted it. Failures are logged, never raised:
        losing protection only risks a scale-in that returns the message (at-least-once)."""
        if not self.enabled:
            return False
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.expires_minutes
        request = urllib.request.Request(
            self.agent_uri + STATE_PATH, data=json.dumps(body).encode(), method="PUT",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                reply = json.loads(answer.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as err:
            logger.warning("task protection %s failed: %s", "set" if enabled else "clear", err)
            return False
        failure = reply.get("failure") if isinstance(reply, dict) else None
        if failure:
            logger.warning("task protection refused: %s", failure)
            return False
        self.protected = enabled
        return True
