"""The bearer token every request of the harness carries (HS256, as Kiln's auth expects)."""

import time

import jwt


def mint_token(secret: str, subject: str, ttl: float = 3600.0) -> str:
    """A JWT for `subject`, HS256-signed with `secret` (KILN_TOKEN_SECRET), valid for `ttl` s."""
    now = int(time.time())
    claims = {"sub": subject, "iat": now, "exp": now + int(ttl)}
    return jwt.encode(claims, secret, algorithm="HS256")
