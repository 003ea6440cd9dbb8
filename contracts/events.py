"""Events for subscribers: CloudEvents 1.0 structured JSON on the `kiln.events` exchange."""

import datetime as dt
from typing import Annotated, Any

import msgspec

from contracts.base import SPACE, FolderId, Message, about, stated

EVENT_SOURCE = "/kiln/compute/v1/images"
CONTENT_TYPE = "application/cloudevents+json"


class CloudEvent(msgspec.Struct, frozen=True, kw_only=True):
    """`id` is stable across redelivery; `sequence` orders one image's events.

    Every attribute is encoded, also where it equals its default: CloudEvents parsers refuse
    an event without `specversion` or `source`."""

    specversion: str = "1.0"
    id: str
    source: str = EVENT_SOURCE
    type: str
    subject: str
    time: dt.datetime
    datacontenttype: str = "application/json"
    sequence: str
    correlationid: str = ""
    folderid: str
    data: Any = None


# The events a folder's stream carries, by the names `type` takes (or their full types).
EVENT_NAMES = (
    "created",
    "import_started",
    "ready",
    "failed",
    "updated",
    "access_bindings_changed",
    "deleting",
    "deleted",
    "operation.done",
)
_NAME = "(?:" + "|".join(rf"(?:compute\.image\.)?{n}" for n in EVENT_NAMES[:-1])
_NAME += r"|(?:compute\.)?operation\.done)"
# What gateway/events/sse_stream.py accepts (and names what is wrong with): the documented form.
TYPES_PATTERN = rf"^{SPACE}*{_NAME}?{SPACE}*(?:,{SPACE}*{_NAME}?{SPACE}*)*$"
POSITION_PATTERN = rf"^{SPACE}*(?:[0-9]{{1,18}})?{SPACE}*$"


class EventStreamRequest(Message):
    """`GET /kiln/v1/events`: a folder's events as Server-Sent Events
    (gateway/events/sse_stream.py)."""

    folder_id: Annotated[FolderId, about("ID of the folder whose events to follow.")]
    type: Annotated[
        str,
        stated(
            TYPES_PATTERN,
            "Comma-separated event types to send (created, import_started,"
            " ready, failed, updated, access_bindings_changed, deleting, deleted,"
            " operation.done); empty: every type.",
            max_length=1000,
        ),
    ] = ""
    last_event_id: Annotated[
        str,
        stated(
            POSITION_PATTERN,
            "Resume after this event position (for clients that cannot send the"
            " Last-Event-ID header); empty: start at the newest event.",
            max_length=100,
        ),
    ] = ""


def event_type(name: str) -> str:
    """`created` → `compute.image.created`; `operation.done` stays in its own family."""
    return name if name.startswith("compute.") else f"compute.image.{name}"


def routing_key(name: str, folder_id: str) -> str:
    """`compute.image.<event>.<folderId>` / `compute.operation.done.<folderId>`."""
    return f"{event_type(name)}.{folder_id}"


event_encoder = msgspec.json.Encoder()
event_decoder = msgspec.json.Decoder(CloudEvent)
