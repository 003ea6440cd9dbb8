"""yandex.cloud.operation.Operation, google.rpc.Status and the Any payloads operations carry."""

import datetime as dt
from typing import Annotated

import msgspec

from contracts.access import (
    AccessBindingsOperationResult,
    SetAccessBindingsMetadata,
    UpdateAccessBindingsMetadata,
)
from contracts.base import Message, RequiredId, about
from contracts.images import ImageAny

COMPUTE = "type.googleapis.com/yandex.cloud.compute.v1."


class CreateImageMetadata(Message, tag_field="@type", tag=COMPUTE + "CreateImageMetadata"):
    image_id: Annotated[str, about("ID of the image being created.")] = ""


class UpdateImageMetadata(Message, tag_field="@type", tag=COMPUTE + "UpdateImageMetadata"):
    image_id: Annotated[str, about("ID of the image being updated.")] = ""


class DeleteImageMetadata(Message, tag_field="@type", tag=COMPUTE + "DeleteImageMetadata"):
    image_id: Annotated[str, about("ID of the image being deleted.")] = ""


class Empty(Message, tag_field="@type", tag="type.googleapis.com/google.protobuf.Empty"):
    pass


class RequestInfo(Message, tag_field="@type", tag="type.googleapis.com/google.rpc.RequestInfo"):
    request_id: Annotated[str, about("ID of the request (its X-Request-Id).")] = ""
    serving_data: Annotated[str, about("Not used by Kiln.")] = ""


class Status(msgspec.Struct, rename="camel", kw_only=True):
    """google.rpc.Status, also the body of every failed REST call; all three keys always present."""

    code: Annotated[int, about("The google.rpc.Code: 3 INVALID_ARGUMENT, 5 NOT_FOUND, …")]
    message: Annotated[str, about("What went wrong, naming the field at fault.")]
    details: Annotated[list[RequestInfo], about("The request's RequestInfo.")] = []


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

    id: Annotated[str, about("ID of the operation.")]
    description: Annotated[str, about("What the operation does, e.g. Create image.")] = ""
    created_at: Annotated[dt.datetime, about("When the operation started (RFC 3339).")]
    created_by: Annotated[str, about("Subject that started the operation.")] = ""
    modified_at: Annotated[dt.datetime, about("When it last changed (RFC 3339).")]
    done: Annotated[bool, about("false while running; true once it succeeded or failed.")]
    metadata: Annotated[
        OperationMetadata | None, about("Which resource the operation is about (an Any).")
    ] = None
    error: Annotated[Status | None, about("Why it failed or was cancelled.")] = None
    response: Annotated[
        OperationResponse | None, about("What it produced, once done without error (an Any).")
    ] = None


class GetOperationRequest(Message):
    operation_id: Annotated[RequiredId, about("ID of the operation.")]


class ListImageOperationsResponse(Message):
    operations: Annotated[list[Operation], about("One page of the image's operations.")] = []
    next_page_token: Annotated[str, about("The pageToken of the next page; empty on the last.")] = (
        ""
    )


metadata_decoder = msgspec.json.Decoder(OperationMetadata)
response_decoder = msgspec.json.Decoder(OperationResponse)
status_decoder = msgspec.json.Decoder(Status)
