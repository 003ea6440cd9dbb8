"""Resource ids: 20 characters of [a-z0-9], a 3-letter type prefix, time-ordered; and the rule
each id a request path carries must meet before anything is looked up by it."""

import re
import secrets
import string
import time
from collections.abc import Mapping
from typing import NamedTuple

from contracts.errors import InvalidArgument

_ALPHABET = string.digits + string.ascii_lowercase
IMAGE_PREFIX = "img"
OPERATION_PREFIX = "opr"
_TIME_DIGITS = 9  # milliseconds in base 36: enough until the year 5000
_RANDOM_DIGITS = 8


def _base36(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 36)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits))


def new_id(prefix: str) -> str:
    """Ids sort by creation time (millisecond), then randomly within one millisecond."""
    millis = time.time_ns() // 1_000_000
    # One draw from the system's random source, not one per character.
    tail = _base36(secrets.randbelow(36**_RANDOM_DIGITS), _RANDOM_DIGITS)
    return prefix + _base36(millis, _TIME_DIGITS) + tail


class IdRule(NamedTuple):
    pattern: re.Pattern[str]
    meaning: str  # what a matching id is, for the error message


def _kiln_id(prefix: str, kind: str) -> IdRule:
    digits = _TIME_DIGITS + _RANDOM_DIGITS
    return IdRule(
        re.compile(f"{prefix}[0-9a-z]{{{digits}}}"),
        f"{kind} id ('{prefix}' and {digits} characters of [0-9a-z])",
    )


IMAGE_ID = _kiln_id(IMAGE_PREFIX, "an image")
OPERATION_ID = _kiln_id(OPERATION_PREFIX, "an operation")
# Folder ids are chosen by their users, not by Kiln: the contract's folderId (at most 50
# characters), which a path carries in one segment (a `%2F` in it decodes to '/'); no
# string of the contract may hold NUL (contracts/codec.py).
FOLDER_ID = IdRule(re.compile(r"[^/\x00]{1,50}"), "a folder id (1 to 50 characters, no '/' or NUL)")


def portable_pattern(rule: IdRule) -> str:
    """The rule as an ECMA-262 pattern, for the OpenAPI document (a full match in Python)."""
    return f"^(?:{rule.pattern.pattern})$"


def checked_path(values: Mapping[str, str], **rules: IdRule) -> dict[str, str]:
    """The path parameters, once each one named in `rules` meets its rule: 400 naming it."""
    for name, rule in rules.items():
        if not rule.pattern.fullmatch(values[name]):
            raise InvalidArgument(f"{name}: {values[name][:60]!r} is not {rule.meaning}")
    return dict(values)
