"""Base Struct configuration and the constrained scalar types the contract's rules use."""

from typing import Annotated

import msgspec


class Message(
    msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=True, kw_only=True
):
    """A protobuf message in proto3 JSON form: camelCase names, default values omitted."""


class FrozenMessage(
    msgspec.Struct,
    rename="camel",
    omit_defaults=True,
    forbid_unknown_fields=True,
    kw_only=True,
    frozen=True,
):
    """A Message that cannot change, so it can be hashed (a set member, a dict key). Not a
    subclass of Message: type checkers refuse a frozen class on a mutable base. Subclasses
    say `frozen=True` again, for the type checkers' sake."""


_TRUE_END = r"$(?!\n)"
# White space as the gateway's parsers read it (str.strip, str.split and Python's `\s`), spelled
# out for the document: ECMA-262's `\s` differs (no \x1c-\x1f or \x85, and it adds \ufeff).
SPACE = r"[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def anchored(pattern: str) -> str:
    """msgspec matches patterns with re.search; the contract's patterns are whole-string.
    `$(?!\n)` ends the match at the true end in Python, where `$` alone admits a final "\n"."""
    return rf"^(?:{pattern}){_TRUE_END}"


def portable(pattern: str) -> str:
    """The ECMA-262 spelling of an `anchored` pattern: there `$` is already the true end."""
    return pattern.removesuffix(_TRUE_END) + "$" if pattern.endswith(_TRUE_END) else pattern


def stated(pattern: str, description: str, *, max_length: int) -> msgspec.Meta:
    """A text field whose own parser enforces `pattern` (a filter, a mask, …): msgspec checks
    its length, and the document states the pattern, in ECMA-262."""
    return msgspec.Meta(
        max_length=max_length, extra_json_schema={"pattern": pattern}, description=description
    )


def about(text: str) -> msgspec.Meta:
    """A field's description in the OpenAPI document."""
    return msgspec.Meta(description=text)


NAME_PATTERN = "|[a-z]([-_a-z0-9]{0,61}[a-z0-9])?"
FAMILY_PATTERN = "|[a-z][-a-z0-9]{1,61}[a-z0-9]"
# The contract's `\@` is `@`, spelled plainly: ECMA-262 in unicode mode refuses the escape.
LABEL_KEY_PATTERN = "[a-z][-_./@0-9a-z]*"
LABEL_VALUE_PATTERN = "[-_./@0-9a-z]*"
MIN_DISK_SIZE = 4 * 1024**2
MAX_DISK_SIZE = 4 * 1024**4

RequiredId = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
OptionalId = Annotated[str, msgspec.Meta(max_length=50)]
ResourceId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
FolderId = Annotated[RequiredId, about("ID of the folder.")]
NAME_RULE = (
    "empty, or 1 to 63 characters: lowercase letters, digits, '-' and '_', starting with a"
    " letter and not ending with '-' or '_'"
)
FAMILY_RULE = (
    "empty, or 3 to 63 characters: lowercase letters, digits and hyphens, starting with a"
    " letter and ending with a letter or digit"
)
# What a value must look like, in words, for the messages that refuse one (contracts/codec.py).
PATTERN_RULES = {
    NAME_PATTERN: NAME_RULE,
    FAMILY_PATTERN: FAMILY_RULE,
    LABEL_KEY_PATTERN: "lowercase letters, digits and -_./@, starting with a letter",
    LABEL_VALUE_PATTERN: "lowercase letters, digits and -_./@",
}
ImageName = Annotated[
    str,
    msgspec.Meta(pattern=anchored(NAME_PATTERN), description=f"Name of the image: {NAME_RULE}."),
]
Family = Annotated[
    str,
    msgspec.Meta(pattern=anchored(FAMILY_PATTERN), description=f"The image family: {FAMILY_RULE}."),
]
Description = Annotated[
    str, msgspec.Meta(max_length=256, description="Description, at most 256 characters.")
]
LabelKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=63, pattern=anchored(LABEL_KEY_PATTERN))
]
LabelValue = Annotated[str, msgspec.Meta(max_length=63, pattern=anchored(LABEL_VALUE_PATTERN))]
Labels = Annotated[
    dict[LabelKey, LabelValue],
    msgspec.Meta(max_length=64, description="Resource labels as key:value pairs, at most 64."),
]
# 0 means "unset" in proto3; a set value must lie in the contract's range (checked on use,
# contracts/images.py check_disk_size; the document states both).
DiskSize = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=MAX_DISK_SIZE,
        extra_json_schema={"anyOf": [{"const": 0}, {"minimum": MIN_DISK_SIZE}]},
        description="Minimum size of a disk made from the image, in bytes: 0 (unset) or"
        f" {MIN_DISK_SIZE} to {MAX_DISK_SIZE}. Also accepted as a string of digits (int64).",
    ),
]
PageSize = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=1000,
        description="The most results to return on one page; 0 means the default, 100.",
    ),
]
PageToken = Annotated[
    str,
    msgspec.Meta(
        max_length=100,
        description="The nextPageToken of the previous page of the same request; empty for"
        " the first page.",
    ),
]
# Bounds Kiln sets where the contract sets none (README, "Request limits"). 8 KiB holds a
# pre-signed URL with a session token; 256 characters name every updatable field many times.
MAX_URI = 8192
MAX_PRODUCT_IDS = 64
MAX_SHORT_TEXT = 64
MAX_UPDATE_MASK = 256

# int64 fields are JSON strings of digits on output (proto3 JSON).
Int64Text = str
