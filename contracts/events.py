"""Events for subscribers: CloudEvents 1.0 structured JSON on the `kiln.events` exchange."""

import datetime as dt
from typing import Any

import msgspec

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


def event_type(name: str) -> str:
    """`created` → `compute.image.created`; `operation.done` stays in its own family."""
    return name if name.startswith("compute.") else f"compute.image.{name}"


def routing_key(name: str, folder_id: str) -> str:
    """`compute.image.<event>.<folderId>` / `compute.operation.done.<folderId>`."""
    return f"{event_type(name)}.{folder_id}"


event_encoder = msgspec.json.Encoder()
event_decoder = msgspec.json.Decoder(CloudEvent)
