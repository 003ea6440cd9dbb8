"""API errors: gRPC codes, their HTTP statuses, and one exception type per code in use."""

import enum


class Code(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


HTTP_STATUS = {
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


class ApiError(Exception):
    """Root of every error that reaches a client as `{code, message, details}`."""

    code = Code.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


class InvalidArgument(ApiError):
    code = Code.INVALID_ARGUMENT


class NotFound(ApiError):
    code = Code.NOT_FOUND


class AlreadyExists(ApiError):
    code = Code.ALREADY_EXISTS


class FailedPrecondition(ApiError):
    code = Code.FAILED_PRECONDITION


class Aborted(ApiError):
    code = Code.ABORTED


class Unavailable(ApiError):
    code = Code.UNAVAILABLE


class Unauthenticated(ApiError):
    code = Code.UNAUTHENTICATED


class PermissionDenied(ApiError):
    code = Code.PERMISSION_DENIED
