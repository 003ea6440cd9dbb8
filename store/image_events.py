"""Image events: each one numbered in its image's sequence and written to the outbox."""

from collections.abc import Sequence

import msgspec

from contracts.events import CONTENT_TYPE, CloudEvent, event_encoder, event_type, routing_key
from contracts.names import EVENTS_EXCHANGE
from contracts.outbox_message import OutboxMessage
from runtime.clock import now_us, to_datetime
from store import event_log, images, outbox_table
from store.db import Connection
from store.images import ImageRecord
from store.operations import OperationRecord, to_operation

# An event to record: its name ("ready"), the operation it belongs to, and its data.
Event = tuple[str, str, object]


async def record(
    conn: Connection, batch: Sequence[tuple[ImageRecord, Sequence[Event]]]
) -> list[OutboxMessage]:
    """Record events of images whose rows this transaction locked and read (so their
    `event_seq` is current), in order: one statement per table for them all."""
    now = now_us()
    numbered = [(image, number(image, events, now)) for image, events in batch]
    await images.store_event_seqs(conn, [image for image, _ in numbered])
    return await write(conn, numbered, now)


def number(image: ImageRecord, events: Sequence[Event], now: int) -> list[OutboxMessage]:
    """The events numbered after the image's `event_seq`, which they advance (in memory: the
    caller stores it, as a new image's insert does)."""
    messages = []
    for name, operation_id, data in events:
        image.event_seq += 1
        messages.append(event_message(image, name, operation_id, data, now))
    return messages


async def write(
    conn: Connection,
    numbered: Sequence[tuple[ImageRecord, list[OutboxMessage]]],
    now: int,
    commands: Sequence[OutboxMessage] = (),
) -> list[OutboxMessage]:
    """Queue numbered events for the event log, and them and `commands` in the outbox."""
    await event_log.append_many(
        conn,
        [(image.folder_id, m.type, m.body, now) for image, messages in numbered for m in messages],
    )
    messages = [m for _, messages in numbered for m in messages]
    return await outbox_table.add_many(conn, [*messages, *commands], now)


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


def operation_done(op: OperationRecord) -> Event:
    """The event announcing a finished operation, sequenced with its image's events."""
    return (OPERATION_DONE, op.id, to_operation(op))
