"""compute.v1 Image resource, its requests and list responses."""

import datetime as dt
from typing import Annotated

import msgspec

from contracts.base import (
    MAX_SHORT_TEXT,
    MIN_DISK_SIZE,
    Description,
    DiskSize,
    Family,
    ImageName,
    Int64Text,
    Labels,
    Message,
    OptionalId,
    PageSize,
    PageToken,
    ProductIds,
    RequiredId,
    UpdateMask,
    Uri,
)
from contracts.enums import ImageStatus, OsType, PciTopology
from contracts.errors import InvalidArgument

IMAGE_TYPE = "type.googleapis.com/yandex.cloud.compute.v1.Image"
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
    driver: str = ""


class Os(Message):
    type: OsType = OsType.TYPE_UNSPECIFIED
    nvidia: Nvidia | None = None


def reported_os(given: Os | None) -> Os:
    """An image's Os as the API shows it: `type` defaults to LINUX, also for an image created
    without `os` (one that inherited none from its source image)."""
    if given is None:
        return Os(type=OsType.LINUX)
    if given.type is OsType.TYPE_UNSPECIFIED:
        return msgspec.structs.replace(given, type=OsType.LINUX)
    return given


class LegacyHardwareFeatures(Message):
    pci_topology: PciTopology = PciTopology.PCI_TOPOLOGY_UNSPECIFIED


class Generation2HardwareFeatures(Message):
    secure_boot_template_id: str = ""
    vtpm_enabled: bool = False


class HardwareGeneration(Message):
    """Oneof `features`: at most one member is set."""

    legacy_features: LegacyHardwareFeatures | None = None
    generation2_features: Generation2HardwareFeatures | None = None


class KMSKey(Message):
    key_id: str = ""
    version_id: str = ""


class Image(Message):
    id: str = ""
    folder_id: str = ""
    created_at: dt.datetime | None = None
    name: str = ""
    description: str = ""
    labels: dict[str, str] = {}
    family: str = ""
    size: Int64Text = "0"
    storage_size: Int64Text = "0"
    min_disk_size: Int64Text = "0"
    product_ids: list[str] = []
    status: ImageStatus = ImageStatus.STATUS_UNSPECIFIED
    os: Os | None = None
    pooled: bool = False
    hardware_generation: HardwareGeneration | None = None
    kms_key: KMSKey | None = None


class ImageAny(Image, tag_field="@type", tag=IMAGE_TYPE):
    """An Image packed in a google.protobuf.Any (Operation.response)."""


class GetImageRequest(Message):
    image_id: RequiredId


class GetImageLatestByFamilyRequest(Message):
    folder_id: RequiredId
    family: Family = ""


class ListImagesRequest(Message):
    folder_id: RequiredId
    page_size: PageSize = 0
    page_token: PageToken = ""
    filter: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    order_by: Annotated[str, msgspec.Meta(max_length=100)] = ""


class ListImagesResponse(Message):
    images: list[Image] = []
    next_page_token: str = ""


class CreateImageRequest(Message):
    """Oneof `source` (imageId, diskId, snapshotId, uri): exactly one must be set."""

    folder_id: RequiredId
    name: ImageName = ""
    description: Description = ""
    labels: Labels = {}
    family: Family = ""
    min_disk_size: DiskSize = 0
    product_ids: ProductIds = []
    image_id: OptionalId = ""
    disk_id: OptionalId = ""
    snapshot_id: OptionalId = ""
    uri: Uri = ""
    os: Os | None = None
    pooled: bool = False
    hardware_generation: HardwareGeneration | None = None


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
    image_id: RequiredId
    update_mask: UpdateMask = ""
    name: ImageName = ""
    description: Description = ""
    min_disk_size: DiskSize = 0
    labels: Labels = {}


class DeleteImageRequest(Message):
    image_id: RequiredId


class ListImageOperationsRequest(Message):
    image_id: RequiredId
    page_size: PageSize = 0
    page_token: PageToken = ""
