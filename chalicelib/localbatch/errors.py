"""BatchApiError family: AWS error codes and HTTP statuses, rendered in one place (rest.py, client.py)."""

from __future__ import annotations


class BatchApiError(Exception):
    """An error with the code and HTTP status AWS Batch would answer with."""

    code = "ServerException"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientException(BatchApiError):
    """The caller's mistake: bad parameters, a missing resource, a wrong state."""

    code = "ClientException"
    status = 400


class ServerException(BatchApiError):
    """Something broke inside the engine. Never raised for a client's mistake."""

    code = "ServerException"
    status = 500


class AccessDeniedException(BatchApiError):
    """The request breaks the engine's request rule (foreign Host or Origin, no signature); see access.py."""

    code = "AccessDeniedException"
    status = 403


class ServiceUnavailable(BatchApiError):
    """The engine's scheduler has stopped (see Engine.failure); nothing would run what is accepted."""

    code = "ServerException"
    status = 503
