"""Console: time until a run page with 10,000-child arrays, among 100 runs, shows its stage counts in Chromium.

The run store is seeded with 100 runs of a three-stage pipeline (two foreach stages of
10,000 items, each one array job, and a join); the measured run also has its 20,000 item
results (100 of them failed, so the failure list and the manifest read are on the path).
`conveyor serve` then serves the console from its own process and Chromium loads
/console#/run/<id> until the graph's qc node reads "9900/10000"; likewise the Runs page
until its table has 100 rows. The engine runs no jobs here: the pages read the run store,
which is what a finished or running 10,000-item run leaves there.

    python bench/bench_console.py [--runs 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, median, write_result
from chalicelib.local.runstore import SqliteRunStore
from chalicelib.objectstores import open_store
from chalicelib.pipeline.manifest import write_manifest
from chalicelib.pipeline.model import Item
from chalicelib.pipeline.records import ItemResult, JobRecord, RunRecord, RunStatus, StageRecord, StageStatus
from tests.e2e.console_harness import CHROMIUM_ARGS, require_chromium

ITEMS = 10_000
RUNS = 100
FAILED = 100
DOCUMENT = {"name": "wide", "stages": [{"name": "qc", "foreach": "item"}, {"name": "align", "after": ["qc"],
            "foreach": "item"}, {"name": "joint", "after": ["align"]}]}


def seed(data_dir: Path) -> str:
    """Writes the runs; returns the measured run's id."""
    store = SqliteRunStore(data_dir / "runs.sqlite3")
    now = int(time.time() * 1000)
    measured = ""
    for n in range(RUNS):
        run_id = f"wide-{n:03d}"
        prefix = (data_dir / "runs" / run_id).as_uri()
        manifest = ""
        if n == RUNS - 1:
            measured = run_id
            items = [Item(key=f"sample-{i:05d}", files=(f"file:///data/sample-{i:05d}.txt",)) for i in range(ITEMS)]
            manifest = write_manifest(open_store(prefix), prefix, items)
        store.create_run(RunRecord(run_id=run_id, pipeline="wide", status=RunStatus.FAILED, created_at=now - n * 60_000,
                                   ended_at=now - n * 60_000 + 50_000, prefix=prefix, items=ITEMS, source="bench",
                                   spec={"document": DOCUMENT, "manifest": manifest}))
        for stage in ("qc", "align"):
            store.put_stage(StageRecord(run_id, stage, StageStatus.FAILED, ITEMS,
                                        {"SUCCEEDED": ITEMS - FAILED, "FAILED": FAILED}, now - 60_000, now))
            store.put_job(JobRecord(run_id, f"{stage}.c0", stage, f"{run_id}-{stage}", f"{run_id}-{stage}",
                                    size=ITEMS, is_array=True, status="FAILED"))
        store.put_stage(StageRecord(run_id, "joint", StageStatus.SUCCEEDED, 1, {"SUCCEEDED": 1}, now - 10_000, now))
    results = [ItemResult(measured, stage, i, "FAILED" if i < FAILED else "SUCCEEDED", f"{measured}-{stage}:{i}",
                          "Dependent Job failed" if stage == "align" and i < FAILED else "Essential container in task exited",
                          1 if i < FAILED else 0)
               for stage in ("qc", "align") for i in range(ITEMS)]
    store.put_item_results(results)
    store.close()
    return measured


def measure(url: str, run_id: str, runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    figures: dict[str, list[float]] = {"run_page_s": [], "runs_page_s": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        for _ in range(runs):
            page.goto("about:blank")
            started = time.perf_counter()
            page.goto(f"{url}/console#/run/{run_id}")
            page.locator('#graph .node[data-stage="qc"] .stage-counts', has_text=f"{ITEMS - FAILED}/{ITEMS}").wait_for()
            figures["run_page_s"].append(time.perf_counter() - started)
            page.goto("about:blank")
            started = time.perf_counter()
            page.goto(f"{url}/console#/runs")
            page.locator(f"tbody tr >> nth={RUNS - 1}").wait_for()
            figures["runs_page_s"].append(time.perf_counter() - started)
        browser.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="conveyor-bench-console-"))
    run_id = seed(data_dir)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "serve", "--port", str(port),
                             "--data-dir", str(data_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        figures = measure(url, run_id, args.runs)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"run page (2 x {ITEMS:,}-child stages, {RUNS} runs): median {median(figures['run_page_s']):.3f}s; "
          f"runs page ({RUNS} runs): median {median(figures['runs_page_s']):.3f}s")
    write_result("console", {"items_per_stage": ITEMS, "runs_in_store": RUNS, "failed_items": FAILED,
                             "runs": args.runs, **figures,
                             "run_page_median_s": median(figures["run_page_s"]),
                             "runs_page_median_s": median(figures["runs_page_s"])})


if __name__ == "__main__":
    main()
