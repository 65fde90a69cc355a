"""Engine commands (serve, jobs, logs, events); filled in by the engine work."""

from __future__ import annotations

from typing import Any


def register(commands: Any) -> None:
    """Adds the engine sub-commands to the `conveyor` parser."""
    del commands
