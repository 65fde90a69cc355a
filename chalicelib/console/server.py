"""The console's HTTP side: mounted at /console on the engine's server; pages, JSON API, live stream.

    GET  /console                      the single page (the console token is embedded in it)
    GET  /console/static/<file>        its script and style sheet
    GET  /console/api/...              read models (views.py), JSON
    GET  /console/api/stream           server-sent events: "something changed, up to seq N"
    POST /console/api/runs[/<id>/cancel|rerun]   actions (actions.py); need the console token

State-changing requests must carry ``X-Conveyor-Console-Token`` (only the served page knows
it) and must not come from another site (``Origin`` / ``Sec-Fetch-Site``), so a page on
another origin cannot start or stop anything through the user's browser.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from chalicelib.console import actions, views
from chalicelib.console.backend import ConsoleBackend
from chalicelib.localbatch.errors import BatchApiError

logger = logging.getLogger(__name__)
PREFIX = "/console"
TOKEN_HEADER = "X-Conveyor-Console-Token"
STATIC = Path(__file__).with_name("static")
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml"}
MAX_BODY = 256 * 1024
STREAM_WAIT = 15.0
STREAM_LIFETIME = 300.0  # the browser's EventSource reconnects; bounds how long a thread is held
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class HttpError(Exception):
    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("message", ""))
        self.status = status
        self.payload = payload


class ConsoleApp:
    """Callable mounted on the engine's HTTP server for paths under /console."""

    def __init__(self, backend: ConsoleBackend) -> None:
        self.backend = backend

    def __call__(self, req: BaseHTTPRequestHandler) -> None:
        url = urlsplit(req.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            _check_host(req)
            if url.path == f"{PREFIX}/api/stream" and req.command == "GET":
                return self._stream(req)
            status, body, content_type = self._route(req, url.path, query)
        except HttpError as err:
            status, body, content_type = err.status, json.dumps(err.payload).encode(), "application/json"
        except Exception:
            logger.exception("console request %s %s failed", req.command, req.path)
            status, content_type = 500, "application/json"
            body = json.dumps({"message": "internal error in the console; see the engine's log"}).encode()
        _send(req, status, body, content_type)

    # -- routing ---------------------------------------------------------------------------------
    def _route(self, req: BaseHTTPRequestHandler, path: str, query: dict[str, str]) -> tuple[int, bytes, str]:
        if req.command == "GET" and path in (PREFIX, PREFIX + "/"):
            return 200, self._page(), "text/html; charset=utf-8"
        if req.command == "GET" and path.startswith(PREFIX + "/static/"):
            return self._static(path[len(PREFIX + "/static/"):])
        if not path.startswith(PREFIX + "/api/"):
            raise HttpError(404, {"message": f"{path}: no such console page"})
        parts = [unquote(p) for p in path[len(PREFIX + "/api/"):].split("/") if p]
        if req.command == "POST":
            self._check_token(req)
            result = self._post(parts, _read_json(req))
        elif req.command == "GET":
            result = self._get(parts, query)
        else:
            raise HttpError(405, {"message": f"{req.command} {path}: the console API takes GET or POST"})
        return 200, json.dumps(result).encode(), "application/json"

    def _get(self, parts: list[str], query: dict[str, str]) -> Any:
        b = self.backend
        try:
            match parts:
                case ["runs"]:
                    return views.runs_view(b, query.get("status") or None)
                case ["runs", run_id]:
                    return views.run_view(b, run_id)
                case ["jobs", job_id]:
                    return views.job_view(b, job_id)
                case ["jobs", job_id, "log"]:
                    return views.job_log(b, job_id, _int(query, "attempt", None))
                case ["queues"]:
                    return views.queues_view(b)
                case ["events"]:
                    after = -1 if query.get("after") == "-1" else _int(query, "after", 0) or 0
                    return views.events_view(b, after, _int(query, "pipelineAfter", 0) or 0, query.get("jobId") or None)
                case ["specs"]:
                    return {"specs": actions.list_specs(b.specs_dir),
                            "specsDir": str(b.specs_dir) if b.specs_dir else None}
        except views.NotFound as err:
            raise HttpError(404, {"message": str(err)}) from None
        except BatchApiError as err:  # the engine's ClientException: an unknown job or attempt
            raise HttpError(404, {"message": err.message}) from None
        raise HttpError(404, {"message": f"/{'/'.join(parts)}: no such console API"})

    def _post(self, parts: list[str], body: Any) -> Any:
        b = self.backend
        try:
            match parts:
                case ["runs"]:
                    return {"runId": actions.start_run(b, body)}
                case ["runs", run_id, "cancel"]:
                    return {"terminated": actions.cancel_run(b, run_id)}
                case ["runs", run_id, "rerun"]:
                    return {"runId": actions.rerun_failed(b, run_id)}
        except actions.Refused as err:
            raise HttpError(400, {"message": str(err), "problems": [p.to_dict() for p in err.problems]}) from None
        raise HttpError(404, {"message": f"POST /{'/'.join(parts)}: no such console action"})

    def _check_token(self, req: BaseHTTPRequestHandler) -> None:
        given = req.headers.get(TOKEN_HEADER) or ""
        if not hmac.compare_digest(given.encode(), self.backend.token.encode()):
            raise HttpError(403, {"message": f"{TOKEN_HEADER}: missing or wrong; reload the console page"})
        origin = req.headers.get("Origin")
        host = req.headers.get("Host", "")
        if req.headers.get("Sec-Fetch-Site") == "cross-site" or (origin and origin not in (f"http://{host}",)):
            raise HttpError(403, {"message": "cross-site requests to the console are refused"})

    # -- pages ------------------------------------------------------------------------------------
    def _page(self) -> bytes:
        text = (STATIC / "index.html").read_text(encoding="utf-8")
        return text.replace("{{TOKEN}}", html.escape(self.backend.token, quote=True)).encode()

    def _static(self, name: str) -> tuple[int, bytes, str]:
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
            raise HttpError(404, {"message": f"no static file {name!r}"})
        return 200, path.read_bytes(), STATIC_TYPES[path.suffix]

    # -- live stream ------------------------------------------------------------------------------
    def _stream(self, req: BaseHTTPRequestHandler) -> None:
        """Server-sent events while the page is open: one message per batch of engine events."""
        engine = self.backend.engine
        req.send_response(200)
        req.send_header("Content-Type", "text/event-stream")
        for name, value in SECURITY_HEADERS.items():
            req.send_header(name, value)
        req.send_header("Connection", "close")
        req.end_headers()
        req.close_connection = True
        after = views.head_seq(engine)
        ends = time.monotonic() + STREAM_LIFETIME
        try:
            req.wfile.write(f"retry: 2000\nevent: hello\ndata: {after}\n\n".encode())
            req.wfile.flush()
            while time.monotonic() < ends:
                asked = time.monotonic()
                events, after = engine.read_events(after, 1000, STREAM_WAIT)
                if events:
                    jobs = sorted({str(e.get("detail", {}).get("jobId", "")) for e in events})[:100]
                    req.wfile.write(f"data: {json.dumps({'seq': after, 'jobs': jobs})}\n\n".encode())
                else:
                    req.wfile.write(b": idle\n\n")  # finds a closed page (the write fails)
                    if time.monotonic() - asked < 1.0:
                        time.sleep(1.0)  # the engine is stopping: read_events no longer waits
                req.wfile.flush()
        except OSError:  # the page went away
            return
        except Exception:  # the engine stopped under the stream: the response has begun, just end it
            logger.debug("console stream ended", exc_info=True)


def _check_host(req: BaseHTTPRequestHandler) -> None:
    """The page and its token only for a Host that names this server (a rebound DNS name does not)."""
    bind, port = req.server.server_address[:2]
    names = {"127.0.0.1", "localhost", "[::1]"} | ({str(bind)} if bind not in ("0.0.0.0", "::", "") else set())
    host = (req.headers.get("Host") or "").strip().lower()
    if host not in {f"{name}:{port}" for name in names}:
        raise HttpError(403, {"message": f"Host: {host[:80]!r} is not this console; open it at 127.0.0.1:{port}"})


def _send(req: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    req.send_response(status)
    req.send_header("Content-Type", content_type)
    req.send_header("Content-Length", str(len(body)))
    for name, value in SECURITY_HEADERS.items():
        req.send_header(name, value)
    req.end_headers()
    if req.command != "HEAD":
        req.wfile.write(body)


def _read_json(req: BaseHTTPRequestHandler) -> Any:
    header = (req.headers.get("Content-Length") or "0").strip()
    if not header.isdigit() or int(header) > MAX_BODY:
        req.close_connection = True
        raise HttpError(400, {"message": f"Content-Length: expected at most {MAX_BODY} bytes"})
    raw = req.rfile.read(int(header)) if int(header) else b""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise HttpError(400, {"message": f"request body: not valid JSON ({err})"}) from None


def _int(query: dict[str, str], name: str, default: int | None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise HttpError(400, {"message": f"{name}: expected a whole number, got {raw[:40]!r}"})
    return int(raw)
