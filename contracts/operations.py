"""yandex.cloud.operation.Operation, google.rpc.Status and the Any payloads operations carry."""

import datetime as dt

import msgspec

from contracts.access import (
    AccessBindingsOperationResult,
    SetAccessBindingsMetadata,
    UpdateAccessBindingsMetadata,
)
from contracts.base import Message, RequiredId
from contracts.images import ImageAny

COMPUTE = "type.googleapis.com/yandex.cloud.compute.v1."


class CreateImageMetadata(Message, tag_field="@type", tag=COMPUTE + "CreateImageMetadata"):
    image_id: str = ""


class UpdateImageMetadata(Message, tag_field="@type", tag=COMPUTE + "UpdateImageMetadata"):
    image_id: str = ""


class DeleteImageMetadata(Message, tag_field="@type", tag=COMPUTE + "DeleteImageMetadata"):
    image_id: str = ""


class Empty(Message, tag_field="@type", tag="type.googleapis.com/google.protobuf.Empty"):
    pass


class RequestInfo(Message, tag_field="@type", tag="type.googleapis.com/google.rpc.RequestInfo"):
    request_id: str = ""
    serving_data: str = ""


class Status(msgspec.Struct, rename="camel", kw_only=True):
    """google.rpc.Status, also the body of every failed REST call; all three keys always present."""

    code: int
    message: str
    details: list[RequestInfo] = []


def cancelled_status() -> Status:
    """The error a cancelled operation ends with."""
    return Status(code=1, message="operation cancelled")


OperationMetadata = (
    CreateImageMetadata
    | UpdateImageMetadata
    | DeleteImageMetadata
    | SetAccessBindingsMetadata
    | UpdateAccessBindingsMetadata
)
OperationResponse = ImageAny | Empty | AccessBindingsOperationResult


class Operation(Message, kw_only=True):
    """`done` has no default so it is always emitted; `error` and `response` are a oneof."""

    id: str
    description: str = ""
    created_at: dt.datetime
    created_by: str = ""
    modified_at: dt.datetime
    done: bool
    metadata: OperationMetadata | None = None
    error: Status | None = None
    response: OperationResponse | None = None


class GetOperationRequest(Message):
    operation_id: RequiredId


class ListImageOperationsResponse(Message):
    operations: list[Operation] = []
    next_page_token: str = ""


metadata_decoder = msgspec.json.Decoder(OperationMetadata)
response_decoder = msgspec.json.Decoder(OperationResponse)
status_decoder = msgspec.json.Decoder(Status)
