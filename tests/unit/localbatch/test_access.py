"""The request rule (access.py) as pure logic: which Host, Origin and Authorization pass."""

from __future__ import annotations

import pytest

from chalicelib.localbatch.access import CONSOLE_TOKEN_HEADER, allowed_hosts, check, is_sigv4_shaped, signed_headers
from chalicelib.localbatch.errors import AccessDeniedException

HOSTS = allowed_hosts("127.0.0.1", 8000)
SIGNED = signed_headers("POST", "http://127.0.0.1:8000/v1/submitjob", b"{}")["Authorization"]


def test_allowed_hosts_are_loopback_names_and_the_bind_address_with_the_port() -> None:
    assert HOSTS == {"127.0.0.1:8000", "localhost:8000", "[::1]:8000"}
    assert "10.0.0.5:8000" in allowed_hosts("10.0.0.5", 8000)
    assert "[fd00::1]:9" in allowed_hosts("fd00::1", 9)
    assert allowed_hosts("0.0.0.0", 1) == allowed_hosts("127.0.0.1", 1)  # a wildcard is no name


def test_boto_signatures_are_sigv4_shaped_and_lookalikes_are_not() -> None:
    assert is_sigv4_shaped(SIGNED)
    for fake in (None, "", "AWS4-HMAC-SHA256", "Bearer x", "AWS4-HMAC-SHA256 Credential=x",
                 SIGNED.replace("Signature=", "Sig="), SIGNED[:-1] + "Z", "AWS " + SIGNED):
        assert not is_sigv4_shaped(fake), fake


@pytest.mark.parametrize("method,headers", [
    ("GET", {"Host": "127.0.0.1:8000"}),
    ("GET", {"Host": "LOCALHOST:8000", "Origin": "http://evil.example"}),  # reads need only the Host
    ("POST", {"Host": "localhost:8000", "Authorization": SIGNED}),
    ("POST", {"Host": "[::1]:8000", "Authorization": SIGNED, "Origin": "http://localhost:8000"}),
    ("DELETE", {"Host": "127.0.0.1:8000", CONSOLE_TOKEN_HEADER: "tok"}),
])
def test_allowed(method: str, headers: dict[str, str]) -> None:
    check(method, headers, HOSTS, "tok")


@pytest.mark.parametrize("method,headers,field", [
    ("GET", {}, "Host"),
    ("GET", {"Host": "evil.example:8000"}, "Host"),
    ("GET", {"Host": "127.0.0.1"}, "Host"),
    ("POST", {"Host": "127.0.0.1:8000"}, "Authorization"),
    ("HEAD", {"Host": "127.0.0.1:8000"}, "Authorization"),
    ("POST", {"Host": "127.0.0.1:8000", "Authorization": SIGNED, "Origin": "http://evil.example"}, "Origin"),
    ("POST", {"Host": "127.0.0.1:8000", "Authorization": SIGNED, "Origin": "null"}, "Origin"),
    ("POST", {"Host": "127.0.0.1:8000", CONSOLE_TOKEN_HEADER: "wrong"}, "Authorization"),
    ("POST", {"Host": "127.0.0.1:8000", CONSOLE_TOKEN_HEADER: ""}, "Authorization"),
])
def test_refused(method: str, headers: dict[str, str], field: str) -> None:
    with pytest.raises(AccessDeniedException) as info:
        check(method, headers, HOSTS, "tok")
    assert info.value.status == 403 and info.value.message.startswith(field)


def test_an_empty_console_token_admits_nothing() -> None:
    with pytest.raises(AccessDeniedException):
        check("POST", {"Host": "127.0.0.1:8000", CONSOLE_TOKEN_HEADER: ""}, HOSTS, "")
