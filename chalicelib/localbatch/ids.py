"""Fast random hex identifiers (os.urandom per id costs more than a whole state change)."""

from __future__ import annotations

import random

_random = random.SystemRandom().randrange(1 << 62)
_rng = random.Random(_random)


def hex_id(length: int) -> str:
    return f"{_rng.getrandbits(length * 4):0{length}x}"
