"""Pipeline commands (run, validate, plan, runs, run-status, rerun); filled in by the pipeline work."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    """Adds the pipeline sub-commands to the `conveyor` parser."""
    del commands
