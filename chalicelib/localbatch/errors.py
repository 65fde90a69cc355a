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
