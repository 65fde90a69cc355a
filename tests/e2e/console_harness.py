"""Shared set-up of the console tests: an engine served with the console mounted, a specs folder, Chromium.

The server is the one `conveyor serve` builds (BatchHttpServer with `console_mounts`), in
this process so tests can also look at the engine directly. Chromium is Debian's package,
driven by Playwright's Python API; a missing browser fails the tests with the command that
installs it (never `playwright install`: its download site is not reachable here).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chalicelib.console.backend import ConsoleBackend
from chalicelib.console.mount import console_mounts
from chalicelib.localbatch.engine import Engine, HostCapacity
from chalicelib.localbatch.rest import BatchHttpServer
from chalicelib.localbatch.scheduling.scheduler import EngineOptions
from tests.e2e.pipeline_harness import STAGE

REPO = Path(__file__).resolve().parents[2]
GENOMICS = REPO / "examples" / "genomics"
CHROMIUM = os.environ.get("CONVEYOR_CHROMIUM", "/usr/bin/chromium")
INSTALL_HINT = "apt-get update && apt-get install -y chromium   (or `make test`, which installs it where it can)"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
# Where the tests save a screenshot of each page (docs/console/ when regenerating the docs).
SCREENSHOTS = os.environ.get("CONVEYOR_CONSOLE_SCREENSHOTS")

SLOW_SPEC = f"""name: slow
stages:
  - name: wait
{STAGE}    command: [python, -m, tool, copy, --key, "{{key}}", --slow-key, "{{key}}", --sleep, "60", --out, "{{out}}", "{{item}}"]
    foreach: item
  - name: after-wait
    after: [wait]
{STAGE}    command: [python, -m, tool, copy, --key, "{{key}}", --out, "{{out}}", "{{wait}}"]
    foreach: item
"""


@dataclass
class Served:
    url: str
    engine: Engine
    backend: ConsoleBackend
    specs: Path


def write_specs(folder: Path) -> Path:
    """The genomics spec (its `build: .` made absolute) and a slow spec whose jobs sleep, to cancel."""
    folder.mkdir(parents=True, exist_ok=True)
    genomics = (GENOMICS / "pipeline.yaml").read_text().replace("build: .", f"build: {GENOMICS}")
    (folder / "genomics.yaml").write_text(genomics)
    (folder / "slow.yaml").write_text(SLOW_SPEC)
    (folder / "broken.yaml").write_text("name: broken\nstages:\n  - name: a\n    after: [nowhere]\n")
    return folder


@contextmanager
def served_console(tmp: Path) -> Iterator[Served]:
    engine = Engine(tmp / "engine", host=HostCapacity(vcpus=4, memory_mib=8192, gpus=0),
                    options=EngineOptions(kill_grace_seconds=1.0)).start()
    specs = write_specs(tmp / "specs")
    mounts, backend = console_mounts(engine, specs)
    server = BatchHttpServer(engine, mounts=mounts).start()
    try:
        yield Served(server.url, engine, backend, specs)
    finally:
        server.stop()
        backend.close()
        engine.stop()


def require_chromium() -> str:
    path = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).is_file() else None)
    if path is None:
        pytest.fail(f"Chromium not found at {CHROMIUM}; the console's browser tests need it. Install it with: "
                    f"{INSTALL_HINT}", pytrace=False)
    return path


@contextmanager
def chromium_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)
