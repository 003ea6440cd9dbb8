"""yandex.cloud.access: access bindings, their requests, metadata and results."""

from typing import Annotated, Literal, get_args

import msgspec

from contracts.base import FrozenMessage, Message, PageSize, ResourceId, about
from contracts.enums import AccessBindingAction

ACCESS = "type.googleapis.com/yandex.cloud.access."
# The roles Kiln knows (spec §9; what each grants: api/authorization.py).
RoleId = Literal[
    "compute.images.user",
    "compute.auditor",
    "compute.viewer",
    "compute.editor",
    "compute.admin",
    "viewer",
    "editor",
    "admin",
]
SYSTEM = "system"
SubjectType = Literal["userAccount", "serviceAccount", "federatedUser", "system"]
EVERYONE = ("allAuthenticatedUsers", "allUsers")  # the system subjects: every caller
# A system subject is one of EVERYONE (checked in api/binding_rules.py).
_SYSTEM_SUBJECTS = {
    "anyOf": [
        {"properties": {"type": {"enum": [t for t in get_args(SubjectType) if t != SYSTEM]}}},
        {"properties": {"type": {"const": SYSTEM}, "id": {"enum": list(EVERYONE)}}},
    ]
}


_UNSPECIFIED = AccessBindingAction.ACCESS_BINDING_ACTION_UNSPECIFIED


class Subject(FrozenMessage, frozen=True):
    id: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=100,
            description="ID of the subject; for type system: allAuthenticatedUsers or allUsers.",
        ),
    ]
    type: Annotated[SubjectType, about("Type of the subject.")]


class AccessBinding(FrozenMessage, frozen=True):
    role_id: Annotated[RoleId, about("The role granted to the subject.")]
    subject: Annotated[
        Subject,
        msgspec.Meta(description="Who is granted the role.", extra_json_schema=_SYSTEM_SUBJECTS),
    ]


class AccessBindingDelta(FrozenMessage, frozen=True):
    action: Annotated[
        AccessBindingAction,
        msgspec.Meta(
            description="ADD or REMOVE the binding.",
            extra_json_schema={"not": {"enum": [_UNSPECIFIED.value, 0]}},  # refused
        ),
    ]
    access_binding: Annotated[AccessBinding, about("The binding to add or remove.")]


ResourceIdField = Annotated[ResourceId, about("ID of the image, or of the folder.")]


class ListAccessBindingsRequest(Message):
    resource_id: ResourceIdField
    page_size: PageSize = 0
    page_token: Annotated[
        str,
        msgspec.Meta(
            max_length=2000,
            description="The nextPageToken of the previous page; empty for the first page.",
        ),
    ] = ""


class ListAccessBindingsResponse(Message):
    access_bindings: Annotated[list[AccessBinding], about("One page of the bindings.")] = []
    next_page_token: Annotated[str, about("The pageToken of the next page; empty on the last.")] = (
        ""
    )


class SetAccessBindingsRequest(Message):
    resource_id: ResourceIdField
    access_bindings: Annotated[
        list[AccessBinding],
        msgspec.Meta(max_length=1000, description="Every binding the resource is to have."),
    ] = []


class UpdateAccessBindingsRequest(Message):
    resource_id: ResourceIdField
    access_binding_deltas: Annotated[
        list[AccessBindingDelta],
        msgspec.Meta(
            min_length=1, max_length=1000, description="Changes to apply, in order (1 to 1000)."
        ),
    ]


class SetAccessBindingsMetadata(
    Message, tag_field="@type", tag=ACCESS + "SetAccessBindingsMetadata"
):
    resource_id: Annotated[str, about("ID of the resource whose bindings change.")] = ""


class UpdateAccessBindingsMetadata(
    Message, tag_field="@type", tag=ACCESS + "UpdateAccessBindingsMetadata"
):
    resource_id: Annotated[str, about("ID of the resource whose bindings change.")] = ""


class AccessBindingsOperationResult(
    Message, tag_field="@type", tag=ACCESS + "AccessBindingsOperationResult"
):
    effective_deltas: Annotated[
        list[AccessBindingDelta], about("The changes that took effect (no-ops left out).")
    ] = []
