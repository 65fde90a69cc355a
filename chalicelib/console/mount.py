"""How a composition root puts the console on an engine's HTTP server: `mounts=console_mounts(...)`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from chalicelib.console.backend import ConsoleBackend, adopt_runtime
from chalicelib.console.server import PREFIX, ConsoleApp
from chalicelib.local.runtime import LocalRuntime, open_with_engine


def console_mounts(engine: Any, specs_dir: str | Path | None = None, runtime: LocalRuntime | None = None
                   ) -> tuple[dict[str, Callable[[Any], None]], ConsoleBackend]:
    """The console's route for ``BatchHttpServer(mounts=...)`` and its backend (close it after the server).

    Without ``runtime`` (`conveyor serve`) the pipeline runtime is opened on the first run the
    console starts; with one (`conveyor run --console`) the console shares it.
    """
    specs = Path(specs_dir).resolve() if specs_dir else None
    if runtime is not None:
        backend = adopt_runtime(engine, runtime, specs)
    else:
        backend = ConsoleBackend(engine=engine, open_runtime=lambda: open_with_engine(engine), specs_dir=specs)
    return {PREFIX: ConsoleApp(backend)}, backend
