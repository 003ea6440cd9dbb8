"""KILN_JWT_AUDIENCE and KILN_JWT_ISSUER: once set, every token, the JWKS issuer's and the HS256
ones, must carry that `aud` and `iss`, or it is 401 UNAUTHENTICATED saying which claim is wrong.
A gateway that trusts a JWKS without checking both warns at start-up."""

from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from api.settings import GatewaySettings
from kiln import processes
from kiln.settings import build
from support.auth import SECRET
from support.auth import token as hs256_token
from support.kiln_processes import free_port
from tests.auth import test_auth_jwks as jwks
from tests.auth.conftest import Caller
from tests.auth.test_auth_jwks import Issuer, as_bearer

AUDIENCE = "kiln-api"
ISSUER = "https://idp.example.com/"

issuer = jwks.issuer
database_url = jwks.database_url


@pytest.fixture
def gateway_settings(issuer: Issuer) -> GatewaySettings:
    return GatewaySettings(
        jwks_url=issuer.url,
        token_secret=SECRET,
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
        admins=frozenset({"carol"}),
    )


async def _refusal(caller: Callable[..., Caller], token: str) -> str:
    reply = await as_bearer(caller, token).list()
    assert (reply.status, reply.code) == (401, 16), reply.body
    return reply.message


async def test_a_token_for_the_configured_audience_and_issuer_is_accepted(
    caller: Callable[..., Caller], issuer: Issuer
) -> None:
    accepted = [
        issuer.token("rsa-1", aud=AUDIENCE, iss=ISSUER),
        issuer.token("ec-1", aud=["another-app", AUDIENCE], iss=ISSUER),
        hs256_token("carol", aud=AUDIENCE, iss=ISSUER),
    ]
    for token in accepted:
        reply = await as_bearer(caller, token).create()
        assert reply.status == 200, reply.body
        assert reply.json["createdBy"] == "carol"


async def test_a_token_for_another_audience_or_none_is_refused(
    caller: Callable[..., Caller], issuer: Issuer
) -> None:
    wrong = f"token audience ('aud') is not {AUDIENCE!r}"
    assert await _refusal(caller, issuer.token("rsa-1", aud="another-app", iss=ISSUER)) == wrong
    assert await _refusal(caller, issuer.token("ec-1", aud=["a", "b"], iss=ISSUER)) == wrong
    assert await _refusal(caller, hs256_token("carol", aud="another-app", iss=ISSUER)) == wrong
    missing = "token has no 'aud' claim"
    assert await _refusal(caller, issuer.token("rsa-1", iss=ISSUER)) == missing
    assert await _refusal(caller, hs256_token("carol", iss=ISSUER)) == missing


async def test_a_token_of_another_issuer_or_none_is_refused(
    caller: Callable[..., Caller], issuer: Issuer
) -> None:
    wrong = f"token issuer ('iss') is not {ISSUER!r}"
    other = "https://other.example.com/"
    assert await _refusal(caller, issuer.token("rsa-1", aud=AUDIENCE, iss=other)) == wrong
    assert await _refusal(caller, hs256_token("carol", aud=AUDIENCE, iss=other)) == wrong
    missing = "token has no 'iss' claim"
    assert await _refusal(caller, issuer.token("ec-1", aud=AUDIENCE)) == missing
    assert await _refusal(caller, hs256_token("carol", aud=AUDIENCE)) == missing


class TestNotConfigured:
    @pytest.fixture
    def gateway_settings(self, issuer: Issuer) -> GatewaySettings:
        return GatewaySettings(jwks_url=issuer.url, admins=frozenset({"carol"}))

    async def test_any_audience_and_issuer_are_accepted(
        self, caller: Callable[..., Caller], issuer: Issuer
    ) -> None:
        for token in (
            issuer.token("rsa-1"),
            issuer.token("rsa-1", aud="another-app", iss="https://other.example.com/"),
        ):
            reply = await as_bearer(caller, token).list()
            assert reply.status == 200, reply.body


async def _start_up_warnings(tmp_path: Path, **values: Any) -> list[MutableMapping[str, Any]]:
    """The `auth.claims_unchecked` lines of a gateway starting with these settings."""
    given = {"data_dir": str(tmp_path), "broker_url": "memory://", "http_port": free_port()}
    settings = build({**given, **values})
    with capture_logs() as logs:
        async with processes.gateway_process(settings):
            pass
    return [entry for entry in logs if entry["event"] == "auth.claims_unchecked"]


async def test_a_gateway_on_a_jwks_without_audience_and_issuer_warns_at_start_up(
    tmp_path: Path, issuer: Issuer
) -> None:
    [warning] = await _start_up_warnings(tmp_path, jwks_url=issuer.url)
    assert warning["log_level"] == "warning"
    assert warning["unchecked"] == ["aud", "iss"]
    assert "set KILN_JWT_AUDIENCE and KILN_JWT_ISSUER" in warning["hint"]
    [half] = await _start_up_warnings(tmp_path, jwks_url=issuer.url, jwt_audience=AUDIENCE)
    assert half["unchecked"] == ["iss"]

    both = {"jwt_audience": AUDIENCE, "jwt_issuer": ISSUER}
    assert await _start_up_warnings(tmp_path, jwks_url=issuer.url, **both) == []
    assert await _start_up_warnings(tmp_path, token_secret=SECRET) == []  # no JWKS
