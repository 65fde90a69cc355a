"""The console's HTTP API over real loopback HTTP: the token and cross-site rules, read models, errors, the stream.

A real engine with the console mounted the way `conveyor serve` mounts it; runs go through the
real pipeline runtime with the test tool package.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.console_harness import Served, served_console

SIMPLE_SPEC = """name: simple
stages:
  - name: copy
    build: {tools}
    compute: on-demand
    resources: {{vcpus: 1, memory: 64}}
    command: [python, -m, tool, copy, --key, "{{key}}", --out, "{{out}}", "{{item}}"]
    foreach: item
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("console-api")
    with served_console(tmp) as srv:
        tools = Path(__file__).resolve().parents[2] / "fixtures" / "pipeline_tools"
        (srv.specs / "simple.yaml").write_text(SIMPLE_SPEC.format(tools=tools))
        yield srv


def request(served: Served, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(served.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, payload


def token_of(served: Served) -> str:
    _, _, page = request(served, "GET", "/console")
    found = re.search(rb'name="conveyor-console-token" content="([^"]+)"', page)
    assert found is not None
    return found.group(1).decode()


def post(served: Served, path: str, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
    status, _, payload = request(served, "POST", path, body, {"X-Conveyor-Console-Token": token_of(served), **headers})
    return status, json.loads(payload)


def test_the_page_carries_the_engines_console_token_and_a_strict_content_policy(served: Served) -> None:
    status, headers, page = request(served, "GET", "/console")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert token_of(served) == served.engine.console_token
    assert "script-src 'self'" in headers["content-security-policy"]
    assert b"https://" not in page  # nothing from a CDN
    for asset in ("main.js", "core.js", "runs.js", "job.js", "misc.js", "console.css"):
        assert request(served, "GET", f"/console/static/{asset}")[0] == 200, asset


def test_a_state_change_without_the_token_or_from_another_site_is_refused(served: Served) -> None:
    status, _, payload = request(served, "POST", "/console/api/runs", {"spec": "simple.yaml"})
    assert status == 403 and b"X-Conveyor-Console-Token" in payload
    status, _, _ = request(served, "POST", "/console/api/runs", {"spec": "simple.yaml"},
                           {"X-Conveyor-Console-Token": "guess"})
    assert status == 403
    status, body = post(served, "/console/api/runs", {"spec": "simple.yaml"}, Origin="http://evil.example")
    assert status == 403 and ("cross-site" in body["message"] or "Origin" in body["message"])
    status, body = post(served, "/console/api/runs", {"spec": "simple.yaml"}, **{"Sec-Fetch-Site": "cross-site"})
    assert status == 403
    assert all(r.pipeline != "simple" for r in served.backend.store().list_runs())  # nothing started


def test_a_foreign_host_gets_neither_the_page_nor_the_api(served: Served) -> None:
    port = urlsplit(served.url).port
    for path in ("/console", "/console/api/runs"):
        status, _, payload = request(served, "GET", path, headers={"Host": f"rebound.example:{port}"})
        assert status == 403 and b"Host" in payload and served.engine.console_token.encode() not in payload
    assert request(served, "GET", "/console", headers={"Host": f"localhost:{port}"})[0] == 200


def test_a_bad_start_answers_every_problem_with_its_path(served: Served) -> None:
    status, body = post(served, "/console/api/runs", {"spec": "nope.yaml"})
    assert status == 400 and body["problems"][0]["path"] == "spec" and "simple.yaml" in body["problems"][0]["message"]
    status, body = post(served, "/console/api/runs", {"spec": "broken.yaml", "input": {"items": 3, "x": 1}})
    paths = [p["path"] for p in body["problems"]]
    assert status == 400 and "$.items" in paths and "$.x" in paths and any(p.startswith("spec $.stages[0]") for p in paths)
    status, body = post(served, "/console/api/runs", {"spec": "simple.yaml", "input": []})
    assert status == 400 and body["problems"] == [{"path": "$", "message": body["problems"][0]["message"]}]


def test_a_run_started_through_the_api_is_tracked_and_shown_as_aggregates(served: Served, tmp_path: Path) -> None:
    items = tmp_path / "items"
    items.mkdir()
    for name in ("a", "b", "c"):
        (items / name).write_text(name)
    status, body = post(served, "/console/api/runs", {"spec": "simple.yaml", "input": {"items": str(items)}})
    assert status == 200, body
    run_id = body["runId"]
    deadline = time.monotonic() + 60
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = json.loads(request(served, "GET", f"/console/api/runs/{run_id}")[2])
        if view["status"] in ("SUCCEEDED", "FAILED"):
            break
        time.sleep(0.2)
    assert view["status"] == "SUCCEEDED", view
    stage = view["stages"][0]
    assert stage["counts"] == {"SUCCEEDED": 3} and stage["after"] == []
    assert len(stage["jobs"]) == 1 and stage["jobs"][0]["isArray"]  # one array parent, not a row per child
    job = json.loads(request(served, "GET", f"/console/api/jobs/{stage['jobs'][0]['jobId']}")[2])
    assert job["array"]["size"] == 3 and job["run"]["runId"] == run_id
    assert [h["status"] for h in job["history"]][-1] == "SUCCEEDED"
    listed = json.loads(request(served, "GET", "/console/api/runs?status=SUCCEEDED")[2])["runs"]
    assert run_id in [r["runId"] for r in listed]
    assert run_id not in [r["runId"] for r in json.loads(request(served, "GET", "/console/api/runs?status=FAILED")[2])["runs"]]


def test_unknown_things_are_404_with_a_message_never_500(served: Served) -> None:
    for path in ("/console/api/runs/nope", "/console/api/jobs/nope", "/console/api/jobs/nope/log",
                 "/console/api/nothing", "/console/static/..%2Fserver.py", "/console/static/index.html.bak"):
        status, _, payload = request(served, "GET", path)
        assert status == 404 and json.loads(payload)["message"], path
    status, _, payload = request(served, "GET", "/console/api/events?after=x")
    assert status == 400 and b"after" in payload
    status, _, _ = request(served, "POST", "/console/api/runs/nope/cancel", {},
                           {"X-Conveyor-Console-Token": token_of(served)})
    assert status == 400


def test_the_stream_says_hello_with_the_feeds_position(served: Served) -> None:
    url = urlsplit(served.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("GET", "/console/api/stream")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    lines = [response.fp.readline() for _ in range(3)]
    conn.close()
    assert lines[0].startswith(b"retry:") and lines[1] == b"event: hello\n" and lines[2].startswith(b"data: ")


def test_the_console_does_nothing_until_someone_uses_it(tmp_path: Path) -> None:
    with served_console(tmp_path) as srv:
        # No tracker subscribed, no run store opened, no feed reader waiting.
        assert srv.engine._subscribers == [] and srv.backend._runtime is None and srv.backend._store is None
        assert srv.engine._unfiltered_readers == 0


def test_serve_offers_the_specs_folder_and_prints_the_console_url(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "one.yaml").write_text("name: one\nstages: []\n")
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "serve", "--port", "0", "--data-dir",
                             str(tmp_path / "data"), "--specs", str(specs)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        console_url = lines[1].strip().removeprefix("console: ")
        assert console_url.endswith("/console"), lines
        url = urlsplit(console_url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.request("GET", "/console/api/specs")
        body = json.loads(conn.getresponse().read())
        assert body["specs"] == [{"file": "one.yaml", "pipeline": "one"}]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    bad = subprocess.run([sys.executable, "-m", "chalicelib.cli", "serve", "--specs", str(tmp_path / "missing"),
                          "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--specs" in bad.stderr


def test_a_missing_browser_fails_with_the_command_that_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.e2e import console_harness

    monkeypatch.setattr(console_harness, "CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        console_harness.require_chromium()


def test_run_with_console_serves_its_engine_while_the_run_goes(tmp_path: Path) -> None:
    tools = Path(__file__).resolve().parents[2] / "fixtures" / "pipeline_tools"
    spec = tmp_path / "slowish.yaml"
    spec.write_text(SIMPLE_SPEC.format(tools=tools).replace("--out", '--slow-key, "{key}", --sleep, "3", --out'))
    items = tmp_path / "items"
    items.mkdir()
    (items / "a").write_text("a")
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "run", str(spec), "--items", str(items),
                             "--data-dir", str(tmp_path / "data"), "--console", "--no-progress"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("console: http://127.0.0.1:"), line
        url = urlsplit(line.split(" ", 1)[1].strip())
        deadline = time.monotonic() + 30
        runs: list[dict[str, Any]] = []
        while not runs and time.monotonic() < deadline:  # the URL is printed before the run is planned
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            conn.request("GET", "/console/api/runs")
            runs = json.loads(conn.getresponse().read())["runs"]
            time.sleep(0.2)
        assert [r["pipeline"] for r in runs] == ["simple"]
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
