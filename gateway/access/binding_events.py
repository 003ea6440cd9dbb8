"""The events of a folder's stream that carry access-binding changes, and which of them a
caller may not see: those of an image whose bindings it may not list. Such an event is
`compute.image.access_bindings_changed`, or the `compute.operation.done` of a binding change
(its Operation's response holds the same deltas)."""

from collections.abc import Sequence

import msgspec

from api import authorization
from api.authorization import Permission
from api.context import RequestContext
from contracts.access import ACCESS
from contracts.events import event_type
from store.db import Database
from store.event_log import Entry
from store.image_events import OPERATION_DONE

BINDINGS_CHANGED = event_type("access_bindings_changed")
BINDINGS_RESULT = ACCESS + "AccessBindingsOperationResult"


class _Result(msgspec.Struct):
    type: str = msgspec.field(name="@type", default="")


class _Data(msgspec.Struct):
    response: _Result | None = None


class _Event(msgspec.Struct):
    """What this module reads of a CloudEvent: its image and, for an operation, the type
    of the operation's response."""

    subject: str
    data: _Data | None = None


_decoder = msgspec.json.Decoder(_Event)


def _changed_image(entry: Entry) -> str | None:
    """The image whose binding change the entry carries; None for any other event."""
    if entry.type not in (BINDINGS_CHANGED, OPERATION_DONE):
        return None
    event = _decoder.decode(entry.body)
    if entry.type == OPERATION_DONE:
        response = event.data.response if event.data else None
        if response is None or response.type != BINDINGS_RESULT:
            return None
    return event.subject


async def withheld(
    db: Database, context: RequestContext, folder_id: str, entries: Sequence[Entry]
) -> set[int]:
    """The positions of the entries whose binding changes the caller may not see."""
    changed = {entry.position: image for entry in entries if (image := _changed_image(entry))}
    if not changed:
        return set()
    folder = authorization.folder_resource(folder_id)
    async with db.reading() as conn:
        may_list = {
            image: Permission.LIST_BINDINGS
            in await authorization.permissions(conn, context, (image, folder))
            for image in set(changed.values())
        }
    return {position for position, image in changed.items() if not may_list[image]}
