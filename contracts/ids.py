"""Resource ids: 20 characters of [a-z0-9], a 3-letter type prefix, time-ordered."""

import secrets
import string
import time

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
