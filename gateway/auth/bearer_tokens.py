"""Verifying bearer tokens: JWTs signed HS256 with the configured secret, or RS256/ES256 by a key of
the configured JWKS (any OIDC provider). Signature, `exp` and `nbf` are checked with a small leeway
for clock skew; `sub` names the caller, and `exp` ends its event streams
(gateway/events/sse_caller.py: without the leeway). A configured audience must be named by every
token's `aud`, a configured issuer be its `iss` (an OIDC provider signs the tokens of all its
applications with the same keys).

A client sends the same token with every call: a token verified with the secret is remembered
(up to `CACHE_SIZE` of them, each at most `CACHE_SECONDS`, never past its `exp`), which saves
the signature check on the next call (about 5 % of the gateway's CPU per create, measured with
py-spy under the create benchmark). Tokens verified by a JWKS key are not remembered: a key the
issuer retires must stop working at once."""

import binascii
import json
import time

import jwt
import msgspec
from jwt.utils import base64url_decode

from contracts.errors import Unauthenticated
from gateway.auth.jwks import JwksKeys

LEEWAY_SECONDS = 30
MAX_SUBJECT_LENGTH = 100  # the contract's Subject.id bound
HMAC_ALGORITHM = "HS256"
KEY_ALGORITHMS = ("RS256", "ES256")
CACHE_SIZE = 1024
CACHE_SECONDS = 60.0

_REFUSALS: list[tuple[type[jwt.PyJWTError], str]] = [
    (jwt.ExpiredSignatureError, "token has expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.DecodeError, "token is malformed"),
]


class Verified(msgspec.Struct, frozen=True):
    """What a valid token says about its caller."""

    subject: str  # `sub`
    expires_at: float  # `exp`, in seconds since the epoch


class TokenVerifier:
    def __init__(
        self,
        secret: str = "",
        jwks: JwksKeys | None = None,
        *,
        audience: str = "",
        issuer: str = "",
    ) -> None:
        self._secret = secret
        self._jwks = jwks
        self._audience = audience
        self._issuer = issuer
        self._verified: dict[str, tuple[Verified, float]] = {}  # token: (claims, valid until)

    async def verify(self, token: str) -> Verified:
        """The claims of a valid token; Unauthenticated naming what is wrong otherwise."""
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None and now < cached[1]:
            return cached[0]
        algorithm, verified = await self._verify(token)
        if algorithm == HMAC_ALGORITHM:
            if len(self._verified) >= CACHE_SIZE:
                del self._verified[next(iter(self._verified))]  # the oldest
            until = min(verified.expires_at + LEEWAY_SECONDS, now + CACHE_SECONDS)
            self._verified[token] = (verified, until)
        return verified

    async def _verify(self, token: str) -> tuple[object, Verified]:
        """The token's algorithm and claims, once its signature is checked."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            if _only_signature_unreadable(token):
                raise Unauthenticated("token signature is invalid") from None
            raise Unauthenticated("bearer token is not a JWT") from None
        algorithm = header.get("alg")
        key = await self._key(algorithm, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                leeway=LEEWAY_SECONDS,
                audience=self._audience or None,
                issuer=self._issuer or None,
                options={"require": ["exp", "sub"], "verify_aud": bool(self._audience)},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(self._refusal(exc)) from None
        return algorithm, Verified(_subject(claims.get("sub")), float(claims["exp"]))

    def _refusal(self, exc: jwt.PyJWTError) -> str:
        if isinstance(exc, jwt.InvalidAudienceError):
            return f"token audience ('aud') is not {self._audience!r}"
        if isinstance(exc, jwt.InvalidIssuerError):
            return f"token issuer ('iss') is not {self._issuer!r}"
        return _reason(exc)

    async def _key(self, algorithm: object, kid: str | None) -> str | jwt.PyJWK:
        if algorithm == HMAC_ALGORITHM and self._secret:
            return self._secret
        if algorithm in KEY_ALGORITHMS and self._jwks is not None:
            return await self._jwks.key(kid, str(algorithm))  # PyJWT made sure kid is a str
        raise Unauthenticated(f"token algorithm {algorithm!r} is not accepted")

    async def close(self) -> None:
        if self._jwks is not None:
            await self._jwks.close()


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token has no {exc.claim!r} claim"
    for kind, message in _REFUSALS:
        if isinstance(exc, kind):
            return message
    return f"token is invalid: {exc}"


def _only_signature_unreadable(token: str) -> bool:
    """Whether a token PyJWT cannot read has a header and claims that decode as JSON objects:
    what it cannot read then is its third part, the signature."""
    parts = token.split(".")
    try:
        decoded = [json.loads(base64url_decode(part)) for part in parts[:2]]
    except (ValueError, binascii.Error):
        return False
    return len(parts) == 3 and all(isinstance(part, dict) for part in decoded)


def _subject(sub: object) -> str:
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUBJECT_LENGTH:
        raise Unauthenticated(f"token 'sub' must be 1 to {MAX_SUBJECT_LENGTH} characters")
    return sub
