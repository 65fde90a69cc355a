"""SqsError: an SQS error with its modelled shape name, its query-protocol code and the fault side.

boto3 reads SQS errors through the query-compatibility path: ``__type`` names the modelled
shape (``QueueDoesNotExist``) and the ``x-amzn-query-error`` header carries the historical
query code and fault (``AWS.SimpleQueueService.NonExistentQueue;Sender``); botocore picks the
exception class from the shape name it keeps as ``QueryErrorCode``.
"""

from __future__ import annotations

from chalicelib.localbatch.errors import BatchApiError

# shape name -> the query error code AWS sends for it
QUERY_CODES = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "ReceiptHandleIsInvalid": "ReceiptHandleIsInvalid",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
    "InvalidAttributeName": "InvalidAttributeName",
    "InvalidAttributeValue": "InvalidAttributeValue",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
    "PurgeQueueInProgress": "AWS.SimpleQueueService.PurgeQueueInProgress",
    "InvalidParameterValue": "InvalidParameterValue",
    "MissingParameter": "MissingParameter",
    "InternalError": "InternalError",
}


class SqsError(BatchApiError):
    """Rendered by rest.py like every engine error, plus the ``x-amzn-query-error`` header."""

    def __init__(self, shape: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = shape
        self.status = status
        fault = "Sender" if status < 500 else "Receiver"
        self.headers = {"x-amzn-query-error": f"{QUERY_CODES.get(shape, shape)};{fault}"}


def invalid(message: str) -> SqsError:
    return SqsError("InvalidParameterValue", message)


def missing(name: str) -> SqsError:
    return SqsError("MissingParameter", f"The request must contain the parameter {name}.")


def no_queue(name: str) -> SqsError:
    return SqsError("QueueDoesNotExist", f"The specified queue does not exist: {name!r}.")
