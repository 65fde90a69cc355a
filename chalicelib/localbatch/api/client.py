"""In-process Batch client with boto3's method names, request/response dicts and errors.

The pipeline code is written against boto3's Batch client; this object lets it drive the
embedded engine without HTTP. Requests are checked against botocore's own service model
(as boto3 does before sending), and engine errors surface as botocore ClientError.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import botocore.session
from botocore.exceptions import ClientError, ParamValidationError
from botocore.validate import ParamValidator

from chalicelib.localbatch.api.operations import OPERATIONS, BatchService
from chalicelib.localbatch.errors import BatchApiError

_MODEL = botocore.session.get_session().get_service_model("batch")
_PAGINATED = {"list_jobs": "jobSummaryList", "describe_job_definitions": "jobDefinitions",
              "describe_job_queues": "jobQueues", "describe_compute_environments": "computeEnvironments"}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class LocalBatchClient:
    """boto3-shaped Batch client bound to an engine's service."""

    def __init__(self, service: BatchService) -> None:
        self._service = service
        self._validator = ParamValidator()
        self.meta = type("Meta", (), {"region_name": "us-east-1", "endpoint_url": "local://engine"})()
        for operation in OPERATIONS:
            setattr(self, snake(operation), self._method(operation))

    def _method(self, operation: str) -> Any:
        shape = _MODEL.operation_model(operation).input_shape

        def call(**kwargs: Any) -> dict[str, Any]:
            if shape is not None:
                report = self._validator.validate(kwargs, shape)
                if report.has_errors():
                    raise ParamValidationError(report=report.generate_report())
            try:
                result = self._service.call(operation, kwargs)
            except BatchApiError as err:
                raise ClientError({"Error": {"Code": err.code, "Message": err.message},
                                   "ResponseMetadata": {"HTTPStatusCode": err.status}}, operation) from None
            return {**result, "ResponseMetadata": {"HTTPStatusCode": 200}}

        call.__name__ = snake(operation)
        return call

    def can_paginate(self, name: str) -> bool:
        return name in _PAGINATED

    def get_paginator(self, name: str) -> _Paginator:
        if name not in _PAGINATED:
            raise ValueError(f"operation {name!r} cannot be paginated")
        return _Paginator(getattr(self, name))


class _Paginator:
    def __init__(self, method: Any) -> None:
        self._method = method

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        config = kwargs.pop("PaginationConfig", None) or {}
        if config.get("PageSize"):
            kwargs["maxResults"] = config["PageSize"]
        while True:
            page = self._method(**kwargs)
            yield page
            token = page.get("nextToken")
            if not token:
                return
            kwargs["nextToken"] = token
