"""The command line: `kiln token issue`, the set-up `kiln dev` does when no secret is configured
(a secret file only its owner reads, `admin` an admin, a token printed and written to the data
directory), KILN_ADMINS with a configured secret, and start-up refusing bad auth settings."""

import asyncio
import contextlib
import os
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import pytest
from click.testing import CliRunner

from kiln import tokens
from kiln.cli import main
from kiln.settings import SettingsError, build
from support.auth import SECRET
from support.kiln_processes import free_port, wait_until

KILN = Path(sys.executable).parent / "kiln"


def issue(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["token", "issue", *args], env=env or {})
    return result.exit_code, result.stdout.strip(), result.stderr


def test_token_issue_signs_with_the_configured_secret() -> None:
    code, token, _ = issue("--subject", "bob", "--ttl", "15m", env={"KILN_TOKEN_SECRET": SECRET})

    assert code == 0
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "bob"
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert abs(claims["iat"] - time.time()) < 60
    flag = issue("--subject", "bob", "--token-secret", SECRET)[1]
    assert jwt.decode(flag, SECRET, algorithms=["HS256"])["exp"] - time.time() > 3500  # 1h


def test_tokens_kiln_signs_carry_the_audience_and_issuer_it_requires(tmp_path: Path) -> None:
    env = {"KILN_TOKEN_SECRET": SECRET, "KILN_JWT_AUDIENCE": "kiln-api"}
    code, token, _ = issue("--subject", "bob", "--jwt-issuer", "https://kiln.example/", env=env)

    assert code == 0
    claims = jwt.decode(
        token, SECRET, algorithms=["HS256"], audience="kiln-api", issuer="https://kiln.example/"
    )
    assert claims["sub"] == "bob"
    plain = jwt.decode(
        issue("--subject", "bob", env={"KILN_TOKEN_SECRET": SECRET})[1],
        SECRET,
        algorithms=["HS256"],
    )
    assert "aud" not in plain and "iss" not in plain
    settings, admin = tokens.bootstrap_dev(build({"data_dir": str(tmp_path), "jwt_audience": "x"}))
    assert admin is not None
    dev = jwt.decode(admin, settings.token_secret, algorithms=["HS256"], audience="x")
    assert dev["sub"] == "admin"


def test_token_issue_refuses_what_it_cannot_sign(tmp_path: Path) -> None:
    empty = {"KILN_DATA_DIR": str(tmp_path), "KILN_TOKEN_SECRET": None}
    no_secret = issue("--subject", "bob", env=empty)
    assert no_secret[0] == 2 and "KILN_TOKEN_SECRET" in no_secret[2]
    short = issue("--subject", "bob", env={"KILN_TOKEN_SECRET": "short"})
    assert short[0] == 2 and "KILN_TOKEN_SECRET: must be at least 32" in short[2]
    for ttl in ("0", "1w", "-5", "soon"):
        bad = issue("--subject", "bob", "--ttl", ttl, env={"KILN_TOKEN_SECRET": SECRET})
        assert bad[0] == 2 and "--ttl" in bad[2], ttl
    for subject in ("", "x" * 101):
        bad = issue("--subject", subject, env={"KILN_TOKEN_SECRET": SECRET})
        assert bad[0] == 2 and "--subject" in bad[2]


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"token_secret": "too-short"}, "KILN_TOKEN_SECRET"),
        ({"jwks_url": "ftp://idp/keys"}, "KILN_JWKS_URL"),
    ],
)
def test_bad_auth_settings_are_named(values: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        build(values)


def test_admins_are_a_comma_separated_list() -> None:
    assert build({"admins": "alice, bench,,"}).admins == ("alice", "bench")
    shown = repr(build({"token_secret": SECRET}))
    assert "token_secret='***'" in shown and SECRET not in shown


def test_a_gateway_without_a_secret_or_jwks_does_not_start() -> None:
    env = {"KILN_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/"}
    result = CliRunner().invoke(main, ["gateway"], env=env)
    assert result.exit_code == 2
    assert (
        "(KILN_TOKEN_SECRET): the gateway needs a token secret or --jwks-url (KILN_JWKS_URL)"
        in result.stderr
    )


@contextlib.asynccontextmanager
async def kiln_dev(data: Path, log: Path, **env: str) -> AsyncIterator[str]:
    """A `kiln dev` process on a free port, its output in `log`; its base URL."""
    port = free_port()
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            str(KILN),
            "dev",
            "--data-dir",
            str(data),
            "--http-port",
            str(port),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("KILN_")}, **env},
        )

    async def listening() -> bool:
        assert process.returncode is None, log.read_text()[-2000:]
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return True
        return False

    try:
        await wait_until(listening, 20, "kiln dev listening")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0, log.read_text()[-2000:]


async def status(base: str, token: str, folder: str = "f1") -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{base}/compute/v1/images", params={"folderId": folder}) as response,
    ):
        return response.status


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_kiln_dev_without_a_secret_sets_itself_up(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "dev.log"
    async with kiln_dev(data, log) as base:
        await wait_until(lambda: "Authorization: Bearer" in log.read_text(), 10, "the token")
        token = (data / "admin.token").read_text().strip()
        secret = (data / "token.secret").read_text().strip()
        assert mode(data / "token.secret") == 0o600 and mode(data / "admin.token") == 0o600
        printed = log.read_text()
        assert token in printed.splitlines()
        assert f'curl -H "Authorization: Bearer $(cat {data / "admin.token"})"' in printed
        assert jwt.decode(token, secret, algorithms=["HS256"])["sub"] == "admin"
        assert await status(base, token) == 200
        code, bob, _ = issue("--subject", "bob", env={"KILN_DATA_DIR": str(data)})
        assert code == 0 and await status(base, bob) == 403  # signed alike, but no role
        assert await status(base, "") == 401

    async with kiln_dev(data, tmp_path / "again.log") as base:
        assert (data / "token.secret").read_text().strip() == secret  # kept across restarts
        assert await status(base, token) == 200  # an earlier token still works


async def test_kiln_dev_with_a_secret_uses_the_configured_admins(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "dev.log"
    env = {"KILN_TOKEN_SECRET": SECRET, "KILN_ADMINS": "bench"}
    async with kiln_dev(data, log, **env) as base:
        code, bench, _ = issue("--subject", "bench", env={"KILN_TOKEN_SECRET": SECRET})
        assert code == 0 and await status(base, bench) == 200
        admin = issue("--subject", "admin", env={"KILN_TOKEN_SECRET": SECRET})[1]
        assert await status(base, admin) == 403  # `admin` is an admin only without a secret
    assert not (data / "token.secret").exists() and not (data / "admin.token").exists()
    assert "Authorization: Bearer" not in log.read_text()


def test_help_shows_the_auth_settings() -> None:
    text = CliRunner().invoke(main, ["dev", "--help"]).output
    for flag in ("--token-secret", "--jwks-url", "--admins"):
        assert flag in text
    issue_help = CliRunner().invoke(main, ["token", "issue", "--help"]).output
    assert "--subject" in issue_help and "--ttl" in issue_help
