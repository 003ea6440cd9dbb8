"""Authentication for tests: one HS256 secret for every gateway the tests start, an admin
subject (what KILN_ADMINS makes one) and tokens for any subject."""

import time
from typing import Any

import jwt

from api.settings import GatewaySettings

SECRET = "kiln-tests-only-secret-0123456789abcdef"
ADMIN = "test-admin"
# The KILN_* settings of a Kiln process the tests start.
SETTINGS = {"token_secret": SECRET, "admins": ADMIN}


def token(subject: str = ADMIN, *, ttl: float = 3600, secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": subject, "iat": now, "exp": now + int(ttl), **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(subject: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject)}"}


def gateway_settings(**values: Any) -> GatewaySettings:
    """GatewaySettings that accept the tests' tokens, with ADMIN an admin of every folder."""
    return GatewaySettings(token_secret=SECRET, admins=frozenset({ADMIN}), **values)
