"""Image events: each one numbered in its image's sequence and written to the outbox."""

import msgspec

from contracts.events import CONTENT_TYPE, CloudEvent, event_encoder, event_type, routing_key
from contracts.names import EVENTS_EXCHANGE
from contracts.outbox import OutboxMessage
from store import event_log, outbox
from store.clock import now_us, to_datetime
from store.db import Connection
from store.images import ImageRecord
from store.operations import OperationRecord, to_operation


async def record(
    conn: Connection, image: ImageRecord, name: str, operation_id: str, data: object = None
) -> OutboxMessage:
    """Advance the image's event sequence and queue the event, in the caller's transaction."""
    row = await conn.fetchrow(
        "UPDATE images SET event_seq = event_seq + 1 WHERE id = ? RETURNING event_seq", image.id
    )
    assert row is not None, "events are recorded for stored images"
    image.event_seq = int(row["event_seq"])
    now = now_us()
    message = event_message(image, name, operation_id, data, now)
    await event_log.append(conn, image.folder_id, message.type, message.body, now)
    return await outbox.add(conn, message, now)


def event_message(
    image: ImageRecord, name: str, operation_id: str, data: object, now: int
) -> OutboxMessage:
    """The event numbered `image.event_seq`, as its outbox message (not yet written).

    The event id is derived from the image and its sequence number, so a redelivered or
    republished event keeps its id.
    """
    event = CloudEvent(
        id=f"{image.id}-{image.event_seq}",
        type=event_type(name),
        subject=image.id,
        time=to_datetime(now),
        sequence=str(image.event_seq),
        correlationid=operation_id,
        folderid=image.folder_id,
        data=msgspec.to_builtins(data) if data is not None else None,
    )
    return OutboxMessage(
        exchange=EVENTS_EXCHANGE,
        routing_key=routing_key(name, image.folder_id),
        message_id=event.id,
        body=event_encoder.encode(event),
        content_type=CONTENT_TYPE,
        type=event.type,
        correlation_id=operation_id,
    )


OPERATION_DONE = "compute.operation.done"


async def operation_done(
    conn: Connection, image: ImageRecord, op: OperationRecord
) -> OutboxMessage:
    """Announce a finished operation, sequenced with its image's events."""
    return await record(conn, image, OPERATION_DONE, op.id, to_operation(op))
