"""Commands the gateway sends to workers over `kiln.commands`: a tagged union, one per kind."""

import msgspec


class Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Every command names the operation it carries out and the image it acts on."""

    command_id: str
    operation_id: str
    image_id: str
    request_id: str = ""


class CreateImage(Command, frozen=True, tag="image.create"):
    """Import the image's bytes from its source (the source is stored with the operation)."""


class DeleteImage(Command, frozen=True, tag="image.delete"):
    """Release the image's bytes and remove it."""


AnyCommand = CreateImage | DeleteImage

command_encoder = msgspec.json.Encoder()
command_decoder = msgspec.json.Decoder(AnyCommand)


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
