"""yandex.cloud.access: access bindings, their requests, metadata and results."""

from typing import Annotated

import msgspec

from contracts.base import Message, PageSize, ResourceId
from contracts.enums import AccessBindingAction

ACCESS = "type.googleapis.com/yandex.cloud.access."


class Subject(Message, frozen=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class AccessBinding(Message, frozen=True):
    role_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    subject: Subject


class AccessBindingDelta(Message, frozen=True):
    action: AccessBindingAction
    access_binding: AccessBinding


class ListAccessBindingsRequest(Message):
    resource_id: ResourceId
    page_size: PageSize = 0
    page_token: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class ListAccessBindingsResponse(Message):
    access_bindings: list[AccessBinding] = []
    next_page_token: str = ""


class SetAccessBindingsRequest(Message):
    resource_id: ResourceId
    access_bindings: Annotated[list[AccessBinding], msgspec.Meta(max_length=1000)] = []


class UpdateAccessBindingsRequest(Message):
    resource_id: ResourceId
    access_binding_deltas: Annotated[
        list[AccessBindingDelta], msgspec.Meta(min_length=1, max_length=1000)
    ]


class SetAccessBindingsMetadata(
    Message, tag_field="@type", tag=ACCESS + "SetAccessBindingsMetadata"
):
    resource_id: str = ""


class UpdateAccessBindingsMetadata(
    Message, tag_field="@type", tag=ACCESS + "UpdateAccessBindingsMetadata"
):
    resource_id: str = ""


class AccessBindingsOperationResult(
    Message, tag_field="@type", tag=ACCESS + "AccessBindingsOperationResult"
):
    effective_deltas: list[AccessBindingDelta] = []
