"""The signing keys of an OIDC provider, read from its JWKS URL with aiohttp and cached.

Keys are fetched on first use, again when the cache is older than MAX_AGE_SECONDS, and when a
token names a key id the cache does not hold (the provider rotated its keys). A refresh that
still misses the key id silences further refreshes for QUIET_SECONDS, so tokens with made-up
key ids cannot make the gateway hammer the provider; while the provider cannot be reached the
cached keys keep working.
"""

import asyncio
import time

import aiohttp
import jwt
import orjson
import structlog

from contracts.errors import Unauthenticated, Unavailable

log = structlog.get_logger(__name__)

MAX_AGE_SECONDS = 3600.0
QUIET_SECONDS = 30.0
FETCH_TIMEOUT_SECONDS = 5.0
MAX_BYTES = 1 << 20


class JwksKeys:
    def __init__(self, url: str, *, quiet_seconds: float = QUIET_SECONDS) -> None:
        self.url = url
        self._quiet_seconds = quiet_seconds
        self._keys: dict[str | None, jwt.PyJWK] | None = None
        self._fetched_at = 0.0
        self._quiet_until = 0.0
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def key(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        """The key that signed a token with header `kid` and `alg`; Unauthenticated if the
        provider has no such key, Unavailable if its keys could never be read."""
        found = self._lookup(kid)
        if found is None or self._stale():
            await self._refresh(kid)
            found = self._lookup(kid)
        if found is None:
            raise Unauthenticated(f"token key id {kid!r} is not a signing key of the issuer")
        if found.algorithm_name != algorithm:
            raise Unauthenticated(
                f"token algorithm {algorithm} does not match its key ({found.algorithm_name})"
            )
        return found

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        keys = self._keys or {}
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))  # a provider with a single key may omit kid
        return keys.get(kid)

    def _stale(self) -> bool:
        return time.monotonic() - self._fetched_at > MAX_AGE_SECONDS

    async def _refresh(self, kid: str | None) -> None:
        async with self._lock:
            if self._lookup(kid) is not None and not self._stale():
                return  # another request refreshed while this one waited
            if time.monotonic() < self._quiet_until:
                if self._keys is None:
                    raise Unavailable("the signing keys of the token issuer cannot be read")
                return
            try:
                self._keys = await self._fetch()
            except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
                self._failed(exc)
                return
            self._fetched_at = time.monotonic()
            if self._lookup(kid) is None:
                self._quiet_until = self._fetched_at + self._quiet_seconds

    def _failed(self, exc: BaseException) -> None:
        log.warning("jwks.fetch_failed", url=self.url, error=str(exc) or type(exc).__name__)
        self._quiet_until = time.monotonic() + self._quiet_seconds
        if self._keys is None:
            raise Unavailable("the signing keys of the token issuer cannot be read") from None

    async def _fetch(self) -> dict[str | None, jwt.PyJWK]:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
            self._session = aiohttp.ClientSession(timeout=timeout)
        async with self._session.get(self.url) as response:
            if response.status != 200:
                raise ValueError(f"{self.url} answered {response.status}")
            body = await response.content.read(MAX_BYTES + 1)
        if len(body) > MAX_BYTES:
            raise ValueError(f"{self.url} sent more than {MAX_BYTES} bytes")
        document = orjson.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError(f"{self.url} did not send a JWK set")
        keys = jwt.PyJWKSet.from_dict(document)
        usable = {key.key_id: key for key in keys if key.public_key_use in (None, "sig")}
        log.info("jwks.fetched", url=self.url, keys=len(usable))
        return usable
