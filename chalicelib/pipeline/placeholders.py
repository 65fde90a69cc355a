"""Command placeholders (`{item}`, `{out}`, `{key}`, `{<stage>}`): finding and substituting them.

Rules (shared by the spec checker and the runner):

* ``{name}`` where name is letters, digits, ``_`` and ``-``; ``{{`` and ``}}``
  are literal braces. Anything else (``Ref::x``, ``$HOME``, ``${HOME}``)
  passes through.
* An argument that is exactly one placeholder expands to its values as
  separate arguments (zero or more): ``["{item}"]`` with two read files
  becomes ``["r1.fq", "r2.fq"]``.
* A placeholder inside a longer argument is replaced by its values joined
  with single spaces: ``"--in={item}"`` becomes ``"--in=r1.fq r2.fq"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# ``${NAME}`` is left alone: it is a shell variable for commands like ``sh -c``.
_TOKEN = re.compile(r"\{\{|\}\}|(?<!\$)\{([A-Za-z_][A-Za-z0-9_-]*)\}")
BUILTIN = ("item", "key", "out")


def find_placeholders(argument: str) -> list[str]:
    """Names of the placeholders in one command argument, in order."""
    return [m.group(1) for m in _TOKEN.finditer(argument) if m.group(1)]


def substitute(command: Sequence[str], values: Mapping[str, Sequence[str]]) -> list[str]:
    """Expands placeholders in ``command`` (see module rules).

    Raises:
        KeyError: a placeholder with no value in ``values``.
    """
    argv: list[str] = []
    for argument in command:
        whole = _TOKEN.fullmatch(argument)
        if whole and whole.group(1):
            argv.extend(values[whole.group(1)])
            continue
        argv.append(_TOKEN.sub(lambda m: _replace(m, values), argument))
    return argv


def _replace(match: re.Match[str], values: Mapping[str, Sequence[str]]) -> str:
    name = match.group(1)
    if name is None:
        return match.group(0)[0]
    return " ".join(values[name])
