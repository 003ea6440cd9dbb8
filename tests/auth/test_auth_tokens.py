"""Authentication with HS256 tokens: every API call needs a valid bearer token; a missing or bad
one is 401 UNAUTHENTICATED (code 16) in the contract's error shape, and changes nothing."""

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import jwt
import pytest
from structlog.testing import capture_logs

from gateway.auth import bearer_tokens
from support.auth import ADMIN, SECRET, token
from tests.auth.conftest import Caller
from tests.gateway.conftest import FOLDER, URI, Reply

REQUEST_INFO = "type.googleapis.com/google.rpc.RequestInfo"
NOW = int(time.time())
OTHER_SECRET = "another-secret-of-someone-else-0123456789"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Tokens do not depend on the store: SQLite only."""
    return f"sqlite:///{tmp_path / 'kiln.db'}"


def _b64(part: dict[str, object] | bytes) -> str:
    raw = part if isinstance(part, bytes) else json.dumps(part).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unsigned(claims: dict[str, object], alg: str = "none") -> str:
    return f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(claims)}."


VALID = {"sub": "bob", "exp": NOW + 600}
BAD_TOKENS = {
    "not a JWT": "not-a-jwt",
    "two parts": "abc.def",
    "garbage parts": "a.b.c",
    "bad base64 header": "!!!.e30.sig",
    "header not an object": f"{_b64(b'[1]')}.{_b64(VALID)}.sig",
    "bad signature": token("bob", secret=OTHER_SECRET),
    "signature cut off": token("bob").rsplit(".", 1)[0] + ".",
    "signature corrupted": token("bob")[:-1],
    "claims altered": ".".join(
        (token("bob").split(".")[0], _b64({**VALID, "sub": ADMIN}), token("bob").split(".")[2])
    ),
    "expired": token("bob", ttl=-120),
    "not valid yet": token("bob", nbf=NOW + 600),
    "issued in the future": token("bob", iat=NOW + 600),
    "alg none": unsigned(VALID),
    "alg HS384": jwt.encode(VALID, SECRET + "-padded-for-hs384-0123456789", algorithm="HS384"),
    "alg RS256 without a JWKS": unsigned(VALID, "RS256") + "c2ln",
    "no exp": jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256"),
    "no sub": jwt.encode({"exp": NOW + 600}, SECRET, algorithm="HS256"),
    "empty sub": token(""),
    "sub too long": token("b" * 101),
    "sub not a string": jwt.encode({"sub": 7, "exp": NOW + 600}, SECRET, algorithm="HS256"),
    "exp not a number": jwt.encode({"sub": "bob", "exp": "soon"}, SECRET, algorithm="HS256"),
}
BAD_HEADERS = {
    "missing": None,
    "empty": "",
    "Basic scheme": "Basic Ym9iOnB3",
    "no token": "Bearer",
    "blank token": "Bearer   ",
    "two tokens": f"Bearer {token('bob')} {token('bob')}",
    "token without scheme": token("bob"),
}


def assert_unauthenticated(reply: Reply, case: object) -> None:
    assert reply.status == 401, (case, reply.body)
    body = reply.json
    assert body["code"] == 16 and body["message"], (case, body)
    assert body["details"] == [{"@type": REQUEST_INFO, "requestId": reply.headers["X-Request-Id"]}]
    assert reply.headers["WWW-Authenticate"].startswith("Bearer"), case


async def test_a_valid_token_is_the_caller(caller: Callable[..., Caller], api: Caller) -> None:
    created = await api.create()
    assert created.status == 200 and created.json["createdBy"] == ADMIN
    grant = {"roleId": "editor", "subject": {"id": "bob", "type": "userAccount"}}
    path = f"/resource-manager/v1/folders/{FOLDER}:setAccessBindings"
    assert (await api.call("POST", path, json_body={"accessBindings": [grant]})).status == 200

    bob = caller("bob")
    reply = await bob.create()
    assert reply.status == 200 and reply.json["createdBy"] == "bob"
    leeway = caller(auth={"Authorization": f"Bearer {token('bob', ttl=-10)}"})
    assert (await leeway.list()).status == 200  # 10 s past exp: within the clock-skew leeway
    lower = caller(auth={"Authorization": f"bearer {token('bob')}"})
    assert (await lower.list()).status == 200


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_a_bad_token_is_401_and_changes_nothing(
    caller: Callable[..., Caller], api: Caller, case: str
) -> None:
    intruder = caller(auth={"Authorization": f"Bearer {BAD_TOKENS[case]}"})

    for reply in (
        await intruder.list(),
        await intruder.create(),
        await intruder.get("img-any"),
        await intruder.operation("opr-any"),
    ):
        assert_unauthenticated(reply, case)
    assert (await api.list()).json == {}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
async def test_a_missing_or_malformed_header_is_401(
    caller: Callable[..., Caller], api: Caller, case: str
) -> None:
    value = BAD_HEADERS[case]
    intruder = caller(auth={} if value is None else {"Authorization": value})

    assert_unauthenticated(await intruder.create(), case)
    assert_unauthenticated(await intruder.list(), case)
    assert (await api.list()).json == {}


async def test_the_refusals_say_what_is_wrong(caller: Callable[..., Caller]) -> None:
    async def message(value: str | None) -> str:
        auth = {} if value is None else {"Authorization": value}
        return (await caller(auth=auth).list()).message

    assert await message(None) == "missing Authorization: Bearer token"
    assert await message("Basic x") == "Authorization header must be 'Bearer <token>'"
    assert await message("Bearer x") == "bearer token is not a JWT"
    assert await message(f"Bearer {BAD_TOKENS['expired']}") == "token has expired"
    assert await message(f"Bearer {BAD_TOKENS['not valid yet']}") == "token is not valid yet"
    assert await message(f"Bearer {BAD_TOKENS['bad signature']}") == "token signature is invalid"
    corrupted = await message(f"Bearer {BAD_TOKENS['signature corrupted']}")
    assert corrupted == "token signature is invalid"
    assert await message(f"Bearer {BAD_TOKENS['no exp']}") == "token has no 'exp' claim"
    none = await message(f"Bearer {BAD_TOKENS['alg none']}")
    assert none == "token algorithm 'none' is not accepted"


async def test_every_route_but_probes_and_docs_needs_a_token(
    caller: Callable[..., Caller],
) -> None:
    anonymous = caller(auth={})
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/"):
        assert (await anonymous.call("GET", path)).status == 200, path
    for method, path in [
        ("GET", "/compute/v1/images:latestByFamily"),
        ("GET", "/compute/v1/images/img1/operations"),
        ("GET", "/compute/v1/images/img1:listAccessBindings"),
        ("POST", "/compute/v1/images/img1:setAccessBindings"),
        ("PATCH", "/compute/v1/images/img1"),
        ("DELETE", "/compute/v1/images/img1"),
        ("GET", "/operations/opr1:cancel"),
        ("GET", f"/resource-manager/v1/folders/{FOLDER}:listAccessBindings"),
        ("GET", f"/kiln/v1/events?folderId={FOLDER}"),
        ("GET", "/no/such/path"),  # no probing for routes either
        ("GET", "/docsx"),
    ]:
        assert_unauthenticated(await anonymous.call(method, path), (method, path))


async def test_a_refused_write_is_audited_without_a_subject(caller: Callable[..., Caller]) -> None:
    with capture_logs() as logs:
        await caller(auth={}).call(
            "POST", "/compute/v1/images", json_body={"folderId": FOLDER, "uri": URI}
        )
    [line] = [entry for entry in logs if entry["event"] == "audit"]
    assert line == {
        "event": "audit",
        "log_level": "info",
        "subject": "",
        "method": "ImageService.Create",
        "resource": "",
        "result": "UNAUTHENTICATED",
    }


async def test_a_verified_token_is_remembered_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signature is checked once per token, and again once the token has expired."""
    verifier = bearer_tokens.TokenVerifier(secret=SECRET)
    decoded = []
    decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: decoded.append(1) or decode(*a, **k))
    short = token("bob", ttl=5)

    assert [(await verifier.verify(short)).subject for _ in range(3)] == ["bob"] * 3
    assert len(decoded) == 1
    expired = time.time() + 5 + bearer_tokens.LEEWAY_SECONDS + 1
    monkeypatch.setattr(bearer_tokens, "time", SimpleNamespace(time=lambda: expired))
    await verifier.verify(short)  # PyJWT's own clock still finds it valid
    assert len(decoded) == 2
