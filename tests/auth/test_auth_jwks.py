"""Tokens of an OIDC provider: RS256 and ES256, verified against the keys its JWKS URL serves
(here a local server on 127.0.0.1), cached, refreshed when a token names an unknown key id (at
most once per quiet period while it stays unknown), so that key rotation just works."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from api.settings import GatewaySettings
from support.auth import SECRET
from support.auth import token as hs256_token
from tests.auth.conftest import Caller

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class Issuer:
    """An OIDC provider: signing keys by key id, and the JWK set it currently publishes."""

    def __init__(self) -> None:
        self.keys: dict[str, PrivateKey] = {}
        self.published: list[str] = []
        self.fetches = 0
        self.url = ""
        self.down = False

    def add(self, kid: str, kind: str = "RS256") -> None:
        if kind == "RS256":
            self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        self.published.append(kid)

    def jwk(self, kid: str) -> dict[str, Any]:
        key = self.keys[kid]
        if isinstance(key, rsa.RSAPrivateKey):
            public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        else:
            public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        return {**public, "kid": kid, "use": "sig"}

    def token(
        self, kid: str, subject: str = "carol", *, key: PrivateKey | None = None, **claims: Any
    ) -> str:
        signer = key or self.keys[kid]
        algorithm = "RS256" if isinstance(signer, rsa.RSAPrivateKey) else "ES256"
        payload = {"sub": subject, "exp": int(time.time()) + 600, **claims}
        return jwt.encode(payload, signer, algorithm=algorithm, headers={"kid": kid})

    async def serve(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.down:
            return web.Response(status=503, text="maintenance")
        return web.json_response({"keys": [self.jwk(kid) for kid in self.published]})


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Tokens do not depend on the store: SQLite only."""
    return f"sqlite:///{tmp_path / 'kiln.db'}"


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    provider = Issuer()
    provider.add("rsa-1")
    provider.add("ec-1", "ES256")
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", provider.serve)
    async with TestServer(app, host="127.0.0.1") as server:
        provider.url = str(server.make_url("/.well-known/jwks.json"))
        yield provider


@pytest.fixture
def gateway_settings(issuer: Issuer) -> GatewaySettings:
    """Both kinds of token: the issuer's, and HS256 ones signed with the secret."""
    return GatewaySettings(jwks_url=issuer.url, token_secret=SECRET, admins=frozenset({"carol"}))


def as_bearer(caller: Callable[..., Caller], token: str) -> Caller:
    return caller(auth={"Authorization": f"Bearer {token}"})


async def test_rs256_and_es256_tokens_of_the_issuer_are_accepted(
    caller: Callable[..., Caller], issuer: Issuer
) -> None:
    for kid in ("rsa-1", "ec-1"):
        carol = as_bearer(caller, issuer.token(kid))
        reply = await carol.create()
        assert reply.status == 200, (kid, reply.body)
        assert reply.json["createdBy"] == "carol"
    assert (await as_bearer(caller, hs256_token("carol")).list()).status == 200
    assert issuer.fetches == 1  # fetched once, then served from the cache


async def test_an_unknown_key_id_refreshes_at_most_once_per_quiet_period(
    caller: Callable[..., Caller], issuer: Issuer
) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for _ in range(5):
        reply = await as_bearer(caller, issuer.token("ghost", key=forger)).list()
        assert (reply.status, reply.code) == (401, 16), reply.body
        assert "ghost" in reply.message
    assert issuer.fetches == 1
    assert (await as_bearer(caller, issuer.token("rsa-1")).list()).status == 200
    assert issuer.fetches == 1


async def test_key_rotation(caller: Callable[..., Caller], issuer: Issuer) -> None:
    old = issuer.token("rsa-1")
    assert (await as_bearer(caller, old).list()).status == 200
    issuer.add("rsa-2")
    issuer.published = ["rsa-2", "ec-1"]  # rsa-1 retired

    assert (await as_bearer(caller, issuer.token("rsa-2")).list()).status == 200
    assert issuer.fetches == 2  # the new key id made the gateway look again
    retired = await as_bearer(caller, old).list()
    assert (retired.status, retired.code) == (401, 16), retired.body
    assert issuer.fetches == 3
    assert (await as_bearer(caller, old).list()).status == 401
    assert issuer.fetches == 3  # quiet: a key id that stayed unknown does not refetch


async def test_cached_keys_keep_working_while_the_issuer_is_down(
    caller: Callable[..., Caller], issuer: Issuer
) -> None:
    assert (await as_bearer(caller, issuer.token("rsa-1")).list()).status == 200
    issuer.down = True
    issuer.add("rsa-2")

    assert (await as_bearer(caller, issuer.token("ec-1")).list()).status == 200
    unknown = await as_bearer(caller, issuer.token("rsa-2")).list()
    assert (unknown.status, unknown.code) == (401, 16), unknown.body
    assert issuer.fetches == 2  # one failed attempt, then quiet


async def test_forged_and_mismatched_tokens_are_refused(
    caller: Callable[..., Caller], issuer: Issuer
) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = issuer.keys["ec-1"]
    public_pem = (
        issuer.keys["rsa-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    cases = {
        "signed by another key under a known kid": issuer.token("rsa-1", key=forger),
        "ES256 under an RSA kid": issuer.token("rsa-1", key=ec_key),
        "HS256 keyed with the RSA public key": _hmac_token(public_pem, "rsa-1"),
        "expired": issuer.token("rsa-1", exp=int(time.time()) - 120),
        "not valid yet": issuer.token("ec-1", nbf=int(time.time()) + 600),
        "kid not a string": _crafted({"alg": "RS256", "kid": 7}, b"signature"),
    }
    for case, token in cases.items():
        reply = await as_bearer(caller, token).create()
        assert (reply.status, reply.code) == (401, 16), (case, reply.body)
    assert (await as_bearer(caller, issuer.token("ec-1")).list()).json == {}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _crafted(header: dict[str, Any], signature: bytes, secret: bytes | None = None) -> str:
    """A token as an attacker writes it, signed with HS256 by `secret` when given."""
    head = _b64(json.dumps(header).encode())
    claims = _b64(json.dumps({"sub": "carol", "exp": int(time.time()) + 60}).encode())
    if secret is not None:
        signature = hmac.new(secret, f"{head}.{claims}".encode(), hashlib.sha256).digest()
    return f"{head}.{claims}.{_b64(signature)}"


def _hmac_token(secret: bytes, kid: str) -> str:
    """The algorithm-confusion attack: HS256 keyed with a public key anyone can read."""
    return _crafted({"alg": "HS256", "kid": kid}, b"", secret)


class TestUnreachableIssuer:
    @pytest.fixture
    def gateway_settings(self) -> GatewaySettings:
        return GatewaySettings(jwks_url=f"http://127.0.0.1:{unused_port()}/jwks.json")

    async def test_tokens_cannot_be_checked_503(
        self, caller: Callable[..., Caller], issuer: Issuer
    ) -> None:
        reply = await as_bearer(caller, issuer.token("rsa-1")).list()
        assert (reply.status, reply.code) == (503, 14), reply.body
        hs256 = await as_bearer(caller, hs256_token("carol")).list()
        assert (hs256.status, hs256.code) == (401, 16), hs256.body  # no secret configured
