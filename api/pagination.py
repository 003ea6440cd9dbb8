"""Opaque, tamper-proof page tokens bound to the query that issued them.

A token is an HMAC (8 bytes, base64url) followed by the position it encodes. Positions are
built only from url-safe characters (ids, image names, base-36 numbers), which keeps a token
for a name-ordered page within the contract's 100-character limit.
"""

import base64
import hashlib
import hmac

from contracts.errors import InvalidArgument

_SIG_CHARS = 11  # 8 bytes in unpadded base64url
DEFAULT_PAGE_SIZE = 100


class PageTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, scope: str, position: str) -> str:
        return self._signature(scope, position) + position

    def open(self, scope: str, token: str) -> str:
        """The position inside `token`, if this server issued it for the same query."""
        signature, position = token[:_SIG_CHARS], token[_SIG_CHARS:]
        # Issued tokens are ASCII; compare_digest raises TypeError on any other str.
        well_formed = bool(position) and token.isascii()
        if not well_formed or not hmac.compare_digest(signature, self._signature(scope, position)):
            raise InvalidArgument("pageToken: invalid, or issued for a different query")
        return position

    def _signature(self, scope: str, position: str) -> str:
        mac = hmac.new(self._key, f"{scope}\n{position}".encode(), hashlib.sha256).digest()[:8]
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def page_size(requested: int) -> int:
    return requested or DEFAULT_PAGE_SIZE


def to_base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
        if not number:
            return text
