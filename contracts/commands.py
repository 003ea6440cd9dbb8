"""Commands the gateway sends to workers over `kiln.commands`: a tagged union, one per kind."""

from typing import ClassVar

import msgspec

from contracts.names import COMMANDS_EXCHANGE, CREATE_QUEUE, DELETE_QUEUE
from contracts.outbox_message import OutboxMessage


class Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Every command names the operation it carries out and the image it acts on."""

    queue: ClassVar[str]
    command_id: str
    operation_id: str
    image_id: str
    request_id: str = ""


class CreateImage(Command, frozen=True, tag="image.create"):
    """Import the image's bytes from its source (the source is stored with the operation)."""

    queue = CREATE_QUEUE


class DeleteImage(Command, frozen=True, tag="image.delete"):
    """Release the image's bytes and remove it."""

    queue = DELETE_QUEUE


AnyCommand = CreateImage | DeleteImage

command_encoder = msgspec.json.Encoder()
command_decoder = msgspec.json.Decoder(AnyCommand)


def command_message(command: Command) -> OutboxMessage:
    """The outbox row carrying a command to its queue (routing key = queue name); the
    command id is the message id, the HTTP request id the correlation id."""
    return OutboxMessage(
        exchange=COMMANDS_EXCHANGE,
        routing_key=command.queue,
        message_id=command.command_id,
        body=command_encoder.encode(command),
        type=command.queue,
        correlation_id=command.request_id,
    )


class ImageSource(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where a create takes its bytes from: exactly one member is set."""

    uri: str = ""
    image_id: str = ""
    disk_id: str = ""
    snapshot_id: str = ""


class CreateParams(msgspec.Struct, frozen=True, kw_only=True):
    """What the worker needs to carry out a create, stored with its operation."""

    source: ImageSource
    requested_min_disk_size: int = 0


params_encoder = msgspec.json.Encoder()
create_params_decoder = msgspec.json.Decoder(CreateParams)
