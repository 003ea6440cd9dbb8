"""Base Struct configuration and the constrained scalar types the contract's rules use."""

from typing import Annotated

import msgspec


class Message(
    msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=True, kw_only=True
):
    """A protobuf message in proto3 JSON form: camelCase names, default values omitted."""


def anchored(pattern: str) -> str:
    """msgspec matches patterns with re.search; the contract's patterns are whole-string.
    `$(?!\n)` ends the match at the true end in Python and stays valid ECMA for OpenAPI."""
    return rf"^(?:{pattern})$(?!\n)"


NAME_PATTERN = "|[a-z]([-_a-z0-9]{0,61}[a-z0-9])?"
FAMILY_PATTERN = "|[a-z][-a-z0-9]{1,61}[a-z0-9]"
LABEL_KEY_PATTERN = r"[a-z][-_./\@0-9a-z]*"
LABEL_VALUE_PATTERN = r"[-_./\@0-9a-z]*"
MIN_DISK_SIZE = 4 * 1024**2
MAX_DISK_SIZE = 4 * 1024**4

RequiredId = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
OptionalId = Annotated[str, msgspec.Meta(max_length=50)]
ResourceId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ImageName = Annotated[str, msgspec.Meta(pattern=anchored(NAME_PATTERN))]
Family = Annotated[str, msgspec.Meta(pattern=anchored(FAMILY_PATTERN))]
Description = Annotated[str, msgspec.Meta(max_length=256)]
LabelKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=63, pattern=anchored(LABEL_KEY_PATTERN))
]
LabelValue = Annotated[str, msgspec.Meta(max_length=63, pattern=anchored(LABEL_VALUE_PATTERN))]
Labels = Annotated[dict[LabelKey, LabelValue], msgspec.Meta(max_length=64)]
# 0 means "unset" in proto3; a set value must lie in the contract's range (checked on use).
DiskSize = Annotated[int, msgspec.Meta(ge=0, le=MAX_DISK_SIZE)]
PageSize = Annotated[int, msgspec.Meta(ge=0, le=1000)]
PageToken = Annotated[str, msgspec.Meta(max_length=100)]
# Bounds Kiln sets where the contract sets none (README, "Request limits"). 8 KiB holds a
# pre-signed URL with a session token; 256 characters name every updatable field many times.
MAX_URI = 8192
MAX_PRODUCT_IDS = 64
MAX_SHORT_TEXT = 64
Uri = Annotated[str, msgspec.Meta(max_length=MAX_URI)]
UpdateMask = Annotated[str, msgspec.Meta(max_length=256)]
ProductIds = Annotated[list[OptionalId], msgspec.Meta(max_length=MAX_PRODUCT_IDS)]

# int64 fields are JSON strings of digits on output (proto3 JSON).
Int64Text = str
