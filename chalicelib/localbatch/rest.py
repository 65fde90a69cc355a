"""HTTP server: POST /v1/<operation> -> service (the AWS Batch rest-json API), plus /events and /logs.

Errors are rendered here and only here: `{"__type": code, "message": ...}` with the
`x-amzn-ErrorType` header, which botocore's rest-json parser reads. A client's mistake is
always a 400 ClientException; only a bug in the engine produces a 500.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from chalicelib.localbatch import access
from chalicelib.localbatch.api.operations import OPERATIONS
from chalicelib.localbatch.engine import Engine
from chalicelib.localbatch.errors import BatchApiError, ClientException, ServerException, ServiceUnavailable

logger = logging.getLogger(__name__)
_ROUTES = {f"/v1/{name.lower()}": name for name in OPERATIONS}
_TAG_METHODS = {"GET": "ListTagsForResource", "POST": "TagResource", "DELETE": "UntagResource"}
MAX_BODY = 1024 * 1024
MAX_SEQ = 2**63 - 1  # SQLite's INTEGER; an event sequence number past it is a client's typo
# Connections the kernel queues before accept(): a burst of clients (a pipeline's fan-out, a
# load test) must wait there, not be reset. The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 4096
SHUTDOWN_POLL_SECONDS = 0.05  # how often the serving loop checks for stop()


def _reject_constant(name: str) -> Any:
    raise ClientException(f"request body: {name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ClientException(f"request body: the number {text[:40]} is out of range")
    return value


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each response waits for the
    # client's delayed ACK (~40 ms per call over loopback).
    disable_nagle_algorithm = True
    server_version = "conveyor-localbatch"
    engine: Engine
    hosts: frozenset[str] = frozenset()
    mounts: tuple[tuple[str, Callable[[BaseHTTPRequestHandler], None]], ...] = ()

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, made-up ones) meets the same rule and answer as unknown paths,
        # not the stdlib's 501 page.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            self._admit()
            if self._mounted():
                return
            status, payload, content_type = self._route()
        except BatchApiError as err:
            status, content_type = err.status, "application/json"
            payload = json.dumps({"__type": err.code, "message": err.message}).encode()
            self._send(status, payload, content_type, error=err.code, headers=getattr(err, "headers", None))
            return
        except Exception:
            logger.exception("request %s %s failed", self.command, self.path)
            err = ServerException("Internal error in the local engine; see its log")
            self._send(500, json.dumps({"__type": err.code, "message": err.message}).encode(),
                       "application/json", error=err.code)
            return
        self._send(status, payload, content_type)

    def _mounted(self) -> bool:
        """Hands the request to a handler mounted on its path (the console), which answers it itself."""
        serve = next((serve for prefix, serve in self.mounts if self.path.startswith(prefix)), None)
        if serve is not None:
            serve(self)
        return serve is not None

    def _send(self, status: int, payload: bytes, content_type: str, error: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():  # e.g. SQS's x-amzn-query-error
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if error:
            self.send_header("x-amzn-ErrorType", error)
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has headers only
            self.wfile.write(payload)

    def _admit(self) -> None:
        """The request rule (access.py) and the watchdog's verdict, before the body is read."""
        try:
            access.check(self.command, self.headers, self.hosts, self.engine.console_token)
        except BatchApiError:
            self.close_connection = True  # its body stays unread: it must not parse as a request
            raise
        if self.engine.failure is not None and urlsplit(self.path).path != "/health":
            self.close_connection = True
            raise ServiceUnavailable(f"the engine has stopped scheduling ({self.engine.failure}); restart it")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (a malformed request line, headers too long) in our error shape."""
        error = ClientException(message or "malformed request") if code < 500 else ServerException(message or "")
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unreadable request line: answer with headers anyway
            self.request_version = "HTTP/1.0"
        self._send(code, json.dumps({"__type": error.code, "message": error.message}).encode(), "application/json",
                   error=error.code)

    def _body(self) -> Any:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raw = self._chunked_body()
        else:
            raw = self._sized_body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, UnicodeDecodeError) as err:
            raise ClientException(f"request body: not valid JSON ({err})") from None
        except RecursionError:
            raise ClientException("request body: nested too deeply") from None

    def _sized_body(self) -> bytes:
        header = (self.headers.get("Content-Length") or "0").strip()
        if not header.isdigit():
            self.close_connection = True
            raise ClientException(f"Content-Length: expected a number of bytes, got {header[:40]!r}")
        length = int(header)
        if length > MAX_BODY:
            self.close_connection = True  # the unread body must not be parsed as the next request
            raise ClientException(f"request body: at most {MAX_BODY} bytes, got {length}")
        return self.rfile.read(length) if length else b""

    def _chunked_body(self) -> bytes:
        """Reads a `Transfer-Encoding: chunked` body (RFC 9112 section 7.1); trailers are skipped."""
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                size = -1
            if size < 0:
                self.close_connection = True
                raise ClientException(f"request body: bad chunk size line {line[:40]!r}")
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields: nothing here uses them
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                self.close_connection = True
                raise ClientException(f"request body: at most {MAX_BODY} bytes")
            parts.append(self.rfile.read(size))
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                self.close_connection = True
                raise ClientException("request body: a chunk does not end with CRLF")

    def _route(self) -> tuple[int, bytes, str]:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body = self._body()
        target = self.headers.get("X-Amz-Target") or ""
        if self.command == "POST" and target.startswith("AmazonSQS."):  # SQS's JSON 1.0 protocol
            result = self.engine.sqs.call(target[len("AmazonSQS."):], body, f"http://{self.headers.get('Host', 'localhost')}")
            return 200, json.dumps(result).encode(), "application/x-amz-json-1.0"
        if url.path.startswith("/v1/tags/"):
            arn = unquote(url.path[len("/v1/tags/"):])
            operation = _TAG_METHODS.get(self.command)
            if operation is None:
                raise ClientException(f"{self.command} {url.path}: tags take GET, POST or DELETE")
            request = dict(body) if isinstance(body, dict) else {}
            request["resourceArn"] = arn
            if operation == "UntagResource":
                request["tagKeys"] = query.get("tagKeys", [])
            return 200, json.dumps(self.engine.service.call(operation, request)).encode(), "application/json"
        if url.path in _ROUTES and self.command == "POST":
            result = self.engine.service.call(_ROUTES[url.path], body)
            return 200, json.dumps(result).encode(), "application/json"
        if url.path == "/events" and self.command == "GET":
            return self._events(query)
        if url.path.startswith("/logs/") and self.command == "GET":
            attempt = query.get("attempt", [None])[0]
            if attempt is not None and not (attempt.isascii() and attempt.isdigit() and len(attempt) < 10):
                raise ClientException(f"attempt: expected an attempt number (1, 2, ...), got {attempt[:40]!r}")
            text = self.engine.read_log(unquote(url.path[len("/logs/"):]), None if attempt is None else int(attempt))
            return 200, text.encode(errors="replace"), "text/plain; charset=utf-8"
        if url.path == "/health":
            return self._health()
        raise ClientException(f"{self.command} {url.path}: no such operation on the local engine")

    def _health(self) -> tuple[int, bytes, str]:
        failure = self.engine.failure
        if failure is None:
            return 200, b'{"status":"ok"}', "application/json"
        return 503, json.dumps({"status": "failed", "reason": failure}).encode(), "application/json"

    def _events(self, query: dict[str, list[str]]) -> tuple[int, bytes, str]:
        def number(name: str, default: float) -> float:
            raw = query.get(name, [str(default)])[0]
            try:
                value = float(raw)
            except ValueError:
                raise ClientException(f"{name}: expected a number, got {raw!r}") from None
            if not math.isfinite(value):  # nan would make `wait` block forever and `after` crash
                raise ClientException(f"{name}: expected a finite number, got {raw!r}")
            return value
        after = int(number("after", 0))
        if not 0 <= after <= MAX_SEQ:
            raise ClientException(f"after: expected an event sequence number from 0 to {MAX_SEQ}")
        wait = min(max(number("wait", 0), 0.0), 20.0)
        limit = int(min(max(number("limit", 1000), 1), 10000))
        events, next_seq = self.engine.read_events(after, limit, wait, query.get("jobId", [None])[0])
        return 200, json.dumps({"events": events, "next": next_seq}).encode(), "application/json"


class _Server(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is no engine fault: no traceback for it."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("client %s went away: %s", client_address, error)
            return
        logger.exception("request from %s failed", client_address)


class BatchHttpServer:
    """Serves an engine on host:port in background threads."""

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 0,
                 mounts: dict[str, Callable[[BaseHTTPRequestHandler], None]] | None = None) -> None:
        """``mounts``: path prefix -> a handler that answers those requests itself (e.g. the console)."""
        handler = type("Handler", (_Handler,), {"engine": engine, "mounts": tuple((mounts or {}).items())})
        self.httpd = _Server((host, port), handler)
        handler.hosts = access.allowed_hosts(host, self.port)
        # shutdown() waits for the loop to look at its flag: every 50 ms, not socketserver's 500
        # (each stop of `conveyor run` and of the tests paid the difference).
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
                                       name="localbatch-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{host}:{self.port}"

    def start(self) -> BatchHttpServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
