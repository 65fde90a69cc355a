"""Fitting the tool's command line into what ``execve`` takes.

A join's whole-argument placeholder becomes one argument per item: over 30,000 items of
``{b}``, absolute scratch paths (about 80 bytes each) make a command line over Linux's limit
(``ARG_MAX``, 2 MiB by default, shared with the environment), and the tool could not start
("Argument list too long"). The same paths relative to the tool's working folder (the scratch
folder: ``up/b/<key>``) are a fifth of that, so the runner uses them when, and only when, the
absolute ones do not fit. What still does not fit is refused with the figures, before anything runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

MAX_ARG_STRLEN = 131_072  # Linux: one argument or variable at most 32 pages
_POINTER = 8
_MARGIN = 4096  # what execve also counts: the program's path, the auxiliary vector


def command_bytes(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """What ``execve`` counts against its limit: each string with its NUL, and a pointer to it."""
    strings = [*argv, *(f"{key}={value}" for key, value in environ.items())]
    return sum(len(os.fsencode(text)) + 1 + _POINTER for text in strings)


def arg_limit() -> int:
    try:
        return int(os.sysconf("SC_ARG_MAX"))
    except (ValueError, OSError):
        return 2_097_152


def fits(argv: Sequence[str], environ: Mapping[str, str], limit: int | None = None) -> bool:
    """Whether ``execve`` would take this command line and environment."""
    if any(len(os.fsencode(arg)) >= MAX_ARG_STRLEN for arg in argv):
        return False
    return command_bytes(argv, environ) <= (arg_limit() if limit is None else limit) - _MARGIN


def relative_values(values: Mapping[str, list[str]], folder: str) -> dict[str, list[str]]:
    """The placeholder values, with every path inside ``folder`` made relative to it."""
    inside = folder.rstrip("/") + "/"
    return {
        name: [os.path.relpath(value, folder) if value.startswith(inside) else value for value in paths]
        for name, paths in values.items()
    }


def too_long(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    """Why the command line does not fit, with its figures."""
    longest = max((len(os.fsencode(arg)) for arg in argv), default=0)
    return (f"the tool's command line does not fit this system's limit even with paths relative to its "
            f"working folder: {len(argv)} argument(s), {command_bytes(argv, environ)} bytes with the "
            f"environment (limit {arg_limit()}), longest argument {longest} bytes (limit {MAX_ARG_STRLEN - 1}); "
            "let the tool read the folders itself, e.g. list up/<stage>/ in its working folder")
