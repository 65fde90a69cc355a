"""Who may call the engine over HTTP: the request rule that keeps web pages and DNS rebinding out.

A browser lets any page POST `text/plain` to 127.0.0.1 without a preflight, and a rebound DNS
name reaches loopback under a foreign Host. So every request must name the engine itself in
`Host`; every request that is not a GET must also carry a SigV4-shaped `Authorization` header
(boto3 and the aws CLI always sign; no browser can send one cross-site without a preflight
the engine never grants) or the console's page token, and no foreign `Origin`. The signature
itself is not verified: any key works locally, the header's shape is what a page cannot forge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from chalicelib.localbatch.errors import AccessDeniedException

CONSOLE_TOKEN_HEADER = "X-Conveyor-Console-Token"
# AWS4-HMAC-SHA256 Credential=<key>/<yyyymmdd>/<region>/<service>/aws4_request,
#   SignedHeaders=<a;b;c>, Signature=<64 hex>
_SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 +Credential=[^/\s,]+/[0-9]{8}/[^/\s,]+/[^/\s,]+/aws4_request *, *"
    r"SignedHeaders=[a-z0-9;_.-]+ *, *Signature=[0-9a-f]{64}$")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(bind_host: str, port: int) -> frozenset[str]:
    """The `Host` values that name this engine: loopback names and the bind address, with the port."""
    names = set(LOOPBACK_NAMES)
    if bind_host and bind_host not in ("0.0.0.0", "::"):  # a wildcard bind is no name a client uses
        names.add(f"[{bind_host}]" if ":" in bind_host and not bind_host.startswith("[") else bind_host)
    return frozenset(f"{name.lower()}:{port}" for name in names)


def is_sigv4_shaped(value: str | None) -> bool:
    return bool(value) and _SIGV4.match(value.strip()) is not None  # type: ignore[union-attr]


def check(method: str, headers: Mapping[str, str], hosts: frozenset[str], console_token: str) -> None:
    """Raises AccessDeniedException (403) when the request breaks the rule; see the module note."""
    host = (headers.get("Host") or "").strip().lower()
    if host not in hosts:
        raise AccessDeniedException(f"Host: {host[:80]!r} is not this engine; use one of {', '.join(sorted(hosts))}")
    if method == "GET":
        return
    origin = headers.get("Origin")
    if origin is not None and origin.strip().lower() not in {f"http://{h}" for h in hosts}:
        raise AccessDeniedException(f"Origin: requests from {origin[:80]!r} are refused")
    if is_sigv4_shaped(headers.get("Authorization")):
        return
    token = headers.get(CONSOLE_TOKEN_HEADER)
    if token and console_token and _same(token, console_token):
        return
    raise AccessDeniedException(
        "Authorization: a SigV4-signed request is required (boto3 and the aws CLI sign with any "
        f"credentials), or the console's {CONSOLE_TOKEN_HEADER} header")


def _same(a: str, b: str) -> bool:
    import hmac
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def signed_headers(method: str, url: str, body: bytes = b"", region: str = "us-east-1") -> dict[str, str]:
    """Headers of a SigV4-signed request with placeholder credentials, for callers without boto3's client.

    The engine checks only the signature's shape; a real signature keeps the request valid
    for anything that checks more.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("conveyor-local", "conveyor-local"), "batch", region).add_auth(request)
    return {key: str(value) for key, value in request.headers.items()}
