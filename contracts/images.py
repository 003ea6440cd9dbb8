"""compute.v1 Image resource, its requests and list responses."""

import datetime as dt
from typing import Annotated, Any

import msgspec

from contracts.base import (
    FAMILY_PATTERN,
    MAX_PRODUCT_IDS,
    MAX_SHORT_TEXT,
    MAX_UPDATE_MASK,
    MAX_URI,
    MIN_DISK_SIZE,
    SPACE,
    Description,
    DiskSize,
    Family,
    FolderId,
    ImageName,
    Int64Text,
    Labels,
    Message,
    OptionalId,
    PageSize,
    PageToken,
    RequiredId,
    about,
    anchored,
    stated,
)
from contracts.enums import ImageStatus, OsType, PciTopology
from contracts.errors import InvalidArgument

IMAGE_TYPE = "type.googleapis.com/yandex.cloud.compute.v1.Image"


def _either(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


def _any_case(word: str) -> str:
    """`word` in any letter case, which ECMA-262 cannot switch on inside a pattern."""
    return "".join(f"[{c.lower()}{c.upper()}]" for c in word)


# The languages of filter, orderBy and updateMask (parsed by api/query.py and
# api/image_writes.py, which name what is wrong) as ECMA-262 patterns for the document.
_QUOTED = r"""(?:"(?:[^"\\\x00]|\\[^\n\x00])*"|'(?:[^'\\\x00]|\\[^\n\x00])*')"""
_WORD = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_FIELD = _either("name", "family", "status")
_VALUE = _either(_QUOTED, _WORD)
_LIST = rf"{SPACE}*\({SPACE}*{_VALUE}(?:{SPACE}*,{SPACE}*{_VALUE})*{SPACE}*\)"
_IN = rf"{_FIELD}{SPACE}+(?:{_any_case('not')}{SPACE}+)?{_any_case('in')}{_LIST}"
_ENDS_QUOTED = _either(rf"{_FIELD}{SPACE}*!?={SPACE}*{_QUOTED}", _IN)  # may touch a following AND
_ENDS_BARE = rf"{_FIELD}{SPACE}*!?={SPACE}*{_WORD}"
_CONDITIONS = (
    rf"(?:(?:{_ENDS_QUOTED}{SPACE}*|{_ENDS_BARE}{SPACE}+){_any_case('and')}{SPACE}+)*"
    rf"{_either(_ENDS_QUOTED, _ENDS_BARE)}"
)
FILTER_PATTERN = rf"^{SPACE}*(?:{_CONDITIONS}{SPACE}*)?$"
_DIRECTION = _either(_any_case("asc"), _any_case("desc"))
ORDER_BY_PATTERN = (
    rf"^{SPACE}*(?:{_either('id', 'name', 'createdAt')}(?:{SPACE}+{_DIRECTION})?)?{SPACE}*$"
)
_PATH = _either("name", "description", "minDiskSize", "labels")
UPDATE_MASK_PATTERN = rf"^(?:{SPACE}*|{SPACE}*{_PATH}{SPACE}*(?:,{SPACE}*{_PATH}{SPACE}*)*)$"
DISK_SIZE_ALIGNMENT = 4 * 1024**2


def check_disk_size(value: int) -> None:
    """A requested minDiskSize: 0 (unset) or at least MIN_DISK_SIZE."""
    if value and value < MIN_DISK_SIZE:
        raise InvalidArgument(f"minDiskSize: must be between {MIN_DISK_SIZE} and 4398046511104")


def min_disk_size(requested: int, virtual_size: int) -> int:
    """An image's minDiskSize: max(requested, virtual size), rounded up to 4 MiB."""
    wanted = max(requested, virtual_size)
    return -(-wanted // DISK_SIZE_ALIGNMENT) * DISK_SIZE_ALIGNMENT


class Nvidia(Message):
    driver: Annotated[str, about("NVIDIA driver of the image's operating system.")] = ""


class Os(Message):
    type: Annotated[
        OsType, about("Operating system type; LINUX when unset on a new image's source.")
    ] = OsType.TYPE_UNSPECIFIED
    nvidia: Annotated[Nvidia | None, about("NVIDIA GPU support of the image.")] = None


def reported_os(given: Os | None) -> Os:
    """An image's Os as the API shows it: `type` defaults to LINUX, also for an image created
    without `os` (one that inherited none from its source image)."""
    if given is None:
        return Os(type=OsType.LINUX)
    if given.type is OsType.TYPE_UNSPECIFIED:
        return msgspec.structs.replace(given, type=OsType.LINUX)
    return given


class LegacyHardwareFeatures(Message):
    pci_topology: Annotated[PciTopology, about("PCI topology of the legacy hardware.")] = (
        PciTopology.PCI_TOPOLOGY_UNSPECIFIED
    )


class Generation2HardwareFeatures(Message):
    secure_boot_template_id: Annotated[str, about("Secure Boot template of the image.")] = ""
    vtpm_enabled: Annotated[bool, about("Whether a virtual TPM is attached.")] = False


class HardwareGeneration(Message):
    """Oneof `features`: at most one member is set."""

    legacy_features: Annotated[
        LegacyHardwareFeatures | None, about("Legacy (generation 1) hardware features.")
    ] = None
    generation2_features: Annotated[
        Generation2HardwareFeatures | None, about("Generation 2 hardware features.")
    ] = None


class KMSKey(Message):
    key_id: Annotated[str, about("ID of the KMS key the image is encrypted with.")] = ""
    version_id: Annotated[str, about("Version of that key.")] = ""


ImageId = Annotated[RequiredId, about("ID of the image.")]
Bytes = Annotated[Int64Text, about("A size in bytes: an int64 as a string of digits.")]


class Image(Message):
    """An image: a disk's contents and what a disk made from it needs."""

    id: Annotated[str, about("ID of the image.")] = ""
    folder_id: Annotated[str, about("ID of the folder the image belongs to.")] = ""
    created_at: Annotated[dt.datetime | None, about("Creation time (RFC 3339, UTC).")] = None
    name: Annotated[str, about("Name of the image, unique in its folder when set.")] = ""
    description: Annotated[str, about("Description of the image.")] = ""
    labels: Annotated[dict[str, str], about("Resource labels as key:value pairs.")] = {}
    family: Annotated[str, about("The image family the image belongs to.")] = ""
    size: Annotated[Bytes, about("Total size of the image, in bytes (int64 string).")] = "0"
    storage_size: Annotated[Bytes, about("Size the image takes in storage, bytes.")] = "0"
    min_disk_size: Annotated[Bytes, about("Minimum size of a disk made from it, bytes.")] = "0"
    product_ids: Annotated[list[str], about("License IDs of the image's software.")] = []
    status: Annotated[ImageStatus, about("CREATING, then READY or ERROR; DELETING.")] = (
        ImageStatus.STATUS_UNSPECIFIED
    )
    os: Annotated[Os | None, about("Operating system of the image.")] = None
    pooled: Annotated[bool, about("Whether an image pool speeds up disk creation.")] = False
    hardware_generation: Annotated[
        HardwareGeneration | None, about("Hardware a disk made from the image needs.")
    ] = None
    kms_key: Annotated[KMSKey | None, about("Key the image is encrypted with.")] = None


class ImageAny(Image, tag_field="@type", tag=IMAGE_TYPE):
    """An Image packed in a google.protobuf.Any (Operation.response)."""


class GetImageRequest(Message):
    image_id: ImageId


class GetImageLatestByFamilyRequest(Message):
    folder_id: Annotated[FolderId, about("ID of the folder to look in.")]
    family: Annotated[
        str,
        msgspec.Meta(
            pattern=anchored(FAMILY_PATTERN.removeprefix("|")),
            description="The image family to look up (3-63 characters, as an image's family).",
        ),
    ]


class ListImagesRequest(Message):
    folder_id: Annotated[FolderId, about("ID of the folder whose images to list.")]
    page_size: PageSize = 0
    page_token: PageToken = ""
    filter: Annotated[
        str,
        stated(
            FILTER_PATTERN,
            "Conditions joined by AND, each `<field> = <value>`, `!=`, `IN (…)` or"
            " `NOT IN (…)` on name, family or status; values quoted ('…' or \"…\") or bare.",
            max_length=1000,
        ),
    ] = ""
    order_by: Annotated[
        str,
        stated(
            ORDER_BY_PATTERN,
            "`<field> [asc|desc]` with field id, name or createdAt; default `id asc`.",
            max_length=100,
        ),
    ] = ""


class ListImagesResponse(Message):
    images: Annotated[list[Image], about("One page of the folder's images.")] = []
    next_page_token: Annotated[str, about("The pageToken of the next page; empty on the last.")] = (
        ""
    )


def _set(field: str) -> dict[str, Any]:
    return {"required": [field], "properties": {field: {"type": "string", "minLength": 1}}}


# What the document adds to CreateImageRequest, which msgspec cannot say of one field: exactly
# one source is set (non-empty; "" and null are unset). Checked in api/image_writes.py.
SOURCE_ONE_OF = {"oneOf": [_set(field) for field in ("imageId", "diskId", "snapshotId", "uri")]}
# At most one hardware generation's features (null is unset). Checked there too.
_ONE_GENERATION = {
    "not": {
        "type": "object",
        "required": ["legacyFeatures", "generation2Features"],
        "properties": {
            "legacyFeatures": {"type": "object"},
            "generation2Features": {"type": "object"},
        },
    }
}
# Every URL of this form is accepted (the worker then fetches it); a deployment also accepts
# others: IP literals where allowed, file:// under its KILN_IMPORT_ROOT.
_LABEL = "[a-z][a-z0-9-]{0,30}"
URI_PATTERN = (
    rf"^https?://{_LABEL}(?:\.{_LABEL}){{0,4}}(?::[1-9][0-9]{{0,3}})?(?:/[A-Za-z0-9._~-]*)*$"
)


class CreateImageRequest(Message):
    """Oneof `source` (imageId, diskId, snapshotId, uri): exactly one must be set."""

    folder_id: Annotated[FolderId, about("ID of the folder to create the image in.")]
    name: ImageName = ""
    description: Description = ""
    labels: Labels = {}
    family: Family = ""
    min_disk_size: DiskSize = 0
    product_ids: Annotated[
        list[Annotated[OptionalId, about("A license ID, at most 50 characters.")]],
        msgspec.Meta(
            max_length=MAX_PRODUCT_IDS,
            description=f"License IDs of the software on the image, at most {MAX_PRODUCT_IDS}.",
        ),
    ] = []
    image_id: Annotated[OptionalId, about("Source: ID of an image to copy.")] = ""
    disk_id: Annotated[OptionalId, about("Source: ID of a disk to copy.")] = ""
    snapshot_id: Annotated[OptionalId, about("Source: ID of a snapshot to copy.")] = ""
    uri: Annotated[
        str,
        msgspec.Meta(
            max_length=MAX_URI,
            extra_json_schema={"anyOf": [{"const": ""}, {"pattern": URI_PATTERN}]},
            description="Source: URL of a Qcow2, VMDK or raw disk image to import (http,"
            " https); the pattern is the form every deployment accepts.",
        ),
    ] = ""
    os: Annotated[Os | None, about("Operating system; inherited from an image source.")] = None
    pooled: Annotated[bool, about("Create an image pool for fast disk creation.")] = False
    hardware_generation: Annotated[
        HardwareGeneration | None,
        msgspec.Meta(
            description="Overrides the source's hardware generation; at most one member.",
            extra_json_schema=_ONE_GENERATION,
        ),
    ] = None


def check_nested_texts(request: CreateImageRequest) -> None:
    """The strings nested in os and hardwareGeneration, which the contract leaves unbounded:
    checked on the request, not declared on their Structs, which stored images decode into."""
    nvidia = request.os.nvidia if request.os else None
    generation = request.hardware_generation
    generation2 = generation.generation2_features if generation else None
    texts = {
        "os.nvidia.driver": nvidia.driver if nvidia else "",
        "hardwareGeneration.generation2Features.secureBootTemplateId": (
            generation2.secure_boot_template_id if generation2 else ""
        ),
    }
    for field, text in texts.items():
        if len(text) > MAX_SHORT_TEXT:
            raise InvalidArgument(f"{field}: expected `str` of length <= {MAX_SHORT_TEXT}")


class UpdateImageRequest(Message):
    image_id: Annotated[ImageId, about("ID of the image to update.")]
    update_mask: Annotated[
        str,
        stated(
            UPDATE_MASK_PATTERN,
            "Comma-separated fields to change (name, description, minDiskSize,"
            " labels); a field named but not sent is reset. Without a mask every field is"
            " taken from the request and those not sent are reset.",
            max_length=MAX_UPDATE_MASK,
        ),
    ] = ""
    name: ImageName = ""
    description: Description = ""
    min_disk_size: DiskSize = 0
    labels: Annotated[Labels, about("Resource labels; replaces the whole map.")] = {}


class DeleteImageRequest(Message):
    image_id: Annotated[ImageId, about("ID of the image to delete.")]


class ListImageOperationsRequest(Message):
    image_id: Annotated[ImageId, about("ID of the image whose operations to list.")]
    page_size: PageSize = 0
    page_token: PageToken = ""
