"""Fast random identifiers in UUID form (os.urandom per id costs more than a whole state change)."""

from __future__ import annotations

import random

_random = random.SystemRandom().randrange(1 << 62)
_rng = random.Random(_random)


def uuid4_text() -> str:
    """A random version-4 UUID string; unique, not for secrets."""
    value = (_rng.getrandbits(128) & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC000 << 48) | (0x8000 << 48)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def hex_id(length: int) -> str:
    return f"{_rng.getrandbits(length * 4):0{length}x}"
